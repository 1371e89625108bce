"""`AibApi`: the REST API in front of every group, with what guards it: the authorizer function
(deploy group `api`), the token issuer (Cognito), usage plans and WAF.

It depends on the group stacks (deploy order only) and never the other way round: each method
integrates with a function's `live` alias by the ARN of its fixed name (`aib-<function>:live`),
with no export that would tie a group's deploys to this stack, and the permission that lets API
Gateway invoke the alias lives here, beside the method (it names the API, which the group stacks
must not know). The route table the authorizer enforces is built from
every group's routes, so a group that adds, removes or re-scopes a route changes this stack
too: deploy it after the group. A group whose routes stay as they are deploys alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from aibackend.auth.apigateway import ROUTES_ENV
from aibackend.catalog import Access, Catalog
from aibackend.errors import ConfigError
from infra.config import InfraConfig
from infra.constructs.api import Api, routes_environment
from infra.constructs.identity import Identity
from infra.naming import LIVE_ALIAS, function_name, pascal
from infra.stacks.services import ServiceGroupStack, _retention


class ApiStack(ServiceGroupStack):
    """A `ServiceGroupStack` of group `api` (the authorizer) plus `api` (Api, or None when no
    function declares a route) and `identity` (Identity, or None when no route has access =
    'token')."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        catalog: Catalog,
        groups: Mapping[str, ServiceGroupStack],
        config: InfraConfig,
        **kwargs: Any,
    ) -> None:
        """`groups`: the stack of every other deploy group, by group."""
        super().__init__(scope, construct_id, catalog=catalog, config=config, **kwargs)
        self.api: Api | None = None
        self.identity: Identity | None = None
        # No routes, no API: a project of queue, event and schedule consumers has no HTTP edge
        # (and API Gateway refuses a REST API without methods).
        if not any(catalog.routes()):
            return
        routes = [r for _, r in catalog.routes()]
        guarded = [r for r in routes if r.access is not Access.PUBLIC]
        authorizer = self.functions[catalog.authorizer.name] if catalog.authorizer else None
        if guarded and authorizer is None:
            raise ConfigError(
                f"{catalog.root}: {len(guarded)} route(s) need an API key or a token (e.g. "
                f"{guarded[0].method} {guarded[0].path}) but no function is the API's "
                "authorizer: declare one with authorizer = true in its function.toml (like "
                "functions/authorizer, which reads the api-keys table)"
            )
        token_routes = [r for r in routes if r.access is Access.TOKEN]
        retention = _retention(config.log_retention_days)
        self.api = Api(
            self,
            "Api",
            stage_name=config.stage_name,
            throttle_rate=config.api_throttle_rate,
            throttle_burst=config.api_throttle_burst,
            plans=catalog.plans,
            waf_rate_limit=config.waf_rate_limit,
            log_retention=retention,
            account_role=config.apigw_account_role,
            authorizer=authorizer.alias if authorizer else None,
            authorizer_cache_s=config.authorizer_cache_s,
            bearer_tokens=bool(token_routes),
        )
        targets: dict[str, lambda_.IFunction] = {}
        for spec, route in catalog.routes():
            if spec.name not in targets:
                targets[spec.name] = self._live_alias(groups[spec.deploy_group], spec.name)
            self.api.add_route(route, targets[spec.name])
        if authorizer is not None:
            # The authorizer's code ships without the catalog: it decides from this table.
            authorizer.function.add_environment(ROUTES_ENV, routes_environment(routes))
        if token_routes:
            assert authorizer is not None  # token routes are guarded routes
            self.identity = Identity(
                self, "Identity", scopes=[s for r in token_routes for s in r.scopes]
            )
            for name, value in self.identity.token_environment().items():
                authorizer.function.add_environment(name, value)
            cdk.CfnOutput(self, "UserPoolId", value=self.identity.user_pool.user_pool_id)
            cdk.CfnOutput(self, "TokenUrl", value=self.identity.token_url)
            cdk.CfnOutput(
                self, "MachineClientId", value=self.identity.machine_client.user_pool_client_id
            )
        cdk.CfnOutput(self, "ApiUrl", value=self.api.stage.url_for_path("/"))
        # `aib keys create --plan <name>` attaches new keys to these.
        for name, plan in self.api.usage_plans.items():
            cdk.CfnOutput(self, f"UsagePlan{pascal(name)}Id", value=plan.usage_plan_id)

    def _live_alias(self, stack: ServiceGroupStack, name: str) -> lambda_.IFunction:
        """Function `name`'s `live` alias: itself in this stack, else a reference by the ARN
        its fixed name gives (no export: either stack deploys without the other), and API
        Gateway's invoke permission is then created here, on the method's ARN."""
        if stack is self:
            return self.functions[name].alias
        arn = self.format_arn(
            service="lambda",
            resource="function",
            resource_name=f"{function_name(name)}:{LIVE_ALIAS}",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        return lambda_.Function.from_function_attributes(
            self, f"{pascal(name)}Live", function_arn=arn, same_environment=True
        )

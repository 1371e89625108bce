"""The public edge: one REST API for every declared route.

REST, not HTTP API: usage plans, API keys and WAF attach only to REST APIs.

Access: `public` routes (health checks) are open; every other route goes through a Lambda
REQUEST authorizer (the catalog's `authorizer = true` function, `aibackend.auth.apigateway`)
and needs an API key. The authorizer names the key it accepted (`usageIdentifierKey`,
`apiKeySource: AUTHORIZER`), and API Gateway meters it under its plan's usage plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from aibackend.auth.apigateway import encode_routes
from aibackend.auth.decision import KEY_HEADER
from aibackend.auth.plans import Plan
from aibackend.catalog import Access, Route
from aibackend.errors import ConfigError
from infra.nag import acknowledge
from infra.naming import pascal

#: Header of the bearer token on `token` routes (identity source of the token authorizer).
AUTHORIZATION_HEADER = "Authorization"

#: Lambda allows 4 KB of environment variables per function, names and values together; the
#: route table must leave room for the platform's own variables and the token settings.
MAX_ROUTES_ENV_BYTES = 3_000

#: RFC 9457 problem body for DEFAULT_4XX/5XX (errors without a response of their own).
#: `$context.error.messageString` is already a quoted JSON string.
_PROBLEM = json.dumps(
    {
        "type": "about:blank",
        "title": "@MESSAGE@",
        "detail": "@MESSAGE@",
        "code": "$context.error.responseType",
        "instance": "$context.path",
        "request_id": "$context.requestId",
    }
).replace('"@MESSAGE@"', "$context.error.messageString")


@dataclass(frozen=True)
class Problem:
    """A gateway response API Gateway answers itself, as an RFC 9457 problem document.

    Gateway response templates are not VTL: API Gateway only substitutes `$context.*`
    variables, so nothing here can escape or test a value. `$context.authorizer.reason`
    therefore has to arrive JSON-escaped (without the surrounding quotes) from the authorizer.
    """

    #: API Gateway's name for it, e.g. `UNAUTHORIZED`.
    response_type: str
    status: int
    title: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def template(self) -> str:
        return json.dumps(
            {
                "type": "about:blank",
                "title": self.title,
                "status": self.status,
                "detail": self.detail,
                "instance": "$context.path",
                "request_id": "$context.requestId",
            }
        )


def problems(*, bearer_tokens: bool) -> list[Problem]:
    """The responses of the REST API's own refusals (credentials, limits, unknown routes, WAF,
    authorizer failures); `bearer_tokens`: some route takes a bearer token."""
    credentials = f"send your API key in the {KEY_HEADER} header"
    challenge = f'ApiKey header="{KEY_HEADER}"'
    if bearer_tokens:
        credentials += (
            "; routes with access = 'token' also need `Authorization: Bearer <token>`, an access "
            "token from the user pool's token endpoint (client credentials grant)"
        )
        challenge += ', Bearer realm="aibackend"'
    return [
        Problem(
            "UNAUTHORIZED",
            401,
            "Credentials required",
            credentials,
            {"WWW-Authenticate": challenge},
        ),
        Problem(
            "ACCESS_DENIED",
            403,
            "Forbidden",
            # Without a reason (a cached answer for another route) the sentence still stands.
            "access denied: $context.authorizer.reason",
        ),
        Problem(
            "INVALID_API_KEY",
            403,
            "Invalid API key",
            "the API key is not enabled under any usage plan of this API (revoked, disabled or "
            "never attached to a plan); ask for a new key",
        ),
        Problem(
            "THROTTLED",
            429,
            "Too many requests",
            "the request rate is over this API key's plan or the API's own limit; retry after "
            "1 s, and spread requests out",
            {"Retry-After": "1"},
        ),
        Problem(
            "QUOTA_EXCEEDED",
            429,
            "Daily quota exceeded",
            "this API key has used its plan's daily request quota; it resets at midnight UTC",
            {"Retry-After": "3600"},
        ),
        Problem(
            "REQUEST_TOO_LARGE",
            413,
            "Request too large",
            "the request is over API Gateway's 10 MiB limit; send smaller batches",
        ),
        # API Gateway's answer to a method and path no route declares (not only to a missing
        # credential): 403 "Missing Authentication Token" by default, which misleads.
        Problem(
            "MISSING_AUTHENTICATION_TOKEN",
            404,
            "Not found",
            "no route is declared for this method and path",
        ),
        Problem(
            "WAF_FILTERED",
            403,
            "Blocked",
            "the web application firewall blocked this request (too many requests from this "
            "address, or a request that looks like an attack)",
        ),
        Problem(
            "AUTHORIZER_FAILURE",
            500,
            "Authorization failed",
            "the authorizer could not decide on this request; retry later",
        ),
        Problem(
            "AUTHORIZER_CONFIGURATION_ERROR",
            502,
            "Authorizer error",
            "the authorizer failed or gave an answer API Gateway cannot use; retry later",
        ),
    ]


def routes_environment(routes: list[Route]) -> str:
    """`AIB_ROUTES` for the authorizer: every declared route with its access and scopes."""
    encoded = encode_routes(routes)
    size = len(encoded.encode("utf-8"))
    if size > MAX_ROUTES_ENV_BYTES:
        raise ConfigError(
            f"the route table for the authorizer (AIB_ROUTES) is {size:,} bytes, over "
            f"{MAX_ROUTES_ENV_BYTES:,}: Lambda allows 4 KB of environment variables per "
            "function in all. Declare fewer routes or shorter paths (the authorizer needs "
            "every route's access and scopes to decide what a key or token may call)"
        )
    return encoded


_ACCESS_LOG = apigw.AccessLogFormat.custom(
    json.dumps(
        {
            "requestId": "$context.requestId",
            "extendedRequestId": "$context.extendedRequestId",
            "ip": "$context.identity.sourceIp",
            "apiKeyId": "$context.identity.apiKeyId",
            "principal": "$context.authorizer.principalId",
            "authorizerLatency": "$context.authorizer.latency",
            "requestTime": "$context.requestTime",
            "httpMethod": "$context.httpMethod",
            "resourcePath": "$context.resourcePath",
            "status": "$context.status",
            "protocol": "$context.protocol",
            "responseLength": "$context.responseLength",
            "integrationLatency": "$context.integration.latency",
            "responseLatency": "$context.responseLatency",
            "errorType": "$context.error.responseType",
            "wafStatus": "$context.waf.status",
            "xrayTraceId": "$context.xrayTraceId",
        }
    )
)


class Api(Construct):
    """Attributes: `rest_api`, `stage`, `access_logs`, `usage_plans` (plan name -> UsagePlan),
    `authorizers` (access -> RequestAuthorizer, made by the first route that needs one),
    `web_acl`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage_name: str,
        throttle_rate: float,
        throttle_burst: int,
        plans: Mapping[str, Plan],
        waf_rate_limit: int,
        log_retention: logs.RetentionDays,
        account_role: bool,
        authorizer: lambda_.IFunction | None,
        authorizer_cache_s: int,
        bearer_tokens: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self._authorizer_function = authorizer
        self._authorizer_cache_s = authorizer_cache_s
        self.authorizers: dict[Access, apigw.RequestAuthorizer] = {}
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            description="aibackend model services",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The authorizer names the key it accepted; API Gateway meters that key under its
            # usage plan (the key is not read from x-api-key by API Gateway itself).
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
            # Execution logging needs the account's API Gateway CloudWatch role (one per
            # account and region); retained so that destroying this app never breaks the
            # logging of other APIs. Set aib:apigw-account-role=false if one already exists.
            cloud_watch_role=account_role,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=_ACCESS_LOG,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.INFO,
                # Request/response bodies carry customer data: never log them.
                data_trace_enabled=False,
                # The ceiling for all keys together, whatever their plans allow: it protects
                # the account's Lambda concurrency and the budget.
                throttling_rate_limit=throttle_rate,
                throttling_burst_limit=throttle_burst,
            ),
        )
        self.stage = self.rest_api.deployment_stage
        if account_role:
            role = self.rest_api.node.find_child("CloudWatchRole")
            acknowledge(
                role,
                "IAM4",
                "AmazonAPIGatewayPushToCloudWatchLogs is the documented policy of the account-wide "
                "API Gateway logging role; it must cover every API's execution log group.",
                finding="Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs",
            )
        self.validator = self.rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        for response_type, name in (
            (apigw.ResponseType.DEFAULT_4_XX, "Default4xx"),
            (apigw.ResponseType.DEFAULT_5_XX, "Default5xx"),
        ):
            self.rest_api.add_gateway_response(
                name,
                type=response_type,
                response_headers={"Content-Type": "'application/problem+json'"},
                templates={"application/json": _PROBLEM},
            )
        for problem in problems(bearer_tokens=bearer_tokens):
            self.rest_api.add_gateway_response(
                pascal(problem.response_type.lower()),
                type=apigw.ResponseType.of(problem.response_type),
                status_code=str(problem.status),
                response_headers={
                    "Content-Type": "'application/problem+json'",
                    **{k: f"'{v}'" for k, v in problem.headers.items()},
                },
                templates={"application/json": problem.template()},
            )

        # One usage plan per declared plan; `aib keys create --plan` puts a key under one.
        self.usage_plans: dict[str, apigw.UsagePlan] = {}
        for name, plan in plans.items():
            if plan.local_only:  # the development key's plan: never a deployed key's
                continue
            self.usage_plans[name] = self.rest_api.add_usage_plan(
                f"UsagePlan{pascal(name)}",
                name=f"{cdk.Stack.of(self).stack_name}-{name}",
                description=(plan.description or f"{name} plan")[:1024],
                throttle=apigw.ThrottleSettings(rate_limit=plan.rate_per_s, burst_limit=plan.burst),
                quota=apigw.QuotaSettings(limit=plan.quota_per_day, period=apigw.Period.DAY)
                if plan.quota_per_day is not None
                else None,
                api_stages=[apigw.UsagePlanPerApiStage(api=self.rest_api, stage=self.stage)],
            )

        self.web_acl = self._web_acl(waf_rate_limit)
        # The stage ARN refers to the stage, which orders the association after it.
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )

    def add_route(self, route: Route, target: lambda_.IFunction) -> apigw.Method:
        """One method with a Lambda proxy integration; `{param}` segments become required
        path parameters. Non-public routes go through the authorizer and need an API key."""
        resource = self.rest_api.root.resource_for_path(route.path)
        params = [s[1:-1].rstrip("+") for s in route.path.split("/") if s.startswith("{")]
        public = route.access is Access.PUBLIC
        method = resource.add_method(
            route.method,
            apigw.LambdaIntegration(target, allow_test_invoke=False),
            authorization_type=apigw.AuthorizationType.NONE
            if public
            else apigw.AuthorizationType.CUSTOM,
            authorizer=None if public else self._authorizer(route.access),
            api_key_required=not public,
            request_validator=self.validator,
            request_parameters={f"method.request.path.{p}": True for p in params} or None,
        )
        if public:
            reason = (
                f"{route.method} {route.path} is a health check, declared access = 'public' (the "
                "catalog allows that for GET .../health only); WAF and stage throttling still "
                "apply."
            )
            acknowledge(method, "APIG4", reason)
            acknowledge(method, "COG4", reason)
        else:
            acknowledge(
                method,
                "COG4",
                f"{route.method} {route.path} is authorized by the Lambda REQUEST authorizer: it "
                "validates the API key (hashed, in the api-keys table) and, on token routes, the "
                "Cognito-issued JWT and its scopes; api_key routes carry no Cognito token, so a "
                "Cognito authorizer could not check them.",
            )
        return method

    def _authorizer(self, access: Access) -> apigw.RequestAuthorizer:
        """`key` (x-api-key) for `api_key` routes, `token` (x-api-key and Authorization) for
        `token` routes; one function behind both. A missing header is a 401 without a call."""
        if access in self.authorizers:
            return self.authorizers[access]
        if self._authorizer_function is None:
            raise ConfigError(
                f"routes with access = '{access.value}' need the API's authorizer: declare a "
                "function with authorizer = true (like functions/authorizer)"
            )
        headers = [KEY_HEADER] + ([AUTHORIZATION_HEADER] if access is Access.TOKEN else [])
        kind = "key" if access is Access.API_KEY else "token"
        self.authorizers[access] = apigw.RequestAuthorizer(
            self,
            f"{pascal(kind)}Authorizer",
            authorizer_name=kind,
            handler=self._authorizer_function,
            identity_sources=[apigw.IdentitySource.header(h) for h in headers],
            # The cache key is the identity sources: one answer per key (and token) serves
            # every route behind this authorizer, which is why the authorizer's policy lists
            # all the routes the caller may call.
            results_cache_ttl=cdk.Duration.seconds(self._authorizer_cache_s),
        )
        return self.authorizers[access]

    def _web_acl(self, rate_limit: int) -> wafv2.CfnWebACL:
        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        return wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility("aib-api"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="AWSManagedCommon",
                    priority=0,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesCommonRuleSet"
                        )
                    ),
                    visibility_config=visibility("aib-api-common"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="RatePerIp",
                    priority=1,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=rate_limit, aggregate_key_type="IP"
                        )
                    ),
                    visibility_config=visibility("aib-api-rate"),
                ),
            ],
        )

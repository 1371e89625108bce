"""Canary deployments of model versions: a CodeDeploy deployment group on the `live` alias of
every function that serves a model, and the deployer's targets and permissions.

A new model version reaches a function as a new Lambda version (its pin changed: see
`infra/model_versions.py`). CodeDeploy shifts the alias onto it: by default 10% of the
invocations for 5 minutes, then all of them (`CANARY_10_PERCENT_5_MINUTES`; per model with the
context key `model:<name>:deployment`, any `LambdaDeploymentConfig` constant), and shifts back
on its own when the deployment fails or one of the group's alarms fires:

- `Errors`: the alias's error rate over a minute above the function's `[alarms]
  error_rate_percent` (both versions' invocations: the canary's share is what moves it);
- `DurationP99`: the alias's p99 duration over a minute above `[alarms] p99_ms`;
- the model-quality alarm of each model the function serves (`ModelMonitoring.quality_alarm`:
  score drift from the production baseline, ROC AUC with enough labels; judged hourly).

The first two are separate from `FunctionAlarms` (5-minute periods, two for duration): a
canary window of 5 minutes must be able to see them fire. Traffic shifting works because
every trigger and API integration invokes the alias, never the function (`ServiceFunction`).

`functions/model_deployer` starts these deployments when a version is approved
(`aibackend.deploy`): CDK hands it the targets (`AIB_DEPLOY_TARGETS`) and grants it exactly the
Lambda and CodeDeploy actions on these functions and groups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from aibackend.catalog import DECLARATION, Catalog, FunctionSpec
from aibackend.deploy.targets import ALL_AT_ONCE
from aibackend.deploy.targets import ENV as TARGETS_ENV
from aibackend.errors import ConfigError
from infra.constructs.alarms import error_rate, notify
from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge, resource_finding
from infra.naming import (
    LIVE_ALIAS,
    deploy_application_name,
    function_name,
    pascal,
    quality_alarm_name,
)

#: The function that rolls approved versions out (functions/model_deployer).
DEPLOYER = "model_deployer"
#: Default traffic shifting of every model.
DEFAULT_CONFIG = "CANARY_10_PERCENT_5_MINUTES"
#: Lambda sends its metrics once a minute; a canary of 5 minutes sees five values.
PERIOD = cdk.Duration.minutes(1)

#: What the deployer does to the functions it deploys (their versions and alias included).
LAMBDA_ACTIONS = (
    "lambda:GetAlias",
    "lambda:GetFunctionConfiguration",
    "lambda:PublishVersion",
    "lambda:UpdateFunctionConfiguration",
)

ContextGetter = Callable[[str], Any]
#: The predefined configurations, by their `LambdaDeploymentConfig` constant.
KNOWN_CONFIGS = tuple(
    sorted(
        n
        for n in dir(codedeploy.LambdaDeploymentConfig)
        if n.startswith(("ALL_", "CANARY_", "LINEAR_"))
    )
)


def context_key(model: str) -> str:
    return f"model:{model}:deployment"


def deployment_config(model: str, get_context: ContextGetter) -> str:
    """The name of the `LambdaDeploymentConfig` constant that shifts `model`'s traffic."""
    raw = get_context(context_key(model))
    name = DEFAULT_CONFIG if raw is None else str(raw).strip().upper()
    if name not in KNOWN_CONFIGS:
        raise ConfigError(
            f"context {context_key(model)}: unknown deployment configuration {raw!r}; known: "
            f"{', '.join(KNOWN_CONFIGS)} (e.g. -c {context_key(model)}=ALL_AT_ONCE)"
        )
    return name


def function_config(spec: FunctionSpec, get_context: ContextGetter) -> str:
    """The one configuration of the models a function serves (a function has one alias)."""
    configs = {m: deployment_config(m, get_context) for m in spec.models}
    if len(set(configs.values())) > 1:
        found = ", ".join(f"{context_key(m)}={c}" for m, c in configs.items())
        raise ConfigError(
            f"{spec.directory / DECLARATION}: its models disagree on the deployment ({found}); "
            "a function's alias is shifted one way: give them the same configuration"
        )
    return next(iter(configs.values()))


def deploy_targets(catalog: Catalog, get_context: ContextGetter) -> dict[str, Any]:
    """`aibackend.deploy.targets.TargetsDocument` of every model-serving function of the
    catalog, whatever its deploy group: fixed physical names (functions `aib-<fn>`,
    applications `aib-<group>`, groups named after their function), so the deployer's
    environment holds no reference into another stack."""
    serving = sorted((f for f in catalog.functions if f.models), key=lambda f: f.name)
    return {
        "functions": {
            f.name: {
                "function": f.name,
                "function_name": function_name(f.name),
                "alias": LIVE_ALIAS,
                "application": deploy_application_name(f.deploy_group),
                "deployment_group": f.name,
                "deployment_config": getattr(
                    codedeploy.LambdaDeploymentConfig, function_config(f, get_context)
                ).deployment_config_name,
            }
            for f in serving
        },
        "models": {
            model: [f.name for f in serving if model in f.models] for model in catalog.model_names
        },
    }


class FunctionDeployment(Construct):
    """The deployment group of one model-serving function. Attributes: `group`
    (codedeploy.LambdaDeploymentGroup), `config` (its ILambdaDeploymentConfig), `errors`,
    `duration` (cloudwatch.Alarm), `alarms` (every alarm the group watches)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        fn: ServiceFunction,
        application: codedeploy.LambdaApplication,
        config: str,
        quality_alarms: Sequence[cloudwatch.IAlarm],
        topic: sns.ITopic,
        role: iam.Role,
    ) -> None:
        """`role`: CodeDeploy's service role, shared by the groups; this group adds what it
        needs (its alias, its alarms)."""
        super().__init__(scope, construct_id)
        spec, alias = fn.spec, fn.alias
        settings = spec.alarms
        rate = error_rate(alias, PERIOD, label=f"{spec.name} error rate per minute (%)")
        self.errors = rate.create_alarm(
            self,
            "Errors",
            alarm_description=(
                f"{spec.name} deployment: more than {settings.error_rate_percent:g}% of the "
                "live alias's invocations failed in a minute (function.toml [alarms] "
                "error_rate_percent); CodeDeploy rolls a running deployment back"
            ),
            threshold=settings.error_rate_percent,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        p99 = settings.p99_threshold_ms(spec.timeout_s)
        self.duration = alias.metric_duration(period=PERIOD, statistic="p99").create_alarm(
            self,
            "DurationP99",
            alarm_description=(
                f"{spec.name} deployment: the live alias's p99 duration over {p99} ms in a "
                "minute (function.toml [alarms] p99_ms); CodeDeploy rolls a running deployment "
                "back"
            ),
            threshold=p99,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        notify(topic, self.errors, self.duration)
        self.alarms: list[cloudwatch.IAlarm] = [self.errors, self.duration, *quality_alarms]
        self.config = getattr(codedeploy.LambdaDeploymentConfig, config)
        _allow_shifting(role, fn, self.alarms)
        self.group = codedeploy.LambdaDeploymentGroup(
            self,
            "Group",
            application=application,
            alias=alias,
            # As is: no managed policy added (see ModelDeployments.service_role).
            role=role.without_policy_updates(),
            deployment_config=self.config,
            alarms=self.alarms,
            # Unique within the application; short, so the deployer's targets stay small.
            deployment_group_name=spec.name,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )


def _allow_shifting(
    role: iam.Role, fn: ServiceFunction, alarms: Sequence[cloudwatch.IAlarm]
) -> None:
    """What CodeDeploy does for a function's group: read its alarms, shift its alias."""
    role.add_to_policy(
        iam.PolicyStatement(
            actions=[
                "lambda:GetAlias",
                "lambda:GetProvisionedConcurrencyConfig",
                "lambda:UpdateAlias",
            ],
            resources=[fn.function.function_arn, fn.alias.function_arn],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:DescribeAlarms"], resources=[a.alarm_arn for a in alarms]
        )
    )


class ModelDeployments(Construct):
    """A deploy group's canary deployments: one CodeDeploy application (`aib-<group>`), a
    `FunctionDeployment` per function of the group that declares models, and, in the group of
    `functions/model_deployer`, the deployer wired to every model-serving function of the
    catalog (by their fixed names: the other groups' stacks are not referenced).

    Attributes: `application` and `service_role` (CodeDeploy's, shared by the group's
    deployment groups; None when no function of the group serves a model), `deployments`
    (function name -> FunctionDeployment), `deployer` (the ServiceFunction, or None).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        catalog: Catalog,
        group: str,
        functions: Mapping[str, ServiceFunction],
        quality_alarms: Mapping[str, cloudwatch.IAlarm],
        topic: sns.ITopic,
    ) -> None:
        """`functions`: the group's. `quality_alarms`: model -> its model-quality alarm
        (`ModelMonitoring.quality_alarm`) for the models whose dashboard this group holds; the
        others' are found by name (`quality_alarm_name`)."""
        super().__init__(scope, construct_id)
        get_context = self.node.try_get_context
        self.application: codedeploy.LambdaApplication | None = None
        self.service_role: iam.Role | None = None
        self.deployments: dict[str, FunctionDeployment] = {}
        self._imported: dict[str, cloudwatch.IAlarm] = {}
        serving = {name: fn for name, fn in functions.items() if fn.spec.models}
        if serving:
            self.application = codedeploy.LambdaApplication(
                self, "Application", application_name=deploy_application_name(group)
            )
            # One role for the group's deployment groups: CodeDeploy may shift their live
            # aliases and read their alarms, and nothing else; CDK would attach
            # AWSCodeDeployRoleForLambdaLimited, which lets it update any alias of the account.
            self.service_role = iam.Role(
                self,
                "ServiceRole",
                assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
                description=f"CodeDeploy shifts the live aliases of group {group}'s models",
            )
        for name, fn in serving.items():
            assert self.application is not None and self.service_role is not None
            self.deployments[name] = FunctionDeployment(
                self,
                pascal(name),
                fn=fn,
                application=self.application,
                config=function_config(fn.spec, get_context),
                quality_alarms=[self._quality(m, quality_alarms) for m in fn.spec.models],
                topic=topic,
                role=self.service_role,
            )
        self.deployer = functions.get(DEPLOYER)
        if self.deployer is not None:
            self._wire(self.deployer, catalog)

    def _quality(self, model: str, local: Mapping[str, cloudwatch.IAlarm]) -> cloudwatch.IAlarm:
        if model in local:
            return local[model]
        if model in self._imported:
            return self._imported[model]
        arn = cdk.Stack.of(self).format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=quality_alarm_name(model),
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        alarm = cloudwatch.Alarm.from_alarm_arn(self, f"Quality{pascal(model)}", arn)
        self._imported[model] = alarm
        return alarm

    def _wire(self, deployer: ServiceFunction, catalog: Catalog) -> None:
        stack = cdk.Stack.of(self)
        targets = deploy_targets(catalog, self.node.try_get_context)
        deployer.function.add_environment(TARGETS_ENV, stack.to_json_string(targets))
        names = sorted(targets["functions"])
        served = [
            stack.format_arn(
                service="lambda",
                resource="function",
                resource_name=function_name(n),
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
            )
            for n in names
        ]
        versions = [f"{arn}:*" for arn in served]
        deployer.role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(LAMBDA_ACTIONS), resources=[*served, *versions])
        )
        groups = [
            stack.format_arn(
                service="codedeploy",
                resource="deploymentgroup",
                resource_name=f"{t['application']}/{t['deployment_group']}",
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
            )
            for t in (targets["functions"][n] for n in names)
        ]
        deployer.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "codedeploy:CreateDeployment",
                    "codedeploy:GetDeployment",
                    "codedeploy:ListDeployments",
                ],
                resources=groups,
            )
        )
        configs = {t["deployment_config"] for t in targets["functions"].values()}
        deployer.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["codedeploy:GetDeploymentConfig"],
                resources=[_config_arn(stack, name) for name in sorted({*configs, ALL_AT_ONCE})],
            )
        )
        applications = sorted({t["application"] for t in targets["functions"].values()})
        deployer.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "codedeploy:GetApplicationRevision",
                    "codedeploy:RegisterApplicationRevision",
                ],
                resources=[
                    stack.format_arn(
                        service="codedeploy",
                        resource="application",
                        resource_name=a,
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for a in applications
                ],
            )
        )
        policy = deployer.role.node.find_child("DefaultPolicy")
        for name, arn in zip(names, versions, strict=True):
            acknowledge(
                policy,
                "IAM5",
                f"{DEPLOYER} publishes versions of {name} (numbered by Lambda when published) "
                "and reads the configuration of the version its live alias serves: the "
                "function's own versions, no other function.",
                finding=resource_finding(policy, arn),
            )


def _config_arn(stack: cdk.Stack, name: str) -> str:
    return stack.format_arn(
        service="codedeploy",
        resource="deploymentconfig",
        resource_name=name,
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
    )

"""Canary deployments on AWS: every model-serving function's `live` alias is shifted by a
CodeDeploy group (canary, automatic rollback on failure and on its error, p99 and model-quality
alarms); callers invoke the alias; the deployer knows its targets from CDK and may touch only
them; the heavy tier's endpoint updates blue/green with a canary and rollback alarms."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aibackend.catalog import load_catalog
from aibackend.deploy.targets import ENV, TargetsDocument
from aibackend.errors import ConfigError
from infra.constructs.deployment import DEPLOYER, deployment_config, function_config
from infra.constructs.endpoint import EndpointSettings, canary_instances
from infra.naming import ENDPOINTS_STACK, quality_alarm_name

pytestmark = pytest.mark.slow  # reads the session's synthesized app

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "functions")
SERVING = sorted(f.name for f in CATALOG.functions if f.models)
CANARY = "CodeDeployDefault.LambdaCanary10Percent5Minutes"


def _stack(synth: Any, function: str) -> Any:
    """The group stack (ServiceGroupStack) that holds `function`."""
    (stack,) = [s for s in synth.built.service_stacks if function in s.functions]
    return stack


def _resources(synth: Any, function: str, type_: str) -> dict[str, dict[str, Any]]:
    return synth.resources(_stack(synth, function).stack_name, type_)


def _logical_id(stack: Any, construct: Any) -> str:
    return str(stack.resolve(construct.node.default_child.logical_id))


def _groups(synth: Any) -> dict[str, dict[str, Any]]:
    """Function name -> its deployment group's properties, across the group stacks."""
    return {
        g["Properties"]["DeploymentGroupName"]: g["Properties"]
        for g in synth.service_resources("AWS::CodeDeploy::DeploymentGroup").values()
    }


def _flatten(value: Any) -> str:
    """A template string value with each token as `<LogicalId>` (Ref) or `<LogicalId.Attr>`."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_flatten(p) for p in parts)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    return f"<{json.dumps(value)}>"


def _arn(service: str, resource: str) -> str:
    """An ARN as CDK's `format_arn` writes it in this account and region, flattened."""
    return f"arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{resource}"


def test_every_model_serving_function_has_a_canary_group_on_its_live_alias(synth: Any) -> None:
    groups = _groups(synth)
    # THEN each function that declares models has one group, and no other function has one
    assert sorted(groups) == SERVING
    for name in SERVING:
        stack, group = _stack(synth, name), groups[name]
        # AND it shifts 10% for 5 minutes, and rolls back on failure, stop and alarm
        assert group["DeploymentConfigName"] == CANARY, name
        assert group["AutoRollbackConfiguration"] == {
            "Enabled": True,
            "Events": [
                "DEPLOYMENT_FAILURE",
                "DEPLOYMENT_STOP_ON_REQUEST",
                "DEPLOYMENT_STOP_ON_ALARM",
            ],
        }
        # AND it belongs to its deploy group's application, `aib-<group>`
        apps = _resources(synth, name, "AWS::CodeDeploy::Application")
        (app,) = apps.values()
        assert app["Properties"]["ApplicationName"] == f"aib-{stack.group}"
        assert group["ApplicationName"] == {"Ref": next(iter(apps))}
        # AND the function's live alias, in the same stack, is the one it updates
        aliases = _resources(synth, name, "AWS::Lambda::Alias")
        alias_id = _logical_id(stack, stack.functions[name].alias)
        update = aliases[alias_id]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        group_id = _logical_id(stack, stack.deployments.deployments[name].group)
        assert update["DeploymentGroupName"] == {"Ref": group_id}
        assert aliases[alias_id]["Properties"]["Name"] == "live"


def test_each_group_watches_errors_p99_and_the_quality_of_every_model_served(synth: Any) -> None:
    for name, group in _groups(synth).items():
        stack = _stack(synth, name)
        spec = stack.functions[name].spec
        alarms = _resources(synth, name, "AWS::CloudWatch::Alarm")
        watched = [a["Name"] for a in group["AlarmConfiguration"]["Alarms"]]
        assert group["AlarmConfiguration"]["Enabled"] is True
        errors, duration = (alarms[w["Ref"]]["Properties"] for w in watched[:2])
        # THEN the error rate of the alias per minute, at the declaration's threshold
        assert errors["Threshold"] == spec.alarms.error_rate_percent
        assert {m["Id"] for m in errors["Metrics"]} >= {"errors", "invocations"}
        assert all(m["MetricStat"]["Period"] == 60 for m in errors["Metrics"] if "MetricStat" in m)
        # AND the alias's p99 duration per minute
        assert (duration["ExtendedStatistic"], duration["Period"]) == ("p99", 60)
        assert duration["Threshold"] == spec.alarms.p99_threshold_ms(spec.timeout_s)
        dims = {d["Name"] for d in duration["Dimensions"]}
        assert dims == {"FunctionName", "Resource"}  # the alias, not the function
        # AND each served model's quality alarm, by its fixed name: the one in this stack, or
        # the one of the group that holds the model's dashboard (no cross-stack reference)
        names = [
            alarms[w["Ref"]]["Properties"]["AlarmName"] if isinstance(w, dict) else w
            for w in watched[2:]
        ]
        assert names == [quality_alarm_name(m) for m in spec.models], name


def test_each_models_quality_alarm_exists_once_with_its_fixed_name(synth: Any) -> None:
    found = [
        a["Properties"].get("AlarmName")
        for a in synth.service_resources("AWS::CloudWatch::Alarm").values()
    ]
    for model in CATALOG.model_names:
        assert found.count(quality_alarm_name(model)) == 1, model


def test_codedeploy_may_shift_only_the_served_aliases_and_read_their_alarms(synth: Any) -> None:
    stacks = {s.stack_name: s for s in (_stack(synth, n) for n in SERVING)}
    for stack_name, stack in stacks.items():
        role_id = _logical_id(stack, stack.deployments.service_role)
        role = synth.resources(stack_name, "AWS::IAM::Role")[role_id]["Properties"]
        # THEN no managed policy (AWSCodeDeployRoleForLambdaLimited may update any alias)
        assert "ManagedPolicyArns" not in role
        (policy,) = [
            p["Properties"]
            for p in synth.resources(stack_name, "AWS::IAM::Policy").values()
            if p["Properties"]["Roles"] == [{"Ref": role_id}]
        ]
        granted: dict[str, set[str]] = {}
        for st in policy["PolicyDocument"]["Statement"]:
            res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for action in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
                granted.setdefault(action, set()).update(_flatten(r) for r in res)
        everything = set().union(*granted.values())
        # AND every resource is one of the group's functions, aliases or alarms: no wildcard
        assert "*" not in everything and not any(r.endswith("*") for r in everything)
        alarms = synth.resources(stack_name, "AWS::CloudWatch::Alarm")
        readable = {
            alarms[r.strip("<>").removesuffix(".Arn")]["Properties"]["AlarmName"]
            if r.endswith(".Arn>")
            else r.rsplit(":", 1)[1]
            for r in granted["cloudwatch:DescribeAlarms"]
            if "AlarmName"
            in alarms.get(r.strip("<>").removesuffix(".Arn"), {}).get("Properties", {})
            or not r.endswith(".Arn>")
        }
        for name in stack.deployments.deployments:
            fn = stack.functions[name]
            assert f"<{_logical_id(stack, fn.function)}.Arn>" in granted["lambda:UpdateAlias"]
            assert f"<{_logical_id(stack, fn.alias)}>" in granted["lambda:UpdateAlias"]
            # AND it may read the quality alarm of every model the function serves
            assert {quality_alarm_name(m) for m in fn.spec.models} <= readable, name


def test_event_rules_invoke_the_live_alias(synth: Any) -> None:
    for stack in synth.built.service_stacks:
        aliases = set(synth.resources(stack.stack_name, "AWS::Lambda::Alias"))
        rules = synth.resources(stack.stack_name, "AWS::Events::Rule").values()
        lambda_targets = [
            _flatten(t["Arn"])
            for r in rules
            for t in r["Properties"]["Targets"]
            if ":sqs:" not in _flatten(t["Arn"]) and ":sns:" not in _flatten(t["Arn"])
        ]
        # THEN every rule's Lambda target is an alias of the stack (shifting sees it all)
        for arn in lambda_targets:
            assert arn.strip("<>") in aliases, (stack.stack_name, arn)


def test_the_deployer_gets_every_target_from_cdk_by_fixed_names(synth: Any) -> None:
    stack = _stack(synth, DEPLOYER)
    deployer_id = _logical_id(stack, stack.functions[DEPLOYER].function)
    env = _resources(synth, DEPLOYER, "AWS::Lambda::Function")[deployer_id]["Properties"]
    document = TargetsDocument.model_validate_json(_flatten(env["Environment"]["Variables"][ENV]))
    # THEN each model maps to exactly the functions that declare it, in every group
    assert {m: list(fs) for m, fs in document.models.items()} == {
        m: sorted(f.name for f in CATALOG.functions if m in f.models) for m in CATALOG.model_names
    }
    # AND each target names its function, alias, application and group by their fixed names
    groups = _groups(synth)
    for name, target in document.functions.items():
        spec = next(f for f in CATALOG.functions if f.name == name)
        assert target.function_name == f"aib-{name}"
        assert target.application == f"aib-{spec.deploy_group}"
        assert target.deployment_group == name and name in groups
        assert (target.alias, target.deployment_config) == ("live", CANARY)


def test_the_deployer_may_touch_only_the_served_functions_and_their_groups(synth: Any) -> None:
    stack = _stack(synth, DEPLOYER)
    role_id = _logical_id(stack, stack.functions[DEPLOYER].role)
    (policy,) = [
        p["Properties"]
        for p in _resources(synth, DEPLOYER, "AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    by_action: dict[str, set[str]] = {}
    for s in policy["PolicyDocument"]["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        res = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        for a in actions:
            by_action.setdefault(a, set()).update(_flatten(r) for r in res)
    served = {_arn("lambda", f"function:aib-{n}") for n in SERVING}
    # THEN the Lambda actions are on the served functions and their versions, nothing else
    for action in (
        "lambda:GetAlias",
        "lambda:GetFunctionConfiguration",
        "lambda:PublishVersion",
        "lambda:UpdateFunctionConfiguration",
    ):
        assert by_action[action] == served | {f"{arn}:*" for arn in served}
    # AND CodeDeploy's on exactly the groups, applications and configurations it uses
    specs = {f.name: f for f in CATALOG.functions}
    groups = {
        _arn("codedeploy", f"deploymentgroup:aib-{specs[n].deploy_group}/{n}") for n in SERVING
    }
    assert by_action["codedeploy:CreateDeployment"] == groups
    assert (
        by_action["codedeploy:GetDeployment"] == by_action["codedeploy:ListDeployments"] == groups
    )
    configs = by_action["codedeploy:GetDeploymentConfig"]
    assert {c.rsplit(":", 1)[1] for c in configs} == {CANARY, "CodeDeployDefault.LambdaAllAtOnce"}
    apps = {_arn("codedeploy", f"application:aib-{specs[n].deploy_group}") for n in SERVING}
    assert by_action["codedeploy:RegisterApplicationRevision"] == apps
    # AND no action is on every resource except X-Ray's (no resource-level permissions)
    anywhere = {a for a, res in by_action.items() if "*" in res}
    assert anywhere == {"xray:PutTelemetryRecords", "xray:PutTraceSegments"}


def test_the_deployment_configuration_comes_from_context_per_model() -> None:
    context = {"model:fraud:deployment": "linear_10_percent_every_1_minute"}
    assert deployment_config("fraud", context.get) == "LINEAR_10_PERCENT_EVERY_1_MINUTE"
    assert deployment_config("sentiment", context.get) == "CANARY_10_PERCENT_5_MINUTES"
    with pytest.raises(ConfigError, match=r"model:fraud:deployment: unknown .*'fast'.*ALL_AT_ONCE"):
        deployment_config("fraud", {"model:fraud:deployment": "fast"}.get)
    # a function serving two models shifts one alias: their configurations must agree
    spec = SimpleNamespace(models=("a", "b"), directory=Path("functions/x"))
    with pytest.raises(ConfigError, match="its models disagree"):
        function_config(spec, {"model:a:deployment": "ALL_AT_ONCE"}.get)  # type: ignore[arg-type]


def test_the_endpoint_updates_blue_green_with_a_canary_and_rollback_alarms(synth: Any) -> None:
    template = synth.template_json(ENDPOINTS_STACK)["Resources"]
    (endpoint,) = [r for r in template.values() if r["Type"] == "AWS::SageMaker::Endpoint"]
    config = endpoint["Properties"]["DeploymentConfig"]
    policy = config["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY" and routing["WaitIntervalInSeconds"] > 0
    assert routing["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}  # 10% of 2, at least 1
    assert policy["TerminationWaitInSeconds"] > 0
    assert policy["MaximumExecutionTimeoutInSeconds"] > routing["WaitIntervalInSeconds"]
    watched = {a["AlarmName"]["Ref"] for a in config["AutoRollbackConfiguration"]["Alarms"]}
    metrics = {template[a]["Properties"]["MetricName"] for a in watched}
    assert metrics == {"Invocation5XXErrors", "ModelLatency"}


@pytest.mark.parametrize(
    ("count", "percent", "instances"),
    [(2, 10, 1), (10, 10, 1), (20, 10, 2), (3, 50, 1), (8, 50, 4)],
)
def test_the_endpoint_canary_is_a_share_of_the_fleet_in_whole_instances(
    count: int, percent: int, instances: int
) -> None:
    settings = EndpointSettings(
        instance_count=count, max_instance_count=count, canary_percent=percent
    )
    assert canary_instances(settings) == instances

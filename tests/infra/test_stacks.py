"""One stack per deploy group plus the shared ones: a group deploys without touching the others.

The session synth (the project's functions) against one more synth of a copy where only the
fraud group's code and declaration changed: every other template must come out identical.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from aibackend.errors import ConfigError
from infra.application import build_app, group_stack_name
from infra.config import InfraConfig
from infra.naming import API_STACK, DATA_STACK, SHARED_STACK, SHARED_STACKS
from tests.infra.conftest import ROOT, SERVICE_CATALOG, SYNTH_CONTEXT

pytestmark = pytest.mark.slow

CATALOG = SERVICE_CATALOG


def templates(outdir: Path) -> dict[str, dict[str, Any]]:
    return {
        t.name.removesuffix(".template.json"): json.loads(t.read_text())
        for t in outdir.glob("*.template.json")
    }


@pytest.fixture(scope="module")
def fraud_changed(tmp_path_factory: pytest.TempPathFactory, synthesizer: Any) -> Any:
    """The project's functions with fraud_score's code, memory and environment changed."""
    functions = tmp_path_factory.mktemp("changed") / "functions"
    shutil.copytree(
        ROOT / "functions", functions, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    fraud = functions / "fraud_score"
    (fraud / "scoring.py").write_text((fraud / "scoring.py").read_text() + "\n# changed\n")
    toml = (fraud / "function.toml").read_text()
    toml = toml.replace('FRAUD_THRESHOLD = "0.5"', 'FRAUD_THRESHOLD = "0.6"')
    toml = toml.replace("memory_mb = 1769", "memory_mb = 2048")
    (fraud / "function.toml").write_text(toml)
    return synthesizer(tmp_path_factory.mktemp("changed.out"), functions_dir=functions)


def test_one_stack_per_deploy_group_holding_exactly_its_functions(synth: Any) -> None:
    # GIVEN the project's deploy groups (fraud_score and fraud_events share `fraud`)
    assert [f.name for f in CATALOG.groups["fraud"]] == ["fraud_events", "fraud_score"]
    built = synth.built
    # THEN each group has its own stack (the authorizer's, `api`, is AibApi) with its functions
    assert {g: s.stack_name for g, s in built.groups.items()} == {
        g: group_stack_name(g) for g in CATALOG.groups
    }
    assert built.groups["api"] is built.api and built.api.stack_name == API_STACK
    for group, specs in CATALOG.groups.items():
        stack = built.groups[group]
        assert set(stack.functions) == {s.name for s in specs}, group
        functions = synth.resources(stack.stack_name, "AWS::Lambda::Function").values()
        assert {f["Properties"]["FunctionName"] for f in functions} == {
            f"aib-{s.name}" for s in specs
        }


def test_dependencies_go_from_groups_to_shared_stacks_and_from_the_api_to_groups(
    synth: Any,
) -> None:
    built = synth.built
    shared = set(SHARED_STACKS)
    groups = {s.stack_name for s in built.service_stacks} - {API_STACK}
    by_name = {
        s.stack_name: {d.id for d in s.dependencies} - {f"{s.stack_name}.assets"}
        for s in synth.assembly.stacks
    }
    # THEN the shared stacks depend on nothing of this app but AibShared on AibData: the rules
    # that fill queues (`[[queues.events]]`) live beside their queues, on AibData's bus
    # (AibEndpoints: on AibModels only)
    for name in shared:
        assert by_name[name] == ({DATA_STACK} if name == SHARED_STACK else set()), name
    assert by_name["AibEndpoints"] == {"AibModels"}
    # AND a group depends on the shared stacks only: never on another group, never on AibApi
    for name in groups:
        assert by_name[name] == shared, name
    # AND AibApi comes last: after the shared stacks and every group
    assert by_name[API_STACK] == shared | groups


def test_group_stacks_export_nothing(synth: Any) -> None:
    # Nothing imports from a group: no export can block deploying or removing what it holds
    for name in synth.service_stacks:
        outputs = synth.template_json(name).get("Outputs", {})
        assert not [o for o in outputs.values() if "Export" in o], name
    # ... and the shared stacks import nothing but AibShared the platform bus's name (for the
    # rules that fill queues): they deploy before any group
    for name in SHARED_STACKS:
        imports = json.dumps(synth.template_json(name)).count("Fn::ImportValue")
        if name == SHARED_STACK:
            text = json.dumps(synth.template_json(name))
            assert text.count('{"Fn::ImportValue": "AibData-BusName"}') == imports > 0
        else:
            assert imports == 0, name


def test_changing_one_group_changes_its_template_and_no_other(
    synth: Any, fraud_changed: Any
) -> None:
    # GIVEN the project, and a copy where only fraud_score's code and declaration changed
    before, after = templates(synth.outdir), templates(fraud_changed.outdir)
    assert set(before) == set(after)
    # THEN the fraud group's template changed ...
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"AibSvc-fraud"}
    # ... in fraud_score's function, and not in fraud_events'
    fns = {
        name: [r for r in t["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
        for name, t in (("before", before["AibSvc-fraud"]), ("after", after["AibSvc-fraud"]))
    }
    (score,) = [f for f in fns["after"] if f["Properties"]["FunctionName"] == "aib-fraud_score"]
    assert score["Properties"]["MemorySize"] == 2048
    (events_before,) = [
        f for f in fns["before"] if f["Properties"]["FunctionName"] == "aib-fraud_events"
    ]
    (events_after,) = [
        f for f in fns["after"] if f["Properties"]["FunctionName"] == "aib-fraud_events"
    ]
    assert events_before == events_after


# --- the monthly budget ---------------------------------------------------------------------


def test_the_budget_notifies_the_alarm_topic_at_80_percent_spent_and_100_forecast(
    synth: Any,
) -> None:
    (budget,) = synth.resources("AibShared", "AWS::Budgets::Budget").values()
    props = budget["Properties"]
    assert props["Budget"]["BudgetLimit"] == {"Amount": 50, "Unit": "USD"}  # cdk.json default
    assert (props["Budget"]["BudgetType"], props["Budget"]["TimeUnit"]) == ("COST", "MONTHLY")
    topic = synth.built.shared.resolve(synth.built.shared.alarm_topic.topic_arn)
    notified = {
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"]): n["Subscribers"]
        for n in props["NotificationsWithSubscribers"]
    }
    sns = [{"SubscriptionType": "SNS", "Address": topic}]
    assert notified == {("ACTUAL", 80): sns, ("FORECASTED", 100): sns}
    # AND AWS Budgets may publish to the topic, for this account's budgets only
    policies = synth.resources("AibShared", "AWS::SNS::TopicPolicy").values()
    statements = [
        s
        for p in policies
        if p["Properties"]["Topics"] == [topic]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (budgets,) = [
        s for s in statements if s.get("Principal") == {"Service": "budgets.amazonaws.com"}
    ]
    assert budgets["Action"] == "sns:Publish"
    assert budgets["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


def test_the_budgets_amount_and_email_come_from_context(
    tmp_path: Path, functions_dir: Path, new_function: Callable[..., Path]
) -> None:
    # GIVEN a monthly amount and an e-mail address in CDK context
    new_function(functions_dir, "worker", "")
    built = build_app(
        ROOT,
        context={
            **SYNTH_CONTEXT,
            "aib:budget-monthly-usd": "120",
            "aib:budget-email": "ops@example.com",
        },
        functions_dir=functions_dir,
        outdir=str(tmp_path / "out"),
    )
    props = built.app.synth().get_stack_by_name("AibShared").template["Resources"]
    (budget,) = [r["Properties"] for r in props.values() if r["Type"] == "AWS::Budgets::Budget"]
    # THEN the budget has that limit, and each notification also goes to the address
    assert budget["Budget"]["BudgetLimit"] == {"Amount": 120, "Unit": "USD"}
    for n in budget["NotificationsWithSubscribers"]:
        assert {"SubscriptionType": "EMAIL", "Address": "ops@example.com"} in n["Subscribers"]


def test_a_bad_budget_email_is_refused_naming_the_context_key() -> None:
    app = cdk.App(context={"aib:budget-email": "ops-at-example"})
    with pytest.raises(ConfigError, match="aib:budget-email"):
        InfraConfig.from_node(app.node)


def test_api_gateway_may_invoke_each_routed_function_from_its_methods_only(synth: Any) -> None:
    # GIVEN AibApi's Lambda permissions (the group stacks hold none for API Gateway)
    for name in synth.service_stacks:
        if name != API_STACK:
            permissions = synth.resources(name, "AWS::Lambda::Permission").values()
            principals = {p["Properties"]["Principal"] for p in permissions}
            assert "apigateway.amazonaws.com" not in principals, name
    permissions = [
        p["Properties"]
        for p in synth.resources(API_STACK, "AWS::Lambda::Permission").values()
        if "/authorizers/" not in json.dumps(p["Properties"]["SourceArn"])
    ]
    # THEN each route has one, on its function's live alias (by its fixed name), from its
    # method of this API only
    assert len(permissions) == len(list(CATALOG.routes()))
    for spec, route in CATALOG.routes():
        path = "/".join("*" if p.startswith("{") else p for p in route.path.split("/"))
        (permission,) = [
            p
            for p in permissions
            if json.dumps(p["SourceArn"]).endswith(f'/{route.method}{path}"]]}}')
        ]
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert permission["Action"] == "lambda:InvokeFunction"
        assert permission["FunctionName"]["Fn::Join"][1][-1] == f":function:aib-{spec.name}:live"

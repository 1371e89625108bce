"""Declared secrets on AWS: the parameter's name in the environment, `ssm:GetParameter` on that
parameter only. One synth of a catalog with a function that declares two secrets and one that
declares none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra.constructs.service_function import secret_grant

pytestmark = pytest.mark.slow

FUNCTIONS = {
    "payer": (
        "[secrets]\n"
        'stripe_key = "/aib/payments/stripe-key"\n'
        'webhook = "/aib/payments/webhook.secret"\n'
    ),
    "plain": "memory_mb = 256\n",
}


def parameter_arn(name: str) -> dict[str, Any]:
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":ssm:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":parameter{name}",
            ],
        ]
    }


@pytest.fixture(scope="module")
def secrets_app(
    tmp_path_factory: pytest.TempPathFactory,
    new_function: Callable[..., Path],
    synthesizer: Callable[..., Any],
) -> Any:
    functions_dir = tmp_path_factory.mktemp("secrets") / "functions"
    functions_dir.mkdir()
    for name, toml in FUNCTIONS.items():
        new_function(functions_dir, name, toml)
    return synthesizer(
        tmp_path_factory.mktemp("secrets.out"),
        functions_dir=functions_dir,
        context={"aws:cdk:bundling-stacks": []},
    )


def statements(app: Any, function: str) -> list[dict[str, Any]]:
    policies = app.service_resources("AWS::IAM::Policy")
    (policy,) = (v for k, v in policies.items() if k.startswith(f"{function}RoleDefaultPolicy"))
    found: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def env(app: Any, function: str) -> dict[str, Any]:
    fns = app.service_resources("AWS::Lambda::Function")
    (fn,) = (v for k, v in fns.items() if k.startswith(f"{function}Function"))
    variables: dict[str, Any] = fn["Properties"]["Environment"]["Variables"]
    return variables


def test_declared_secret_is_readable_by_that_parameter_only(secrets_app: Any) -> None:
    # GIVEN payer declares two secrets
    ssm = [s for s in statements(secrets_app, "Payer") if "ssm:" in str(s["Action"])]
    # THEN its role may get exactly those two parameters, nothing by path, no wildcard
    assert ssm == [
        {
            "Action": "ssm:GetParameter",
            "Effect": "Allow",
            "Resource": [
                parameter_arn("/aib/payments/stripe-key"),
                parameter_arn("/aib/payments/webhook.secret"),
            ],
        }
    ]


def test_declared_secret_names_its_parameter_in_the_environment(secrets_app: Any) -> None:
    variables = env(secrets_app, "Payer")
    assert variables["AIB_SECRET_STRIPE_KEY"] == "/aib/payments/stripe-key"
    assert variables["AIB_SECRET_WEBHOOK"] == "/aib/payments/webhook.secret"


def test_a_function_without_secrets_gets_no_ssm_access(secrets_app: Any) -> None:
    assert not [s for s in statements(secrets_app, "Plain") if "ssm:" in str(s["Action"])]
    assert not [k for k in env(secrets_app, "Plain") if k.startswith("AIB_SECRET_")]


def test_secret_grants_need_no_acknowledgement(secrets_app: Any) -> None:
    nag = secrets_app.nag_report()
    assert nag["conclusion"] == "success"
    assert not [s for s in nag["suppressedViolations"] if "ssm" in s["ruleName"].lower()]
    assert secrets_app.cfn_lint_findings() == []


def test_secret_grant_deduplicates_parameters() -> None:
    # GIVEN the same parameter twice (two logical names for one secret)
    stack = cdk.Stack(cdk.App(), "S")
    statement = secret_grant(stack, ["/aib/a", "/aib/a", "/aib/b"])
    # THEN one ARN each
    rendered = stack.resolve(statement.to_statement_json())
    assert rendered["Resource"] == [parameter_arn("/aib/a"), parameter_arn("/aib/b")]

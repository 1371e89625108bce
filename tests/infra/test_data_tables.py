"""Data tables from declarations: created once in AibData, granted per entry in group stacks.

One synth of a catalog whose functions share one idempotency table with each grant kind; one
of them also reads the model registry, which stays in AibModels as it was.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from aibackend import idempotency
from aibackend.idempotency import EFFECT_KEY_ATTR

pytestmark = pytest.mark.slow

CONTEXT: dict[str, Any] = {"aws:cdk:bundling-stacks": []}

FUNCTIONS = {
    "orders": '[resources.tables]\n"orders-idempotency" = "readwrite"\n',
    "audit": '[resources.tables]\n"orders-idempotency" = "read"\nregistry = "read"\n',
    "archiver": '[resources.tables]\n"orders-idempotency" = "write"\n',
}

READ = {
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
}
WRITE = {
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
}
TABLE_ARN = {"Fn::ImportValue": "AibData-TableOrdersIdempotencyArn"}
TABLE_NAME = {"Fn::ImportValue": "AibData-TableOrdersIdempotencyName"}


@pytest.fixture(scope="module")
def tables(
    tmp_path_factory: pytest.TempPathFactory,
    new_function: Callable[..., Path],
    synthesizer: Callable[..., Any],
) -> Any:
    functions_dir = tmp_path_factory.mktemp("tables") / "functions"
    functions_dir.mkdir()
    for name, toml in FUNCTIONS.items():
        new_function(functions_dir, name, toml)
    return synthesizer(
        tmp_path_factory.mktemp("tables.out"), functions_dir=functions_dir, context=CONTEXT
    )


def table_statements(tables: Any, function: str) -> list[dict[str, Any]]:
    """The function's DynamoDB statements, actions as sets."""
    policies = tables.service_resources("AWS::IAM::Policy")
    (policy,) = (v for k, v in policies.items() if k.startswith(f"{function}RoleDefaultPolicy"))
    return [
        {**s, "Action": {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "dynamodb:" in str(s["Action"])
    ]


def env(tables: Any, function: str) -> dict[str, Any]:
    fns = tables.service_resources("AWS::Lambda::Function")
    (fn,) = (v for k, v in fns.items() if k.startswith(f"{function}Function"))
    variables: dict[str, Any] = fn["Properties"]["Environment"]["Variables"]
    return variables


# --- AibData ------------------------------------------------------------------------------------


def test_data_table_is_on_demand_expiring_recoverable_encrypted_and_retained(tables: Any) -> None:
    # GIVEN three functions naming "orders-idempotency" and one naming "registry"
    # THEN AibData holds one table, not the registry (that one is AibModels')
    ((table_id, table),) = tables.resources("AibData", "AWS::DynamoDB::Table").items()
    assert table_id.startswith("DataTablesOrdersIdempotency")
    p = table["Properties"]
    # AND its layout is the one Powertools idempotency and the effect tables use
    powertools = inspect.signature(DynamoDBPersistenceLayer).parameters
    assert powertools["key_attr"].default == EFFECT_KEY_ATTR == "id"
    assert p["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert p["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert p["TimeToLiveSpecification"] == {
        "AttributeName": powertools["expiry_attr"].default,
        "Enabled": True,
    }
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # AND it is encrypted under AibData's own key
    (key_id,) = tables.resources("AibData", "AWS::KMS::Key")
    assert p["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    # AND CloudFormation names it (functions learn the name), and keeps it on stack deletion
    assert "TableName" not in p
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_data_table_is_exported_by_fixed_names_and_output(tables: Any) -> None:
    outputs = tables.template_json("AibData")["Outputs"]
    exports = {o["Export"]["Name"]: o["Value"] for o in outputs.values() if "Export" in o}
    (table_id,) = tables.resources("AibData", "AWS::DynamoDB::Table")
    (key_id,) = tables.resources("AibData", "AWS::KMS::Key")
    assert exports == {
        "AibData-BusName": exports["AibData-BusName"],
        "AibData-DataKeyArn": {"Fn::GetAtt": [key_id, "Arn"]},
        "AibData-TableOrdersIdempotencyArn": {"Fn::GetAtt": [table_id, "Arn"]},
        "AibData-TableOrdersIdempotencyName": {"Ref": table_id},
    }
    assert outputs["TableOrdersIdempotencyName"]["Value"] == {"Ref": table_id}
    # AND each group stack depends on the shared stacks, never on another group's
    for stack in tables.built.groups.values():
        if stack is not tables.built.api:
            depends_on = {s.stack_name for s in stack.dependencies}
            assert depends_on == {"AibModels", "AibData", "AibShared"}


# --- grants and names in the group stacks ---------------------------------------------------


def dynamodb_calls(source: type | ModuleType) -> set[str]:
    """IAM actions of the DynamoDB client calls in `source`'s code (`put_item` -> PutItem)."""
    calls = re.findall(r"client\.(\w+)\(", inspect.getsource(source))
    return {"dynamodb:" + "".join(p.capitalize() for p in c.split("_")) for c in calls}


def test_readwrite_function_gets_item_reads_and_writes_on_that_table_only(tables: Any) -> None:
    assert table_statements(tables, "Orders") == [
        {"Action": READ | WRITE, "Effect": "Allow", "Resource": TABLE_ARN}
    ]
    # Every call Powertools idempotency and the effects unit of work make is allowed
    needed = dynamodb_calls(DynamoDBPersistenceLayer) | dynamodb_calls(idempotency)
    assert needed == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    assert needed <= READ | WRITE


def test_read_function_gets_item_reads_only(tables: Any) -> None:
    (data,) = [s for s in table_statements(tables, "Audit") if s["Resource"] == TABLE_ARN]
    assert data == {"Action": READ, "Effect": "Allow", "Resource": TABLE_ARN}


def test_write_function_gets_item_writes_only(tables: Any) -> None:
    assert table_statements(tables, "Archiver") == [
        {"Action": WRITE, "Effect": "Allow", "Resource": TABLE_ARN}
    ]


def test_every_function_naming_the_table_learns_its_physical_name(tables: Any) -> None:
    for function in ("Orders", "Audit", "Archiver"):
        assert env(tables, function)["AIB_TABLE_ORDERS_IDEMPOTENCY"] == TABLE_NAME


def test_registry_stays_in_aib_models_with_cdks_read_grant(tables: Any) -> None:
    # GIVEN audit declares registry = "read"
    (registry,) = [s for s in table_statements(tables, "Audit") if s["Resource"] != TABLE_ARN]
    # THEN the grant is on the registry AibModels owns, as before data tables existed
    assert {"Fn::ImportValue": "AibModels-RegistryTableName"} in registry["Resource"]["Fn::Join"][1]
    # CDK's grant_read_data, streams and DescribeTable included
    assert registry["Action"] == READ | {
        "dynamodb:DescribeTable",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
    assert "AIB_TABLE_REGISTRY" not in env(tables, "Audit")
    assert env(tables, "Audit")["AIB_REGISTRY_TABLE"] == {
        "Fn::ImportValue": "AibModels-RegistryTableName"
    }


# --- compliance ---------------------------------------------------------------------------------


def test_cfn_lint_finds_no_errors_or_warnings(tables: Any) -> None:
    assert tables.cfn_lint_findings() == []


def test_cdk_nag_reports_no_findings_and_acknowledges_none_for_tables(tables: Any) -> None:
    nag = tables.nag_report()
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    # Only the function defaults (X-Ray's Resource::*, the declared runtime) are acknowledged
    assert {s["ruleName"] for s in nag["suppressedViolations"]} == {
        "AwsSolutions-IAM5[Resource::*]",
        "AwsSolutions-L1",
    }


def test_no_stack_carries_warnings_or_errors(tables: Any) -> None:
    for stack in tables.assembly.stacks:
        levels = {str(m.level.value).lower() for m in stack.messages}
        assert not levels & {"error", "warning"}, (stack.stack_name, stack.messages)

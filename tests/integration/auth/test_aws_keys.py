"""`aib keys --aws`: the hash in DynamoDB, the key itself in API Gateway under its plan's usage
plan (moto), and the stacks' outputs that say where both are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aibackend.auth.aws import DynamoKeyStore, key_store_from_stacks
from aibackend.auth.keys import hash_key
from aibackend.auth.plans import DEFAULT_PLANS
from aibackend.cli import build_parser
from aibackend.errors import ConfigError
from tests.support import create_data_table

TABLE = "AibData-TableApiKeys-1A2B3C"


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_data_table(ddb, TABLE)
        yield ddb, boto3.client("apigateway")


def test_create_lookup_revoke_on_aws(clients: tuple[Any, Any]) -> None:
    ddb, apigw = clients
    usage_plans = {p: apigw.create_usage_plan(name=p)["id"] for p in ("standard", "free")}
    store = DynamoKeyStore(
        TABLE, dynamodb=ddb, apigateway=apigw, plans=DEFAULT_PLANS, usage_plans=usage_plans
    )
    # WHEN a key is created on the standard plan
    key, secret = store.create("checkout", "standard")
    # THEN the table holds its hash (never the secret) and API Gateway meters the key under
    # the standard usage plan only
    item = ddb.get_item(TableName=TABLE, Key={"id": {"S": hash_key(secret)}})["Item"]
    assert item["key_id"]["S"] == key.key_id and secret not in str(item)
    assert [
        k["value"] for k in apigw.get_usage_plan_keys(usagePlanId=usage_plans["standard"])["items"]
    ] == [secret]
    assert apigw.get_usage_plan_keys(usagePlanId=usage_plans["free"])["items"] == []
    # AND the authorizer's lookup finds it
    found = store.lookup(secret)
    assert found is not None and (found.plan, found.revoked) == ("standard", False)
    # WHEN it is revoked  THEN the table says so and API Gateway disables the key too
    store.revoke(key.key_id)
    found = store.lookup(secret)
    assert found is not None and found.revoked
    assert apigw.get_api_key(apiKey=key.gateway_key_id)["enabled"] is False
    assert [k.key_id for k in store.list()] == [key.key_id]


def test_a_plan_without_a_deployed_usage_plan_is_refused(clients: tuple[Any, Any]) -> None:
    ddb, apigw = clients
    store = DynamoKeyStore(TABLE, dynamodb=ddb, apigateway=apigw, plans=DEFAULT_PLANS)
    with pytest.raises(ConfigError, match="no API Gateway usage plan for plan 'free'"):
        store.create("x", "free")


class _Stacks:
    def __init__(self, outputs: dict[str, dict[str, str]]) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        if StackName not in self.outputs:
            raise RuntimeError(f"Stack with id {StackName} does not exist")
        out = [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs[StackName].items()]
        return {"Stacks": [{"Outputs": out}]}


def test_the_stacks_outputs_name_the_table_and_usage_plans(clients: tuple[Any, Any]) -> None:
    ddb, apigw = clients
    stacks = _Stacks(
        {
            "AibData": {"TableApiKeysName": TABLE},
            "AibApi": {"UsagePlanStandardId": "up1", "UsagePlanFreeId": "up2"},
        }
    )
    store = key_store_from_stacks(
        DEFAULT_PLANS,
        data_stack="AibData",
        api_stack="AibApi",
        cloudformation=stacks,
        dynamodb=ddb,
        apigateway=apigw,
    )
    assert store.table == TABLE
    assert store.usage_plans == {"standard": "up1", "free": "up2"}
    with pytest.raises(ConfigError, match="cannot read stack 'Prod-Data'"):
        key_store_from_stacks(
            DEFAULT_PLANS,
            data_stack="Prod-Data",
            api_stack="AibApi",
            cloudformation=stacks,
            dynamodb=ddb,
            apigateway=apigw,
        )


def test_the_development_plan_has_no_deployed_keys(clients: tuple[Any, Any]) -> None:
    ddb, apigw = clients
    store = DynamoKeyStore(TABLE, dynamodb=ddb, apigateway=apigw, plans=DEFAULT_PLANS)
    with pytest.raises(ConfigError, match="plan 'dev' is for `aib dev` only"):
        store.create("x", "dev")


@pytest.mark.parametrize("flag", ["--api-stack", "--services-stack"])
def test_keys_aws_takes_the_api_stack_by_its_name_and_its_old_one(flag: str) -> None:
    # GIVEN a deployment whose API stack is not the default one
    # WHEN `aib keys list --aws` names it, by the flag's name or the one it had before
    args = build_parser().parse_args(["keys", "list", "--aws", flag, "Prod-Api"])
    # THEN the key store reads that stack's usage plans
    assert args.api_stack == "Prod-Api"
    assert args.data_stack == "AibData"

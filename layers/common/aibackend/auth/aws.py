"""API keys on AWS: hashes and plans in the `api-keys` data table, the key itself in API
Gateway under its plan's usage plan (API Gateway meters and throttles it there).

Table layout (the data tables' common one): `id` = SHA-256 of the key (partition key), plus
`key_id`, `name`, `plan`, `created_at`, `revoked_at`, `gateway_key_id`. The authorizer only
reads it (`GetItem`); `aib keys` writes it with the operator's credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aibackend.auth.keys import ApiKey, KeyNotFoundError, check_plan, hash_key, new_key
from aibackend.auth.plans import Plan
from aibackend.errors import ConfigError


def _key(item: Mapping[str, Any]) -> ApiKey:
    def s(name: str) -> str | None:
        v = item.get(name)
        return None if v is None else str(v["S"])

    revoked = s("revoked_at")
    return ApiKey(
        key_id=str(s("key_id")),
        name=str(s("name")),
        plan=str(s("plan")),
        created_at=datetime.fromisoformat(str(s("created_at"))),
        revoked_at=None if revoked is None else datetime.fromisoformat(revoked),
        gateway_key_id=s("gateway_key_id"),
    )


class DynamoKeyStore:
    """`lookup` needs only the table (the authorizer's one grant); `create`, `list` and
    `revoke` also need API Gateway and each plan's usage plan id (`aib keys --aws`)."""

    def __init__(
        self,
        table: str,
        *,
        dynamodb: Any,
        apigateway: Any = None,
        plans: Mapping[str, Plan] | None = None,
        usage_plans: Mapping[str, str] | None = None,
    ) -> None:
        self.table = table
        self.ddb = dynamodb
        self.apigw = apigateway
        self.plans = plans or {}
        self.usage_plans = usage_plans or {}

    def lookup(self, secret: str) -> ApiKey | None:
        item = self.ddb.get_item(
            TableName=self.table, Key={"id": {"S": hash_key(secret)}}, ConsistentRead=True
        ).get("Item")
        return None if item is None else _key(item)

    def create(self, name: str, plan: str) -> tuple[ApiKey, str]:
        check_plan(plan, self.plans)
        if self.plans[plan].local_only:
            raise ConfigError(f"plan {plan!r} is for `aib dev` only; choose a plan AWS has")
        usage_plan = self.usage_plans.get(plan)
        if usage_plan is None or self.apigw is None:
            raise ConfigError(
                f"no API Gateway usage plan for plan {plan!r}; deploy AibApi (it makes one "
                "per plan in plans.toml) and pass its outputs"
            )
        key, secret = new_key(name, plan)
        gw = self.apigw.create_api_key(
            name=f"aib-{key.key_id}", description=name, value=secret, enabled=True
        )
        self.apigw.create_usage_plan_key(usagePlanId=usage_plan, keyId=gw["id"], keyType="API_KEY")
        key = replace(key, gateway_key_id=gw["id"])
        self.ddb.put_item(
            TableName=self.table,
            Item={
                "id": {"S": hash_key(secret)},
                "key_id": {"S": key.key_id},
                "name": {"S": name},
                "plan": {"S": plan},
                "created_at": {"S": key.created_at.isoformat()},
                "gateway_key_id": {"S": gw["id"]},
            },
            ConditionExpression="attribute_not_exists(id)",
        )
        return key, secret

    def _items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self.ddb.get_paginator("scan").paginate(TableName=self.table):
            items.extend(page.get("Items", []))
        return items

    def list(self) -> list[ApiKey]:
        return sorted((_key(i) for i in self._items()), key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> ApiKey:
        # Keys are few and revocations rare: a scan beats a second index paid on every write.
        item = next((i for i in self._items() if i.get("key_id", {}).get("S") == key_id), None)
        if item is None:
            raise KeyNotFoundError(f"no API key {key_id!r}; `aib keys list --aws` shows them")
        key = _key(item)
        if key.revoked:
            return key
        now = datetime.now(UTC)
        self.ddb.update_item(
            TableName=self.table,
            Key={"id": item["id"]},
            UpdateExpression="SET revoked_at = :t",
            ExpressionAttributeValues={":t": {"S": now.isoformat()}},
        )
        if key.gateway_key_id and self.apigw is not None:
            # Belt and braces: even a cached Allow stops at API Gateway's own key check.
            self.apigw.update_api_key(
                apiKey=key.gateway_key_id,
                patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}],
            )
        return replace(key, revoked_at=now)


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception as e:  # botocore's ClientError: the stack is not deployed here
        raise ConfigError(
            f"cannot read stack {stack!r} ({e}); deploy it first (`cdk deploy --all`) or pass "
            "--data-stack / --api-stack with this deployment's stack names"
        ) from e
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


def key_store_from_stacks(
    plans: Mapping[str, Plan],
    *,
    data_stack: str,
    api_stack: str,
    cloudformation: Any,
    dynamodb: Any,
    apigateway: Any,
) -> DynamoKeyStore:
    """The deployed keys table and usage plans, found through the stacks' outputs."""
    data = stack_outputs(cloudformation, data_stack)
    api = stack_outputs(cloudformation, api_stack)
    table = data.get("TableApiKeysName")
    if table is None:
        raise ConfigError(
            f"stack {data_stack} has no TableApiKeysName output: deploy a version whose "
            "authorizer declares the api-keys table"
        )
    usage_plans = {
        name: api[f"UsagePlan{pascal(name)}Id"]
        for name in plans
        if f"UsagePlan{pascal(name)}Id" in api
    }
    return DynamoKeyStore(
        table, dynamodb=dynamodb, apigateway=apigateway, plans=plans, usage_plans=usage_plans
    )

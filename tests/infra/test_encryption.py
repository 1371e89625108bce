"""Encryption at rest under the app's own KMS keys, TLS in transit, and key grants that follow
the declarations.

Checked on two apps: the project's (the session synth) and a small catalog that names every
kind of store (a data bucket read, written and subscribed to, a data table, a queue sent to and
consumed, the model store), so that every grant path has a function behind it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack

from aibackend.catalog import FunctionSpec
from infra.constructs.keys import ALIAS_PREFIX
from infra.triggers import MODEL_BUCKET, REGISTRY_TABLE

pytestmark = pytest.mark.slow

STACKS = ("AibModels", "AibData", "AibShared")

STORES = {
    "reader": '[resources.buckets]\nraw = "read"\n',
    "writer": '[resources.buckets]\nraw = "write"\n[resources.queues]\njobs = "write"\n',
    "on_raw": (
        '[[objects]]\nbucket = "raw"\nprefix = "in/"\n[resources.tables]\nledger = "readwrite"\n'
    ),
    "worker": '[[queues]]\nqueue = "jobs"\n',
    "scorer": 'models = ["fraud"]\n',
}

#: How the group stacks refer to each shared stack's key: by their named exports.
MODEL_KEY = {"Fn::ImportValue": "AibModels-ModelKeyArn"}
DATA_KEY = {"Fn::ImportValue": "AibData-DataKeyArn"}
QUEUE_KEY = {"Fn::ImportValue": "AibShared-QueueKeyArn"}


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
    new_function: Callable[..., Path],
    synthesizer: Callable[..., Any],
) -> Any:
    functions_dir = tmp_path_factory.mktemp("stores") / "functions"
    functions_dir.mkdir()
    for name, toml in STORES.items():
        new_function(functions_dir, name, toml)
    return synthesizer(
        tmp_path_factory.mktemp("stores.out"),
        functions_dir=functions_dir,
        context={"aws:cdk:bundling-stacks": [], "model:fraud:version": "1"},
    )


@pytest.fixture(params=["synth", "stores"])
def app(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def keys_of(app: Any, stack: str) -> dict[str, dict[str, Any]]:
    keys: dict[str, dict[str, Any]] = app.resources(stack, "AWS::KMS::Key")
    return keys


def own_key_arns(app: Any, stack: str) -> list[dict[str, Any]]:
    return [{"Fn::GetAtt": [k, "Arn"]} for k in keys_of(app, stack)]


def access_log_buckets(app: Any, stack: str) -> set[str]:
    """Buckets that another bucket of the stack sends its server access logs to."""
    return {
        b["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
        for b in app.resources(stack, "AWS::S3::Bucket").values()
        if "LoggingConfiguration" in b["Properties"]
    }


def denies_plain_http(statement: dict[str, Any]) -> bool:
    return statement["Effect"] == "Deny" and statement.get("Condition") == {
        "Bool": {"aws:SecureTransport": "false"}
    }


# --- the keys -----------------------------------------------------------------------------------


def test_each_stateful_stack_has_one_rotated_retained_aliased_key(app: Any) -> None:
    for stack in STACKS:
        # GIVEN the stack's keys
        ((key_id, key),) = keys_of(app, stack).items()
        # THEN the key rotates, survives stack deletion and says what it is for
        assert key["Properties"]["EnableKeyRotation"] is True
        assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")
        assert key["Properties"]["Description"].startswith("aibackend: ")
        # AND an operator finds it by an alias of this app
        (alias,) = app.resources(stack, "AWS::KMS::Alias").values()
        assert alias["Properties"]["TargetKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        assert alias["Properties"]["AliasName"].startswith(ALIAS_PREFIX)


def test_key_policies_trust_the_account_and_name_services_only_with_conditions(app: Any) -> None:
    for stack in STACKS:
        for key in keys_of(app, stack).values():
            for s in key["Properties"]["KeyPolicy"]["Statement"]:
                principal = s["Principal"]
                if "AWS" in principal:
                    # CDK's default statement: the account's IAM policies decide who uses it
                    parts = principal["AWS"]["Fn::Join"][1]
                    assert parts[-2:] == [{"Ref": "AWS::AccountId"}, ":root"], s
                else:
                    # EventBridge (dead-letter queues, the archive) for this account's rules or
                    # this bus, CloudWatch for this account's alarms and Budgets for its
                    # budgets (the alarm topic); only reading the key's metadata goes without a
                    # condition
                    assert principal in (
                        {"Service": "events.amazonaws.com"},
                        {"Service": "cloudwatch.amazonaws.com"},
                        {"Service": "budgets.amazonaws.com"},
                    ), s
                    assert "Condition" in s or s["Action"] == "kms:DescribeKey", s


def test_eventbridge_may_fill_encrypted_dead_letter_queues_of_this_accounts_rules(
    app: Any,
) -> None:
    # GIVEN AibShared's key (every app here has a function with an asynchronous trigger)
    (key,) = keys_of(app, "AibShared").values()
    (events,) = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "events.amazonaws.com"}
    ]
    # THEN EventBridge may encrypt (what SQS asks of a sender) for rules of this account only
    assert sorted(events["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert events["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source = events["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1]
    assert source[-2:] == [{"Ref": "AWS::AccountId"}, ":rule/*"]


def test_the_archive_of_the_platform_bus_is_encrypted_under_aib_datas_key(app: Any) -> None:
    (archive,) = app.resources("AibData", "AWS::Events::Archive").values()
    assert [archive["Properties"]["KmsKeyIdentifier"]] == own_key_arns(app, "AibData")


# --- stores at rest -----------------------------------------------------------------------------


def test_every_bucket_but_access_logs_is_sse_kms_under_its_stacks_key_with_a_bucket_key(
    app: Any,
) -> None:
    for stack in STACKS:
        logs = access_log_buckets(app, stack)
        for bucket_id, bucket in app.resources(stack, "AWS::S3::Bucket").items():
            (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            if bucket_id in logs:
                # S3 delivers server access logs only to SSE-S3 buckets
                assert rule == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                continue
            assert rule["BucketKeyEnabled"] is True, bucket_id
            by_default = rule["ServerSideEncryptionByDefault"]
            assert by_default["SSEAlgorithm"] == "aws:kms"
            assert by_default["KMSMasterKeyID"] in own_key_arns(app, stack), bucket_id


def test_the_stores_exist_in_the_richer_catalog(stores: Any) -> None:
    # (so that the checks above and below are not vacuous for data buckets, tables and queues)
    assert len(stores.resources("AibData", "AWS::S3::Bucket")) == 2  # raw + its access logs
    assert len(stores.resources("AibData", "AWS::DynamoDB::Table")) == 1
    # jobs and its DLQ in AibShared; the failure queue of on_raw (asynchronously invoked by
    # its rule) in on_raw's group stack
    assert len(stores.resources("AibShared", "AWS::SQS::Queue")) == 2
    assert len(stores.service_resources("AWS::SQS::Queue")) == 1


def test_every_table_is_encrypted_under_its_stacks_key(app: Any) -> None:
    for stack in ("AibModels", "AibData"):
        for table_id, table in app.resources(stack, "AWS::DynamoDB::Table").items():
            sse = table["Properties"]["SSESpecification"]
            assert (sse["SSEEnabled"], sse["SSEType"]) == (True, "KMS"), table_id
            assert sse["KMSMasterKeyId"] in own_key_arns(app, stack), table_id


def test_every_queue_is_encrypted_under_the_services_key(app: Any) -> None:
    # AibShared's queues under its own key; the groups' failure queues under the same, imported
    queues = {
        **{
            q: (v, own_key_arns(app, "AibShared"))
            for q, v in app.resources("AibShared", "AWS::SQS::Queue").items()
        },
        **{q: (v, [QUEUE_KEY]) for q, v in app.service_resources("AWS::SQS::Queue").items()},
    }
    assert queues
    for queue_id, (queue, key) in queues.items():
        assert queue["Properties"]["KmsMasterKeyId"] in key, queue_id
        assert queue["Properties"]["KmsDataKeyReusePeriodSeconds"] == 300
        assert "SqsManagedSseEnabled" not in queue["Properties"]


# --- in transit ---------------------------------------------------------------------------------


def test_every_bucket_and_queue_refuses_plain_http(app: Any) -> None:
    for stack in STACKS:
        buckets = set(app.resources(stack, "AWS::S3::Bucket"))
        ssl_only = {
            p["Properties"]["Bucket"]["Ref"]
            for p in app.resources(stack, "AWS::S3::BucketPolicy").values()
            if any(map(denies_plain_http, p["Properties"]["PolicyDocument"]["Statement"]))
        }
        assert ssl_only == buckets, stack
    for stack in ("AibShared", *app.service_stacks):
        queues = set(app.resources(stack, "AWS::SQS::Queue"))
        ssl_only = {
            q["Ref"]
            for p in app.resources(stack, "AWS::SQS::QueuePolicy").values()
            if any(map(denies_plain_http, p["Properties"]["PolicyDocument"]["Statement"]))
            for q in p["Properties"]["Queues"]
        }
        assert ssl_only == queues, stack


# --- key grants of function roles ---------------------------------------------------------------


def key_statements(app: Any, function: str) -> list[dict[str, Any]]:
    """The KMS statements of a function's role, actions as sets."""
    role_policy = app.built.functions[function].role.node.find_child("DefaultPolicy")
    logical_id = Stack.of(role_policy).get_logical_id(role_policy.node.default_child)
    policy = app.resources(app.stack_of(function), "AWS::IAM::Policy")[logical_id]
    found = []
    for s in policy["Properties"]["PolicyDocument"]["Statement"]:
        actions = {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
        if any(a.startswith("kms:") for a in actions):
            assert all(a.startswith("kms:") for a in actions), s
            found.append({**s, "Action": actions})
    return found


def granted_keys(statements: list[dict[str, Any]]) -> list[Any]:
    keys: list[Any] = []
    for s in statements:
        keys += s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
    return keys


def expected_keys(app: Any, spec: FunctionSpec) -> list[Any]:
    """The keys of the stores a declaration names: nothing more."""
    keys: list[Any] = []
    uses = spec.resources
    if spec.models or MODEL_BUCKET in uses.buckets or REGISTRY_TABLE in uses.tables:
        keys.append(MODEL_KEY)
    data_stores = {*uses.buckets, *(o.bucket for o in spec.objects), *uses.tables}
    if data_stores - {MODEL_BUCKET, REGISTRY_TABLE}:
        keys.append(DATA_KEY)
    if spec.queues or uses.queues or spec.async_delivery:
        keys.append(QUEUE_KEY)
    return keys


def test_every_role_gets_the_keys_of_the_stores_it_declares_and_no_other(app: Any) -> None:
    for name, fn in app.built.functions.items():
        granted = granted_keys(key_statements(app, name))
        expected = expected_keys(app, fn.spec)
        assert set(map(json.dumps, granted)) == set(map(json.dumps, expected)), name


def test_no_role_gets_kms_star_or_a_key_wildcard_resource(app: Any) -> None:
    for name in app.built.functions:
        for s in key_statements(app, name):
            assert "kms:*" not in s["Action"], name
            assert s["Resource"] != "*" and "*" not in json.dumps(s["Resource"]), name
            assert s["Effect"] == "Allow"


def test_a_bucket_reader_may_decrypt_under_the_data_key_only(stores: Any) -> None:
    # GIVEN reader declares raw = "read" and nothing else
    # THEN its role may decrypt under AibData's key, and use no other key
    assert key_statements(stores, "reader") == [
        {"Action": {"kms:Decrypt"}, "Effect": "Allow", "Resource": DATA_KEY}
    ]


def test_a_model_server_may_decrypt_under_the_model_key_only(stores: Any) -> None:
    # GIVEN scorer serves the fraud model (artifacts in S3, versions in the registry)
    # THEN reading both decrypts under AibModels' key; serving never encrypts
    assert key_statements(stores, "scorer") == [
        {"Action": {"kms:Decrypt"}, "Effect": "Allow", "Resource": MODEL_KEY}
    ]


def test_a_writer_may_generate_data_keys_for_its_bucket_and_queue(stores: Any) -> None:
    queue_key = QUEUE_KEY
    statements = key_statements(stores, "writer")
    # GIVEN writer declares raw = "write" and jobs = "write"
    # THEN it may generate and decrypt data keys (SQS and multipart uploads need both) on
    # exactly those two keys, without CDK's wildcard actions
    assert [s["Action"] for s in statements] == [{"kms:Decrypt", "kms:GenerateDataKey"}]
    assert sorted(map(json.dumps, granted_keys(statements))) == sorted(
        map(json.dumps, [queue_key, DATA_KEY])
    )


def test_a_consumer_may_decrypt_its_queue(stores: Any) -> None:
    assert key_statements(stores, "worker") == [
        {"Action": {"kms:Decrypt"}, "Effect": "Allow", "Resource": QUEUE_KEY}
    ]


def test_a_table_user_may_decrypt_under_the_data_key(stores: Any) -> None:
    # GIVEN on_raw reads objects of raw (its [[objects]] trigger) and writes the ledger table
    statements = key_statements(stores, "on_raw")
    # THEN it decrypts under AibData's key (S3 objects, the table's key) ...
    assert {
        "Action": {"kms:Decrypt", "kms:DescribeKey"},
        "Effect": "Allow",
        "Resource": DATA_KEY,
    } in statements
    # ... and, being invoked asynchronously, sends on-failure records under the services key
    assert QUEUE_KEY in granted_keys(statements)

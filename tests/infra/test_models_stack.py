"""AibModels: the artifact bucket and the registry table keep models safe and findable."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

pytestmark = pytest.mark.slow


def model_bucket(synth: Any) -> tuple[str, dict[str, Any]]:
    buckets = synth.resources("AibModels", "AWS::S3::Bucket")
    (item,) = ((k, v) for k, v in buckets.items() if "VersioningConfiguration" in v["Properties"])
    return item


def test_model_bucket_is_encrypted_versioned_private_and_retained(synth: Any) -> None:
    _, bucket = model_bucket(synth)
    props = bucket["Properties"]
    (key_id,) = synth.resources("AibModels", "AWS::KMS::Key")
    assert props["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {
                "BucketKeyEnabled": True,
                "ServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
                },
            }
        ]
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"


def test_model_bucket_logs_access_to_a_separate_bucket(synth: Any) -> None:
    name, bucket = model_bucket(synth)
    target = bucket["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    assert target != name
    log_bucket = synth.resources("AibModels", "AWS::S3::Bucket")[target]
    assert log_bucket["DeletionPolicy"] == "Retain"


def test_every_bucket_refuses_plain_http(synth: Any) -> None:
    buckets = synth.resources("AibModels", "AWS::S3::Bucket")
    policies = synth.resources("AibModels", "AWS::S3::BucketPolicy").values()
    ssl_only = {
        p["Properties"]["Bucket"]["Ref"]
        for p in policies
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s["Action"] == "s3:*"
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    }
    assert ssl_only == set(buckets)


def test_registry_table_matches_the_aws_adapter_layout(synth: Any) -> None:
    synth.models.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "TableName": "aib-model-registry",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": Match.array_with(
                    [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ]
                ),
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_exports_have_stable_names(synth: Any) -> None:
    outputs = synth.template_json("AibModels")["Outputs"]
    exported = {o["Export"]["Name"] for o in outputs.values() if "Export" in o}
    assert exported == {
        "AibModels-ModelBucketArn",
        "AibModels-ModelBucketName",
        "AibModels-ModelKeyArn",
        "AibModels-RegistryTableName",
    }

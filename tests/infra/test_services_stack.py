"""The fraud Lambda in its group stack (AibSvc-fraud) as function.toml declares it, its grants,
and the REST API (AibApi)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from aibackend.catalog import Access, load_function
from aibackend.settings import resource_env
from infra.naming import pascal
from tests.infra.conftest import SERVICE_CATALOG

ROOT = Path(__file__).resolve().parents[2]
FRAUD = load_function(ROOT / "functions" / "fraud_score")
FRAUD_STACK = "AibSvc-fraud"

pytestmark = pytest.mark.slow


def fraud_lambda(synth: Any) -> dict[str, Any]:
    fns = synth.resources(FRAUD_STACK, "AWS::Lambda::Function")
    (fn,) = (f for f in fns.values() if f["Properties"]["Handler"] == FRAUD.lambda_handler)
    props: dict[str, Any] = fn["Properties"]
    return props


def test_fraud_lambda_is_built_from_its_declaration(synth: Any) -> None:
    # GIVEN functions/fraud_score/function.toml
    # WHEN the app is synthesized
    props = fraud_lambda(synth)
    # THEN the function has the declared platform, size and handler
    assert props["Architectures"] == ["arm64"] == [FRAUD.architecture]
    assert props["Runtime"] == "python3.12" == FRAUD.runtime
    assert props["MemorySize"] == FRAUD.memory_mb
    assert props["Timeout"] == FRAUD.timeout_s
    assert props["Handler"] == "fraud_score.handler.handler"
    assert props["TracingConfig"] == {"Mode": "Active"}


def test_fraud_lambda_environment_pins_the_model_version(synth: Any) -> None:
    env = fraud_lambda(synth)["Environment"]["Variables"]
    assert env["AIB_MODEL_FRAUD_VERSION"] == "3"
    assert env["AIB_ADAPTERS"] == "aws"
    assert env["AIB_MODEL_BUCKET"] == {"Fn::ImportValue": "AibModels-ModelBucketName"}
    assert env["AIB_REGISTRY_TABLE"] == {"Fn::ImportValue": "AibModels-RegistryTableName"}
    assert env["POWERTOOLS_SERVICE_NAME"] == "fraud_score"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "aibackend"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    for key, value in FRAUD.environment.items():
        assert env[key] == value


def test_fraud_lambda_gets_common_api_and_ml_layers(synth: Any) -> None:
    layers = fraud_lambda(synth)["Layers"]
    assert len(layers) == 3
    by_id = synth.resources(FRAUD_STACK, "AWS::Lambda::LayerVersion")
    assert {ref["Ref"] for ref in layers} == set(by_id)
    for layer in by_id.values():
        assert "arm64" in layer["Properties"]["CompatibleArchitectures"]
        assert "python3.12" in layer["Properties"]["CompatibleRuntimes"]
    common = [v for v in by_id.values() if "shared library" in v["Properties"]["Description"]]
    assert common[0]["Properties"]["CompatibleRuntimes"] == ["python3.12", "python3.13"]


def test_fraud_lambda_logs_to_its_own_retained_log_group(synth: Any) -> None:
    log_ref = fraud_lambda(synth)["LoggingConfig"]["LogGroup"]["Ref"]
    group = synth.resources(FRAUD_STACK, "AWS::Logs::LogGroup")[log_ref]
    assert group["Properties"]["RetentionInDays"] == 30


def test_live_alias_points_at_the_current_version(synth: Any) -> None:
    Template.from_json(synth.template_json(FRAUD_STACK)).has_resource_properties(
        "AWS::Lambda::Alias",
        {"Name": "live", "FunctionVersion": {"Fn::GetAtt": [Match.any_value(), "Version"]}},
    )


def test_code_asset_holds_only_the_functions_own_folder(synth: Any) -> None:
    # GIVEN the staged code asset of the fraud function (bundling skipped: a plain copy)
    key = fraud_lambda(synth)["Code"]["S3Key"]
    staged = synth.outdir / f"asset.{key.removesuffix('.zip')}"
    # THEN it has the function's package and nothing else
    assert [p.name for p in staged.iterdir()] == ["fraud_score"]
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert {"fraud_score/handler.py", "fraud_score/function.toml"} <= files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def statements(synth: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for policy in synth.service_resources("AWS::IAM::Policy").values():
        out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def function_statements(synth: Any) -> dict[str, list[dict[str, Any]]]:
    """Lambda handler (`<package>.handler.handler`) -> the statements of its role's policies."""
    policies = synth.service_resources("AWS::IAM::Policy").values()
    by_role: dict[str, list[dict[str, Any]]] = {}
    for policy in policies:
        for role in policy["Properties"]["Roles"]:
            by_role.setdefault(role["Ref"], []).extend(
                policy["Properties"]["PolicyDocument"]["Statement"]
            )
    return {
        fn["Properties"]["Handler"]: by_role.get(fn["Properties"]["Role"]["Fn::GetAtt"][0], [])
        for fn in synth.service_resources("AWS::Lambda::Function").values()
        if fn["Properties"]["Handler"].count(".") >= 2  # ours, not CDK's helper functions
    }


def test_function_role_reads_the_model_prefix_of_the_model_bucket(synth: Any) -> None:
    # GIVEN each function and the models its declaration serves
    catalog = SERVICE_CATALOG
    found = function_statements(synth)
    for spec in catalog.functions:
        reads = [
            s
            for s in found[spec.lambda_handler]
            if s["Action"] == "s3:GetObject" and "AibModels-ModelBucketArn" in json.dumps(s)
        ]
        # THEN its role reads exactly those models' prefixes of the model bucket (CDK merges
        # the grants of a function serving several models into one statement)
        resources = [
            r
            for st in reads
            for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])
        ]
        assert all((st["Action"], st["Effect"]) == ("s3:GetObject", "Allow") for st in reads)
        assert sorted(resources, key=json.dumps) == sorted(
            (
                {
                    "Fn::Join": [
                        "",
                        [{"Fn::ImportValue": "AibModels-ModelBucketArn"}, f"/{model}/*"],
                    ]
                }
                for model in spec.models
            ),
            key=json.dumps,
        ), spec.name


def test_function_role_reads_only_its_models_registry_items(synth: Any) -> None:
    # (data tables a function declares have their own statements, on their own ARNs)
    catalog = SERVICE_CATALOG
    found = function_statements(synth)
    for spec in catalog.functions:
        registry = [
            s
            for s in found[spec.lambda_handler]
            if "dynamodb:GetItem" in s["Action"]
            and "AibModels-RegistryTableName" in json.dumps(s["Resource"])
        ]
        # THEN only a function serving models reads the registry, and only their items
        # (a function that declares the registry table itself, like models_api, is below)
        if "registry" in spec.resources.tables:
            continue
        assert len(registry) == (1 if spec.models else 0), spec.name
        for ddb in registry:
            assert sorted(ddb["Action"]) == ["dynamodb:GetItem", "dynamodb:Query"]
            assert ddb["Condition"] == {
                "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": list(spec.models)}
            }


def test_the_registry_api_reads_the_registry_table_and_writes_nothing(synth: Any) -> None:
    # GIVEN models_api, which declares `tables = { registry = "read" }` and serves no model
    found = function_statements(synth)["models_api.handler.handler"]
    on_registry = [s for s in found if "AibModels-RegistryTableName" in json.dumps(s["Resource"])]
    # THEN its registry statements read (scan included: it lists models) and never write
    actions = {
        a
        for s in on_registry
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"} <= actions
    assert not {
        a for a in actions if a.split(":")[1].startswith(("Put", "Update", "Delete", "BatchWrite"))
    }


def test_declared_data_tables_exist_and_reach_their_functions_by_name(synth: Any) -> None:
    # GIVEN the tables the project's declarations name (the registry lives in AibModels)
    catalog = SERVICE_CATALOG
    declared = {t for f in catalog.functions for t in f.resources.tables} - {"registry"}
    # THEN AibData holds one table each
    assert len(synth.resources("AibData", "AWS::DynamoDB::Table")) == len(declared)
    # AND each function that names one finds it by its exported name
    fns = synth.service_resources("AWS::Lambda::Function").values()
    env = {f["Properties"]["Handler"]: f["Properties"]["Environment"]["Variables"] for f in fns}
    for spec in catalog.functions:
        for name in set(spec.resources.tables) - {"registry"}:
            assert env[spec.lambda_handler][resource_env("table", name)] == {
                "Fn::ImportValue": f"AibData-Table{pascal(name)}Name"
            }


def test_no_function_uses_a_managed_policy(synth: Any) -> None:
    for name, role in synth.service_resources("AWS::IAM::Role").items():
        if "CloudWatchRole" in name:  # API Gateway's account role, acknowledged
            continue
        assert "ManagedPolicyArns" not in role["Properties"], name


def test_fraud_routes_require_an_api_key(synth: Any) -> None:
    methods = synth.methods()
    for key in (("POST", "/v1/fraud/score"), ("GET", "/v1/fraud/model")):
        assert methods[key]["ApiKeyRequired"] is True, key
        assert methods[key]["Integration"]["Type"] == "AWS_PROXY"
        assert "RequestValidatorId" in methods[key]


def test_every_declared_route_has_one_method_on_its_functions_alias(synth: Any) -> None:
    methods = synth.methods()
    catalog = SERVICE_CATALOG
    declared = {(r.method, r.path): (f, r) for f, r in catalog.routes()}
    assert set(methods) == set(declared)
    for key, (spec, route) in declared.items():
        assert methods[key]["ApiKeyRequired"] is (route.access is not Access.PUBLIC)
        # the function's live alias, by the ARN of its fixed name (it lives in its group stack)
        uri = json.dumps(methods[key]["Integration"]["Uri"])
        assert f":function:aib-{spec.name}:live/invocations" in uri, key


def test_stage_logs_traces_and_throttles(synth: Any) -> None:
    synth.api.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "prod",
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp(r'^\{"requestId": "\$context.requestId"'),
            },
            # Stage throttling caps all keys together, whatever their usage plans allow
            # (plans: test_api_access).
            "MethodSettings": [
                Match.object_like(
                    {
                        "LoggingLevel": "INFO",
                        "MetricsEnabled": True,
                        "DataTraceEnabled": False,
                        "ThrottlingRateLimit": 50,
                        "ThrottlingBurstLimit": 100,
                    }
                )
            ],
        },
    )
    synth.api.resource_count_is("AWS::ApiGateway::Account", 1)


def test_waf_protects_the_stage(synth: Any) -> None:
    synth.api.has_resource_properties(
        "AWS::WAFv2::WebACL",
        {
            "Scope": "REGIONAL",
            "Rules": Match.array_with(
                [
                    Match.object_like(
                        {
                            "Statement": {
                                "ManagedRuleGroupStatement": {
                                    "Name": "AWSManagedRulesCommonRuleSet",
                                    "VendorName": "AWS",
                                }
                            }
                        }
                    ),
                    Match.object_like(
                        {"Statement": {"RateBasedStatement": Match.object_like({"Limit": 2000})}}
                    ),
                ]
            ),
        },
    )
    synth.api.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)


def test_gateway_errors_are_problem_json(synth: Any) -> None:
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        synth.api.has_resource_properties(
            "AWS::ApiGateway::GatewayResponse",
            {
                "ResponseType": kind,
                "ResponseParameters": {
                    "gatewayresponse.header.Content-Type": "'application/problem+json'"
                },
                "ResponseTemplates": {
                    "application/json": Match.string_like_regexp(
                        r'"title": \$context\.error\.messageString'
                    )
                },
            },
        )

"""`GET /v1/models...`: the registry, read through the local gateway and the Lambda handler."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aibackend.adapters import model_registry
from aibackend.local.runtime import LocalRuntime
from aibackend.ports import GateCheck, GateVerdict
from aibackend.settings import PlatformSettings
from tests.conftest import ROOT, build_tiny_model
from tests.support import running_runtime, runtime_client

READ = ("models:read",)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    """GIVEN fraud v1 approved and promoted, v2 rejected by the gate, served by models_api."""
    root = tmp_path_factory.mktemp("models-api")
    functions = root / "functions"
    shutil.copytree(ROOT / "functions" / "models_api", functions / "models_api")
    state = root / "state"
    registry = model_registry(PlatformSettings(state_dir=state))
    for v, weights in ((1, (1.0, -2.0)), (2, (-1.0, 2.0))):
        registry.register(build_tiny_model(root / f"v{v}", name="fraud", weights=weights))
        check = GateCheck(name="threshold:roc_auc", passed=v == 1, value=0.9, threshold=0.85)
        verdict = GateVerdict(approved=v == 1, checks=(check,), evaluated_at=datetime.now(UTC))
        registry.record_gate("fraud", v, verdict)
    registry.promote("fraud", 1, actor="ana", reason="first release")
    with running_runtime(functions, state, sources=False) as rt:
        yield rt


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> TestClient:
    return runtime_client(runtime, scopes=READ)


def test_the_registry_routes_need_a_token_with_models_read(runtime: LocalRuntime) -> None:
    # WHEN the list is asked for with a key but no token, or a token without the scope
    for client in (runtime_client(runtime), runtime_client(runtime, scopes=("predict:fraud",))):
        r = client.get("/v1/models")
        # THEN it is refused with a problem document
        assert r.status_code in (401, 403)
        assert r.headers["content-type"].startswith("application/problem+json")
    # AND health needs nothing
    assert runtime_client(runtime, keyed=False).get("/v1/models/health").status_code == 200


def test_models_lists_each_model_with_its_production_version(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    assert r.json() == {
        "models": [{"name": "fraud", "production_version": 1, "latest_version": 2, "versions": 2}]
    }


def test_versions_show_stage_approval_and_the_gate_verdict(client: TestClient) -> None:
    body = client.get("/v1/models/fraud/versions").json()
    assert body["production_version"] == 1
    v1, v2 = body["versions"]
    assert (v1["stage"], v1["approval"]["status"], v1["gate"]["approved"]) == (
        "production",
        "approved",
        True,
    )
    assert (v2["stage"], v2["approval"]["status"]) == ("candidate", "rejected")
    assert v2["gate"]["failed_checks"] == ["threshold:roc_auc"]
    assert v2["parent_version"] is None  # registered before v1 was promoted


def test_a_version_carries_lineage_evidence_and_its_audit_trail(client: TestClient) -> None:
    body = client.get("/v1/models/fraud/versions/1").json()
    assert body["lineage"]["code_version"] == "test"
    assert body["lineage"]["artifact"].endswith("/fraud/1/")
    assert body["evidence"]["checks"][0]["name"] == "threshold:roc_auc"
    assert body["card"]["inputs"][0]["name"] == "features"
    assert [(e["action"], e["actor"]) for e in body["history"]] == [
        ("registered", "aib"),
        ("gate", "gate"),
        ("promoted", "ana"),
    ]


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/v1/models/churn/versions", "no model 'churn' is registered"),
        ("/v1/models/churn/versions/1", "no model 'churn' is registered"),
        ("/v1/models/fraud/versions/9", "model 'fraud' has no version 9 (known: [1, 2])"),
    ],
)
def test_an_unknown_model_or_version_is_a_404_problem(
    client: TestClient, path: str, detail: str
) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert detail in r.json()["detail"]


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("models_list", "/v1/models"),
        ("models_versions", "/v1/models/fraud/versions"),
        ("models_version", "/v1/models/fraud/versions/1"),
    ],
)
def test_lambda_handler_given_the_aws_event_returns_the_local_routes_body(
    runtime: LocalRuntime,
    client: TestClient,
    event: Callable[[str], dict[str, Any]],
    name: str,
    path: str,
) -> None:
    # GIVEN API Gateway's REST proxy event for a registry route
    aws_event = event(f"apigw/{name}")
    assert aws_event["path"] == path
    # WHEN the Lambda handler gets it, and the local route the same request
    lam = runtime.hosts["models_api"].invoke(aws_event)
    local = client.get(path)
    # THEN both answer 200 with the same body
    assert lam["statusCode"] == 200 == local.status_code
    assert json.loads(lam["body"]) == local.json()

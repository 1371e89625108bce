"""The fraud service through the local runtime, and the same handler given AWS's event."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

from aibackend.fraud.features import matrix
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.local.runtime import LocalRuntime
from aibackend.masking import MaskingFormatter
from tests.support import FUNCTIONS, running_runtime, runtime_client

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "events" / "payloads"


@pytest.fixture(scope="module")
def runtime(fraud_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    # A copy per module: the promotion test moves the production pointer.
    state = tmp_path_factory.mktemp("svc") / "state"
    with running_runtime(FUNCTIONS, state, seed_state=fraud_state) as rt:
        yield rt


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> TestClient:
    return runtime_client(runtime, scopes=("predict:fraud",))


def _payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def test_scores_one_transaction(client: TestClient, runtime: LocalRuntime) -> None:
    # WHEN the sample transaction is posted
    r = client.post("/v1/fraud/score", json=_payload("transaction.json"))
    # THEN one result comes back with id, score, decision, model version and request id
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {
        "name": "fraud",
        "version": runtime.hosts["fraud_score"].models["fraud"],
    }
    assert body["request_id"] == r.headers["x-amzn-requestid"]
    assert body["threshold"] == 0.5
    [res] = body["results"]
    assert res["transaction_id"] == "txn-0001"
    assert len(res["inference_id"]) == 32
    assert 0.0 <= res["score"] <= 1.0
    assert res["decision"] == ("decline" if res["score"] >= 0.5 else "approve")


def test_the_sample_fraud_pattern_scores_above_the_everyday_purchase(client: TestClient) -> None:
    # GIVEN jewelry bought abroad at 3 am for six times the card's average vs groceries at home
    r = client.post("/v1/fraud/score", json=_payload("transactions_batch.json"))
    scores = {x["transaction_id"]: x["score"] for x in r.json()["results"]}
    # THEN the model ranks the first far above the second
    assert scores["txn-0001"] > 0.5 > scores["txn-0002"]


def test_served_scores_equal_an_offline_onnxruntime_session_exactly(
    client: TestClient, runtime: LocalRuntime
) -> None:
    # GIVEN 300 fresh transactions from the generator
    cols = generate_transactions(300, seed=99)
    records = to_records(cols)
    # WHEN they are scored through the API as one batch
    r = client.post("/v1/fraud/score", json={"transactions": records})
    assert r.status_code == 200, r.text
    served = np.array([x["score"] for x in r.json()["results"]])
    # THEN the scores are bit-for-bit those of a plain onnxruntime session on the same features
    version = runtime.hosts["fraud_score"].models["fraud"]
    model_path = (
        runtime.settings.state_dir / "buckets" / "models" / "fraud" / str(version) / "model.onnx"
    )
    # Same thread count as the service: a multi-threaded tree ensemble sums in another order.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    x = matrix(cols)  # the generator's own columns: no JSON, no pydantic on this side
    offline = sess.run(None, {sess.get_inputs()[0].name: x})[-1][:, 1].astype(np.float64)
    np.testing.assert_array_equal(served, offline)


def test_invalid_fields_are_each_named_in_a_problem_response(client: TestClient) -> None:
    # GIVEN a batch whose second transaction has a negative amount, an unknown currency
    # and no card id
    good = _payload("transaction.json")
    bad = {k: v for k, v in good.items() if k != "card_id"} | {"amount": -5, "currency": "XXX"}
    r = client.post("/v1/fraud/score", json={"transactions": [good, bad]})
    # THEN the answer is a 422 problem naming each bad field by its path
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {
        "transactions[1].amount",
        "transactions[1].currency",
        "transactions[1].card_id",
    }
    assert "transactions[1].amount" in problem["detail"]
    assert any("supported:" in e["message"] for e in problem["errors"])


def test_batches_over_1000_and_malformed_json_are_refused(client: TestClient) -> None:
    too_many = {"transactions": [_payload("transaction.json")] * 1001}
    r = client.post("/v1/fraud/score", json=too_many)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "transactions"
    r = client.post(
        "/v1/fraud/score", content=b'{"amount": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["message"].startswith("the body is not valid JSON")
    # A bare array of transactions (not the batch object) says what the body must be
    r = client.post("/v1/fraud/score", json=[_payload("transaction.json")])
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "body", "message": "the body must be a JSON object, not an array"}
    ]


def test_model_card_and_openapi(client: TestClient) -> None:
    card = client.get("/v1/fraud/model").json()
    assert card["name"] == "fraud"
    assert card["metrics"]["roc_auc"] >= 0.95
    assert card["metrics"]["roc_auc"] > card["baselines"]["logistic_regression"]["roc_auc"]
    doc = client.get("/openapi.json").json()
    assert "/v1/fraud/score" in doc["paths"]
    assert "Transaction" in doc["components"]["schemas"]


def test_health_reports_functions_and_loaded_model_versions(
    client: TestClient, runtime: LocalRuntime
) -> None:
    h = client.get("/health").json()
    fn = next(f for f in h["functions"] if f["name"] == "fraud_score")
    assert fn["routes"] == [
        "GET /v1/fraud/health",
        "POST /v1/fraud/score",
        "GET /v1/fraud/model",
        "GET /v1/fraud/openapi.json",
        "POST /v2/fraud/score",
        "GET /v2/fraud/openapi.json",
    ]
    assert fn["models"] == {"fraud": runtime.registry.production("fraud").version}  # type: ignore[union-attr]


def test_the_public_health_route_needs_no_key_and_names_the_model(
    runtime: LocalRuntime,
) -> None:
    # WHEN the health check is called without credentials  THEN it answers with the version
    r = runtime_client(runtime, keyed=False).get("/v1/fraud/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "model": "fraud",
        "version": runtime.registry.production("fraud").version,  # type: ignore[union-attr]
    }
    # AND every other route refuses a request without a key
    assert runtime_client(runtime, keyed=False).get("/v1/fraud/model").status_code == 401


def test_lambda_handler_given_the_aws_event_returns_the_local_routes_body(
    client: TestClient, runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN API Gateway's REST proxy event for the fraud route, carrying the sample payload
    aws_event = event("apigw/fraud_score")
    assert json.loads(aws_event["body"]) == _payload("transaction.json")
    # WHEN the Lambda handler gets that event, and the local route gets the same payload
    lam = runtime.hosts["fraud_score"].invoke(aws_event)
    local = client.post("/v1/fraud/score", json=_payload("transaction.json"))
    # THEN both answer 200 with the same body, but for the per-request ids
    assert lam["statusCode"] == 200 == local.status_code
    lam_body, local_body = json.loads(lam["body"]), local.json()
    assert lam_body["request_id"] == aws_event["requestContext"]["requestId"]

    def strip(b: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in b.items() if k != "request_id"},
            "results": [{k: v for k, v in x.items() if k != "inference_id"} for x in b["results"]],
        }

    assert strip(lam_body) == strip(local_body)


def test_promoting_a_new_version_reloads_the_function(
    client: TestClient, runtime: LocalRuntime, tmp_path: Path
) -> None:
    # GIVEN a second registered version of the fraud model
    current = runtime.registry.production("fraud")
    assert current is not None
    copy = runtime.registry.download("fraud", current.version, tmp_path / "copy")
    new = runtime.registry.register(copy)
    # WHEN it is promoted and the runtime notices the pointer moved
    runtime.registry.set_production("fraud", new.version)
    assert sorted(runtime.poll_once()) == sorted(
        f.name for f in runtime.catalog.functions if "fraud" in f.models
    )
    # THEN the service answers with the new version, and a second check changes nothing
    assert client.get("/v1/fraud/model").json()["version"] == new.version
    r = client.post("/v1/fraud/score", json=_payload("transaction.json"))
    assert r.json()["model"]["version"] == new.version
    assert runtime.poll_once() == []


def test_logs_carry_correlation_id_and_model_version_and_metrics_are_emf(
    runtime: LocalRuntime,
    event: Callable[[str], dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the sample event, whose transaction the model declines
    aws_event = event("apigw/fraud_score")
    capsys.readouterr()
    # Powertools bound its handler to the stdout of import time: listen with its own formatter.
    service_logger = logging.getLogger("fraud_score")
    buf = io.StringIO()
    listener = logging.StreamHandler(buf)
    listener.setFormatter(service_logger.handlers[0].formatter)
    service_logger.addHandler(listener)
    # WHEN the handler runs
    try:
        assert runtime.hosts["fraud_score"].invoke(aws_event)["statusCode"] == 200
    finally:
        service_logger.removeHandler(listener)
    # THEN its JSON log lines carry API Gateway's request id as correlation id and the model
    logs = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert logs
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    version = runtime.hosts["fraud_score"].models["fraud"]
    for line in logs:
        assert line["correlation_id"] == aws_event["requestContext"]["requestId"]
        assert (line["model_name"], line["model_version"]) == ("fraud", version)
        assert line["service"] == "fraud_score"
    # AND the metrics leave as one CloudWatch EMF document
    [emf] = [x for x in lines if "_aws" in x]
    assert emf["Predictions"] == [1.0]
    assert emf["Declines"] == [1.0]
    # AND the transaction's score, a value of the Score distribution (its histogram)
    body = json.loads(runtime.hosts["fraud_score"].invoke(aws_event)["body"])
    (score,) = emf["Score"]
    assert score == pytest.approx(body["results"][0]["score"])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "aibackend"
    # AND its formatter erases personal data and credentials (tests/unit/test_masking.py)
    assert isinstance(service_logger.handlers[0].formatter, MaskingFormatter)

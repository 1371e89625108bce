"""A model trained from a messy CSV, served by the generic handler through `aib dev`'s gateway,
under `aib invoke`, and given API Gateway's own event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

from aibackend.local.runtime import LocalRuntime
from tests.conftest import load_event
from tests.integration.byom.conftest import Workspace, aib
from tests.support import running_runtime, runtime_client

pytestmark = pytest.mark.slow
PREDICT = "/v1/models/churn/predict"
RECORD = {
    "Age": 34,
    "Monthly Charges ($)": 129.9,
    "Plan": "basic",
    "City": "City 002",
    "Is Member": False,
    "Support Calls": 4,
}


@pytest.fixture(scope="module")
def workspace(byom_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return byom_workspace.copy(tmp_path_factory.mktemp("svc") / "ws")


@pytest.fixture(scope="module")
def runtime(workspace: Workspace) -> Iterator[LocalRuntime]:
    with running_runtime(workspace.functions, workspace.state, sources=False) as rt:
        yield rt


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> TestClient:
    return runtime_client(runtime, scopes=("predict:churn",))


def test_a_record_is_scored_with_a_token_scoped_to_the_model(
    client: TestClient, runtime: LocalRuntime
) -> None:
    # WHEN a record is posted with the development key and a predict:churn token
    r = client.post(PREDICT, json=RECORD)
    # THEN it is scored by the production version, inside the shared envelope
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "churn", "version": runtime.hosts["churn"].models["churn"]}
    assert body["request_id"] == r.headers["x-amzn-requestid"]
    [result] = body["results"]
    assert set(result["probabilities"]) == {"No", "Yes"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0)
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)


def test_a_token_for_another_model_is_refused(runtime: LocalRuntime) -> None:
    # GIVEN a token scoped to the imported model `tiny` only
    other = runtime_client(runtime, scopes=("predict:tiny",))
    # WHEN it is used on churn's route, then on tiny's own
    refused = other.post(PREDICT, json=RECORD)
    allowed = other.post("/v1/models/tiny/predict", json={"x0": 1.0, "x1": 0.5})
    # THEN churn refuses it for lacking predict:churn, and tiny serves it
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "needs scope(s) predict:churn" in refused.json()["detail"]
    assert allowed.status_code == 200, allowed.text
    assert runtime_client(runtime).post(PREDICT, json=RECORD).status_code == 401


def test_served_probabilities_are_the_graphs_on_hand_built_tensors(
    client: TestClient, workspace: Workspace, runtime: LocalRuntime
) -> None:
    # GIVEN 200 records, some with missing or unseen values
    rng = np.random.default_rng(4)
    records = [
        {
            "Age": None if i % 7 == 0 else int(rng.integers(18, 80)),
            "Monthly Charges ($)": float(rng.gamma(4.0, 20.0)),
            "Plan": str(rng.choice(["basic", "pro", "Family plan", "unheard-of"])),
            "City": None if i % 5 == 0 else f"City {int(rng.integers(0, 400)):03d}",
            "Is Member": bool(rng.random() < 0.5),
            "Support Calls": int(rng.poisson(1.5)),
        }
        for i in range(200)
    ]
    r = client.post(PREDICT, json={"records": records})
    assert r.status_code == 200, r.text
    served = np.array([x["probabilities"]["Yes"] for x in r.json()["results"]])
    # THEN they equal a plain onnxruntime session fed tensors built here, bit for bit
    version = runtime.hosts["churn"].models["churn"]
    path = workspace.state / "buckets" / "models" / "churn" / str(version) / "model.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def floats(key: str) -> np.ndarray:
        return np.array(
            [[np.nan if x[key] is None else float(x[key])] for x in records], np.float32
        )

    feed = {
        "Age": floats("Age"),
        "Monthly_Charges": floats("Monthly Charges ($)"),
        "Plan": np.array([[x["Plan"]] for x in records], dtype=object),
        "City": np.array([[x["City"] or ""] for x in records], dtype=object),
        "Is_Member": floats("Is Member"),
        "Support_Calls": floats("Support Calls"),
    }
    offline = session.run(["probabilities"], feed)[0][:, 1].astype(np.float64)
    np.testing.assert_array_equal(served, offline)


def test_the_card_reports_the_messy_columns_and_beats_its_baseline(client: TestClient) -> None:
    card = client.get("/v1/models/churn/card").json()
    assert card["metrics"]["roc_auc"] > card["baselines"]["majority_class"]["roc_auc"] + 0.1
    assert [f["name"] for f in card["features"]] == [
        "Age",
        "Monthly Charges ($)",
        "Plan",
        "City",
        "Is Member",
        "Support Calls",
    ]
    assert "Customer ID: identifier-like" in card["description"]
    assert "Notes: free text" in card["description"]
    assert card["training_data"]["source"] == "Churn Export.csv"
    city = next(f for f in card["features"] if f["name"] == "City")
    assert len(city["categories"]) == 30  # the long tail counts as one unseen category


def test_health_is_public_and_the_merged_openapi_documents_the_model(runtime: LocalRuntime) -> None:
    anonymous = runtime_client(runtime, keyed=False)
    assert anonymous.get("/v1/models/churn/health").json()["model"] == "churn"
    doc = runtime_client(runtime).get("/openapi.json").json()
    assert "ChurnRecord" in doc["components"]["schemas"]
    assert "TinyRecord" in doc["components"]["schemas"]
    assert doc["paths"][PREDICT]["post"]["security"] == [
        {"apiKey": [], "bearer": ["predict:churn"]}
    ]


def test_lambda_handler_given_the_aws_event_answers_like_the_gateway(
    runtime: LocalRuntime,
) -> None:
    # GIVEN API Gateway's REST proxy event for churn's predict route (events/apigw/)
    event = load_event("apigw/byom_predict")
    # WHEN the function's handler gets it, as Lambda would call it
    response = runtime.hosts["churn"].invoke(event)
    # THEN it answers a proxy response with the event's request id in the envelope
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["request_id"] == event["requestContext"]["requestId"]
    assert body["results"][0]["label"] in {"Yes", "No"}


def test_aib_invoke_runs_the_generic_handler_with_the_sample_event(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    event = Path(__file__).resolve().parents[3] / "events" / "apigw" / "byom_predict.json"
    code = aib(
        "--functions",
        str(workspace.functions),
        "--state-dir",
        str(workspace.state),
        "invoke",
        "churn",
        "--event",
        str(event),
    )
    out = capsys.readouterr().out
    assert code == 0
    response = json.loads(out[out.index("{\n") :])
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["model"]["name"] == "churn"

"""The sentiment service through the local runtime (`aib dev`), and its Lambda handler given
API Gateway's event."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

from aibackend.local.runtime import LocalRuntime
from aibackend.training.sentiment import HOLDOUT_SOURCE
from tests.support import running_runtime, runtime_client

pytestmark = pytest.mark.slow
URL = "/v1/sentiment"


@pytest.fixture(scope="module")
def runtime(
    sentiment_functions: Path, sentiment_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("sentiment-svc") / "state"
    with running_runtime(
        sentiment_functions, state, seed_state=sentiment_state, sources=False
    ) as rt:
        yield rt


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> TestClient:
    return runtime_client(runtime)


def _problem(r: Any, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    return body


def test_classifies_texts_in_order_with_the_shared_envelope(
    client: TestClient, runtime: LocalRuntime
) -> None:
    # WHEN a clear compliment and a clear complaint are posted together
    texts = ["Absolutely love it, works perfectly.", "Terrible quality, it broke in a day."]
    r = client.post(URL, json={"texts": texts})
    # THEN each gets a result, in input order, in the envelope every model service uses
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == r.headers["x-amzn-requestid"]
    assert body["model"] == {
        "name": "sentiment",
        "version": runtime.hosts["sentiment"].models["sentiment"],
    }
    assert [x["label"] for x in body["results"]] == ["positive", "negative"]
    ids = [x["inference_id"] for x in body["results"]]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    for x in body["results"]:
        # AND `probability` is the label's, the larger of the two, which sum to 1
        assert x["probability"] == x["probabilities"][x["label"]]
        assert x["probability"] >= 0.5
        assert sum(x["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_served_probabilities_equal_an_offline_onnxruntime_session_exactly(
    client: TestClient, runtime: LocalRuntime
) -> None:
    # GIVEN the 100 first holdout sentences
    with HOLDOUT_SOURCE.open(newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:100]
    # WHEN they are classified through the API as one batch
    r = client.post(URL, json={"texts": texts})
    assert r.status_code == 200, r.text
    served = np.array(
        [
            [x["probabilities"]["negative"], x["probabilities"]["positive"]]
            for x in r.json()["results"]
        ]
    )
    # THEN they are bit for bit what a plain session on the registered graph gives
    version = runtime.hosts["sentiment"].models["sentiment"]
    path = (
        runtime.settings.state_dir
        / "buckets"
        / "models"
        / "sentiment"
        / str(version)
        / "model.onnx"
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    offline = sess.run(["probabilities"], {"text": np.array(texts, dtype=object).reshape(-1, 1)})[0]
    np.testing.assert_array_equal(served, offline.astype(np.float64))


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"texts": []}, "texts", "at least 1 item"),
        ({"texts": ["fine"] * 101}, "texts", "at most 100 items"),
        ({"texts": ["fine", ""]}, "texts[1]", "at least 1 character"),
        ({"texts": ["x" * 5001]}, "texts[0]", "at most 5000 characters"),
        ({"texts": [" \n\t"]}, "texts[0]", "is blank"),
        ({"texts": "fine"}, "texts", "valid list"),
        ({"text": ["fine"]}, "texts", "required"),
        ({"texts": ["fine"], "lang": "en"}, "lang", "not permitted"),
    ],
    ids=[
        "no texts",
        "101 texts",
        "empty text",
        "5001 characters",
        "blank",
        "not a list",
        "misspelled field",
        "unknown field",
    ],
)
def test_requests_outside_the_limits_get_a_422_problem_naming_the_limit(
    client: TestClient, body: dict[str, Any], field: str, says: str
) -> None:
    problem = _problem(client.post(URL, json=body))
    assert any(e["field"] == field and says in e["message"] for e in problem["errors"]), problem
    assert field in problem["detail"]


def test_the_largest_request_is_served_even_in_four_byte_characters(client: TestClient) -> None:
    # GIVEN 100 texts of 5,000 emoji (2,000,000 bytes of UTF-8), sent unescaped
    body = json.dumps({"texts": ["\U0001f600" * 5000] * 100}, ensure_ascii=False).encode()
    assert len(body) < 2048 * 1024
    # WHEN posted  THEN all 100 are classified (the route's body limit fits them)
    r = client.post(URL, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["results"]) == 100


def test_any_unicode_text_is_classified(client: TestClient) -> None:
    texts = [
        "Ce grille-pain est génial 😀",
        "质量很差",
        "ממש גרוע",
        "GREAT VALUE!!! 👍👍",
        "naïve café… “excellent”",
        "\u0000 nul and \u200b zero-width",
    ]
    r = client.post(URL, json={"texts": texts})
    assert r.status_code == 200, r.text
    assert [x["label"] for x in r.json()["results"]][3] == "positive"
    assert len(r.json()["results"]) == len(texts)


def test_text_that_is_not_valid_unicode_is_refused(client: TestClient) -> None:
    # GIVEN JSON whose string holds an unpaired surrogate (valid JSON, not valid Unicode)
    raw = b'{"texts": ["fine", "broken \\ud800 text"]}'
    problem = _problem(client.post(URL, content=raw, headers={"content-type": "application/json"}))
    [error] = problem["errors"]
    assert error["field"] == "texts[1]"
    assert "unicode string" in error["message"]


def test_health_is_public_and_every_other_route_needs_a_key(runtime: LocalRuntime) -> None:
    anonymous = runtime_client(runtime, keyed=False)
    r = anonymous.get("/v1/sentiment/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "model": "sentiment",
        "version": runtime.hosts["sentiment"].models["sentiment"],
    }
    assert anonymous.post(URL, json={"texts": ["fine"]}).status_code == 401
    assert anonymous.get("/v1/sentiment/model").status_code == 401
    assert anonymous.get("/v1/sentiment/openapi.json").status_code == 401


def test_openapi_documents_the_limits_and_the_model_card_its_baselines(client: TestClient) -> None:
    doc = client.get("/v1/sentiment/openapi.json").json()
    assert set(doc["paths"]) == {URL, f"{URL}/health", f"{URL}/model"}
    request = doc["components"]["schemas"]["SentimentRequest"]["properties"]["texts"]
    assert (request["minItems"], request["maxItems"]) == (1, 100)
    assert (request["items"]["minLength"], request["items"]["maxLength"]) == (1, 5000)
    assert URL in client.get("/openapi.json").json()["paths"]
    card = client.get("/v1/sentiment/model").json()
    assert card["metrics"]["accuracy"] > card["baselines"]["lexicon"]["accuracy"]


def test_lambda_handler_given_the_aws_event_returns_the_local_routes_body(
    client: TestClient, runtime: LocalRuntime, event: Callable[[str], dict[str, Any]]
) -> None:
    # GIVEN API Gateway's REST proxy event for the sentiment route
    aws_event = event("apigw/sentiment")
    payload = json.loads(aws_event["body"])
    # WHEN the Lambda handler gets that event, and the local route the same payload
    lam = runtime.hosts["sentiment"].invoke(aws_event)
    local = client.post(URL, json=payload)
    # THEN both answer 200 with the same body, but for the per-request ids
    assert lam["statusCode"] == 200 == local.status_code
    lam_body, local_body = json.loads(lam["body"]), local.json()
    assert lam_body["request_id"] == aws_event["requestContext"]["requestId"]

    def strip(b: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": b["model"],
            "results": [{k: v for k, v in x.items() if k != "inference_id"} for x in b["results"]],
        }

    assert strip(lam_body) == strip(local_body)
    assert [x["label"] for x in lam_body["results"]] == ["positive", "negative"]

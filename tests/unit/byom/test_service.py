"""The generic model service: a request schema built from the card, predictions in the shared
envelope, errors as problem documents."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from aibackend.byom.runtime import open_model_dir
from aibackend.byom.service import build_app

PREDICT = "/v1/models/tiny_churn/predict"


def _churn(age: float, member: float, code: float) -> float:
    return 1 / (1 + math.exp(-(0.05 * age - member + code - 2.5)))


@pytest.fixture
def client(model_dir: Path) -> TestClient:
    return TestClient(build_app(open_model_dir(model_dir)))


def test_one_record_gets_a_label_and_every_class_probability(client: TestClient) -> None:
    # WHEN a record is posted with the features named as in the CSV header
    r = client.post(PREDICT, json={"Age (years)": 70, "member": False, "plan": "basic"})
    # THEN the envelope carries the model version and one result with an inference id
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "tiny_churn", "version": 0}
    [result] = body["results"]
    assert len(result["inference_id"]) == 32
    p = _churn(70, 0, 1)
    assert result["probabilities"] == pytest.approx({"stay": 1 - p, "churn": p}, abs=1e-6)
    assert result["label"] == "churn"


def test_a_batch_is_answered_in_order_with_missing_values_imputed_in_the_graph(
    client: TestClient,
) -> None:
    records = [
        {"Age (years)": 20, "member": True, "plan": "pro"},
        {},  # every value missing: age 40, member false, plan unseen (0.5), in the graph
        {"Age (years)": None, "plan": " NA "},
        {"plan": "enterprise"},  # a category the model never saw
    ]
    r = client.post(PREDICT, json={"records": records})
    assert r.status_code == 200, r.text
    churn = [res["probabilities"]["churn"] for res in r.json()["results"]]
    assert churn == pytest.approx(
        [_churn(20, 1, 0), _churn(40, 0, 0.5), _churn(40, 0, 0.5), _churn(40, 0, 0.5)], abs=1e-6
    )
    assert len({res["inference_id"] for res in r.json()["results"]}) == 4


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"Age (years)": "70", "member": 1, "plan": 3}, {"Age (years)", "member", "plan"}),
        ({"Age (years)": 1e39}, {"Age (years)"}),
        ({"age": 30, "records": 2}, {"age", "records"}),
        ({"records": [{"plan": "basic"}, {"Plan": "basic"}]}, {"records[1].Plan"}),
        ({"records": []}, {"records"}),
        ({"records": [{}] * 1001}, {"records"}),
        ({"plan": "\ud800"}, {"plan"}),
        ([{"plan": "basic"}], {"body"}),
    ],
)
def test_invalid_records_are_a_422_problem_naming_each_field(
    client: TestClient, body: object, fields: set[str]
) -> None:
    r = client.post(PREDICT, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert {e["field"] for e in r.json()["errors"]} == fields


def test_a_graph_that_cannot_take_missing_values_answers_422_naming_them(
    model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    # GIVEN a model whose graph has no imputer (NaN in, NaN out)
    model = open_model_dir(model_factory(tmp_path / "raw", impute=False))
    client = TestClient(build_app(model))
    # WHEN the second record of a batch leaves the age out
    records = [{"Age (years)": 30, "member": True}, {"member": False}]
    r = client.post(PREDICT, json={"records": records})
    # THEN the request fails as a problem that names the record and the missing feature
    assert r.status_code == 422
    problem = r.json()
    assert problem["title"] == "Record cannot be scored"
    assert "records[1] left Age (years), plan missing" in problem["detail"]
    assert "send a value for every field" in problem["detail"]


def test_regression_answers_a_value(model_factory: Callable[..., Path], tmp_path: Path) -> None:
    model = open_model_dir(model_factory(tmp_path / "reg", task="regression"))
    r = TestClient(build_app(model)).post(PREDICT, json={"Age (years)": 10, "plan": "pro"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["value"] == pytest.approx(0.5 - 2.5)


def test_the_openapi_document_is_built_from_the_card(client: TestClient) -> None:
    doc = client.get("/v1/models/tiny_churn/openapi.json").json()
    schemas = doc["components"]["schemas"]
    record = schemas["TinyChurnRecord"]
    # THEN each feature is a property named as in the data, typed, optional; others refused
    assert record["additionalProperties"] is False
    assert "required" not in record
    assert record["properties"]["Age (years)"]["anyOf"][0]["type"] == "number"
    assert record["properties"]["member"]["anyOf"][0]["type"] == "boolean"
    plan = record["properties"]["plan"]
    assert plan["examples"] == ["basic", "pro"]
    assert "one of the categories the model knows: 'basic', 'pro'" in plan["description"]
    assert schemas["TinyChurnBatch"]["properties"]["records"]["maxItems"] == 1000
    assert set(doc["paths"]) == {
        "/v1/models/tiny_churn/predict",
        "/v1/models/tiny_churn/health",
        "/v1/models/tiny_churn/card",
    }
    responses = doc["paths"][PREDICT]["post"]["responses"]
    assert {"200", "422"} <= set(responses)
    assert "application/problem+json" in responses["422"]["content"]


def test_health_and_card_say_which_version_serves(client: TestClient) -> None:
    assert client.get("/v1/models/tiny_churn/health").json() == {
        "status": "ok",
        "model": "tiny_churn",
        "version": 0,
    }
    card = client.get("/v1/models/tiny_churn/card").json()
    assert [f["name"] for f in card["features"]] == ["Age (years)", "member", "plan"]

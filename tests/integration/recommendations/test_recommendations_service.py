"""The recommendations service through the local runtime, and its Lambda handler given AWS's
events."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

from aibackend.local.runtime import LocalRuntime
from aibackend.recommend.artifact import ModelData
from tests.support import runtime_client

pytestmark = pytest.mark.slow
URL = "/v1/recommendations"


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> TestClient:
    return runtime_client(runtime)


def _version(runtime: LocalRuntime) -> int:
    mv = runtime.registry.production("recommendations")
    assert mv is not None
    return mv.version


def _items_of(interactions: list[tuple[str, str]], user: str) -> set[str]:
    return {item for u, item in interactions if u == user}


def _most_popular(interactions: list[tuple[str, str]], k: int) -> list[str]:
    users_per_item = Counter(item for _, item in set(interactions))
    return [item for item, _ in users_per_item.most_common(k)]


def test_a_known_user_gets_k_unseen_items_ranked(
    client: TestClient, runtime: LocalRuntime, interactions: list[tuple[str, str]]
) -> None:
    # GIVEN a user of the training data
    user = "u000042"
    seen = _items_of(interactions, user)
    assert seen
    # WHEN 7 recommendations are asked for
    r = client.get(f"{URL}/{user}", params={"k": 7})
    # THEN 7 ranked items come back in the shared envelope, none of them already seen
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == r.headers["x-amzn-requestid"]
    assert body["model"] == {"name": "recommendations", "version": _version(runtime)}
    assert (body["user_id"], body["strategy"]) == (user, "personalized")
    results = body["results"]
    assert [x["rank"] for x in results] == list(range(1, 8))
    assert not {x["item_id"] for x in results} & seen
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert len({x["inference_id"] for x in results}) == 7


def test_served_items_are_those_of_a_raw_onnxruntime_session(
    client: TestClient, runtime: LocalRuntime, interactions: list[tuple[str, str]]
) -> None:
    # GIVEN the registered graph, run directly, on the user's history built from the CSV
    folder = runtime.settings.state_dir / "buckets" / "models" / "recommendations"
    sess = ort.InferenceSession(str(folder / str(_version(runtime)) / "model.onnx"))
    catalogue = ModelData.from_metadata(sess.get_modelmeta().custom_metadata_map).item_ids
    history = np.zeros((1, len(catalogue)), np.float32)
    history[0, [catalogue.index(i) for i in _items_of(interactions, "u000042")]] = 1.0
    scores, items = sess.run(None, {"history": history})
    # WHEN the service ranks the same user
    served = client.get(f"{URL}/u000042", params={"k": 10}).json()["results"]
    # THEN it returns the graph's top 10, scores and all
    assert [x["item_id"] for x in served] == [catalogue[i] for i in items[0][:10]]
    np.testing.assert_allclose([x["score"] for x in served], scores[0][:10], rtol=1e-6)


def test_an_unknown_user_gets_popular_items_and_is_told_so(
    client: TestClient, interactions: list[tuple[str, str]]
) -> None:
    r = client.get(f"{URL}/someone-new")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["strategy"] == "popularity"
    assert [x["item_id"] for x in body["results"]] == _most_popular(interactions, 10)


@pytest.mark.parametrize("k", ["0", "101", "ten"])
def test_k_out_of_range_is_a_problem_naming_k(client: TestClient, k: str) -> None:
    r = client.get(f"{URL}/u000042", params={"k": k})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == ["k"]


def test_a_session_gets_unseen_items_and_its_unknown_ids_back(
    client: TestClient, interactions: list[tuple[str, str]]
) -> None:
    # GIVEN a session that touched three popular items and an id the catalogue lacks
    recent = _most_popular(interactions, 3)
    r = client.post(URL, json={"recent_items": [*recent, "no-such-item"], "k": 5})
    # THEN five personalized items, none of those three, and the unknown id reported
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["strategy"] == "personalized"
    assert body["unknown_items"] == ["no-such-item"]
    assert len(body["results"]) == 5
    assert not {x["item_id"] for x in body["results"]} & set(recent)


def test_an_empty_session_gets_popular_items(
    client: TestClient, interactions: list[tuple[str, str]]
) -> None:
    body = client.post(URL, json={"recent_items": [], "k": 3}).json()
    assert body["strategy"] == "popularity"
    assert body["unknown_items"] == []
    assert [x["item_id"] for x in body["results"]] == _most_popular(interactions, 3)


def test_invalid_sessions_are_problems_naming_each_field(client: TestClient) -> None:
    r = client.post(URL, json={"recent_items": ["a"] * 201, "k": 0, "user": "x"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert {e["field"] for e in r.json()["errors"]} == {"recent_items", "k", "user"}
    r = client.post(
        URL, content=b'{"recent_items": [', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


def test_health_is_public_and_every_other_route_needs_a_key(runtime: LocalRuntime) -> None:
    anonymous = runtime_client(runtime, keyed=False)
    r = anonymous.get(f"{URL}/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": "recommendations", "version": _version(runtime)}
    assert anonymous.get(f"{URL}/u000042").status_code == 401
    assert anonymous.post(URL, json={"recent_items": []}).status_code == 401
    assert anonymous.get(f"{URL}/openapi.json").status_code == 401


def test_the_openapi_document_lists_the_routes_and_constraints(client: TestClient) -> None:
    doc = client.get(f"{URL}/openapi.json").json()
    assert set(doc["paths"]) == {f"{URL}/health", f"{URL}/{{user_id}}", URL}
    params = {p["name"]: p for p in doc["paths"][f"{URL}/{{user_id}}"]["get"]["parameters"]}
    assert params["k"]["schema"]["maximum"] == 100
    assert "SessionRequest" in client.get("/openapi.json").json()["components"]["schemas"]


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("apigw/recommendations_get", lambda c: c.get(f"{URL}/u000042", params={"k": 5})),
        (
            "apigw/recommendations_post",
            lambda c: c.post(
                URL, json={"recent_items": ["i00017", "i00342", "not-in-catalogue"], "k": 5}
            ),
        ),
    ],
    ids=["get", "post"],
)
def test_lambda_handler_given_the_aws_event_returns_the_local_routes_body(
    client: TestClient,
    runtime: LocalRuntime,
    event: Callable[[str], dict[str, Any]],
    name: str,
    local: Callable[[TestClient], Any],
) -> None:
    # GIVEN API Gateway's REST proxy event for a route, and the same request sent locally
    aws_event = event(name)
    lam = runtime.hosts["recommendations"].invoke(aws_event)
    here = local(client)
    # THEN both answer 200 with the same body, but for the per-request ids
    assert lam["statusCode"] == 200 == here.status_code, lam["body"]
    lam_body, local_body = json.loads(lam["body"]), here.json()
    assert lam_body["request_id"] == aws_event["requestContext"]["requestId"]

    def strip(b: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in b.items() if k != "request_id"},
            "results": [{k: v for k, v in x.items() if k != "inference_id"} for x in b["results"]],
        }

    assert strip(lam_body) == strip(local_body)
    assert len(lam_body["results"]) == 5

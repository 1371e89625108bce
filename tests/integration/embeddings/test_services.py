"""`POST /v1/embeddings` and `GET /v1/search` through `aib dev` (its gateway, the functions and
the embeddings server as a loopback process), with and without the model built."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from aibackend.local.runtime import LocalRuntime
from tests.integration.embeddings.tiny_model import DIMENSION, MAX_TOKENS, register_tiny_embeddings
from tests.support import FUNCTIONS, running_runtime, runtime_client

pytestmark = pytest.mark.slow  # starts the server process (about a second per runtime)
PROBLEM = "application/problem+json"
TEXTS = ["Stainless steel travel mug", "noise cancelling headphones"]


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's embeddings and search functions, alone (no other model to train)."""
    root = tmp_path_factory.mktemp("functions")
    for name in ("embeddings", "search"):
        (root / name).symlink_to(FUNCTIONS / name, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def runtime(
    functions: Path, embeddings_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("built") / "state"
    with running_runtime(functions, state, seed_state=embeddings_state, sources=False) as rt:
        yield rt


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> TestClient:
    return runtime_client(runtime)


def test_health_names_the_running_server(client: TestClient, runtime: LocalRuntime) -> None:
    url = client.get("/health").json()["endpoints"]["embeddings"]
    assert url.startswith("http://127.0.0.1:")
    assert runtime.endpoints is not None and runtime.endpoints.processes["embeddings"].ping()
    assert client.get("/v1/embeddings/health").json() == {
        "status": "ok",
        "endpoint": "embeddings",
        "configured": True,
        "circuit": "closed",
    }


def test_embeddings_answer_the_shared_envelope(client: TestClient) -> None:
    # WHEN two texts are embedded, the second far past the model's word-piece limit
    r = client.post("/v1/embeddings", json={"texts": [TEXTS[0], "mug " * (MAX_TOKENS + 5)]})
    # THEN each gets a unit vector, its word-piece count and whether it was cut
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "embeddings", "version": 1}
    assert (body["dimension"], body["max_tokens"]) == (DIMENSION, MAX_TOKENS)
    first, second = body["results"]
    assert [first["index"], second["index"]] == [0, 1]
    assert len(first["embedding"]) == DIMENSION
    assert abs(sum(x * x for x in first["embedding"]) - 1) < 1e-5
    assert (first["tokens"], first["truncated"]) == (6, False)
    assert (second["tokens"], second["truncated"]) == (MAX_TOKENS + 7, True)
    assert first["inference_id"] != second["inference_id"]


def test_search_ranks_catalog_products(client: TestClient) -> None:
    r = client.get("/v1/search", params={"q": "travel mug", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "travel mug"
    assert [h["rank"] for h in body["results"]] == [1, 2, 3]
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["results"][0]["product_id"].startswith("p-")
    assert {"name", "category", "description", "price", "inference_id"} <= body["results"][0].keys()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("POST", "/v1/embeddings", {"json": {"texts": []}}, "texts"),
        ("POST", "/v1/embeddings", {"json": {"texts": ["a"] * 65}}, "texts"),
        ("POST", "/v1/embeddings", {"json": {"texts": ["x" * 2049]}}, "texts[0]"),
        ("POST", "/v1/embeddings", {"json": {"texts": [""]}}, "texts[0]"),
        ("GET", "/v1/search", {"params": {"q": "mug", "k": 51}}, "k"),
        ("GET", "/v1/search", {"params": {"k": 5}}, "q"),
    ],
)
def test_invalid_requests_are_422_problems_naming_the_field(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], field: str
) -> None:
    r = client.request(method, path, **kwargs)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert field in {e["field"] for e in r.json()["errors"]}


@pytest.mark.parametrize(
    ("function", "sample", "path"),
    [
        ("embeddings", "apigw/embeddings", "/v1/embeddings"),
        ("search", "apigw/search", "/v1/search"),
    ],
)
def test_lambda_handler_given_the_aws_event_answers_like_the_local_route(
    client: TestClient,
    runtime: LocalRuntime,
    event: Callable[[str], dict[str, Any]],
    function: str,
    sample: str,
    path: str,
) -> None:
    # GIVEN API Gateway's REST proxy event for the route
    aws_event = event(sample)
    # WHEN the Lambda handler gets it, and the local route gets the same request
    lam = runtime.hosts[function].invoke(aws_event)
    if aws_event["body"] is not None:
        local = client.post(path, json=json.loads(aws_event["body"]))
    else:
        local = client.get(path, params=aws_event["queryStringParameters"])
    # THEN both answer 200 with the same body, but for the per-request ids
    assert lam["statusCode"] == 200 == local.status_code, lam["body"]
    lam_body, local_body = json.loads(lam["body"]), local.json()
    assert lam_body["request_id"] == aws_event["requestContext"]["requestId"]

    def strip(b: dict[str, Any]) -> dict[str, Any]:
        results = [{k: v for k, v in x.items() if k != "inference_id"} for x in b["results"]]
        return {**{k: v for k, v in b.items() if k != "request_id"}, "results": results}

    assert strip(lam_body) == strip(local_body)


def test_without_the_model_aib_dev_runs_and_routes_say_how_to_build_it(
    functions: Path, tmp_path: Path
) -> None:
    # GIVEN aib dev on a state folder where the embeddings model was never built
    with running_runtime(functions, tmp_path / "state", sources=False) as rt:
        client = runtime_client(rt)
        # THEN it runs, and its health says what is missing and how to get it
        assert client.get("/health").json()["endpoints"] == {
            "embeddings": "not built (make embeddings)"
        }
        assert client.get("/v1/search/health").json()["configured"] is False
        # AND the routes answer 503 problems that say `make embeddings`
        for r in (
            client.post("/v1/embeddings", json={"texts": TEXTS}),
            client.get("/v1/search", params={"q": "mug"}),
        ):
            assert r.status_code == 503
            assert r.headers["content-type"] == PROBLEM
            assert "make embeddings" in r.json()["detail"]

        # WHEN the model is built while aib dev runs
        register_tiny_embeddings(rt.settings.state_dir)
        reloaded = rt.poll_once()
        # THEN the server starts, the callers are re-imported with its URL, and they answer
        assert sorted(reloaded) == ["embeddings", "search"]
        assert client.get("/health").json()["endpoints"]["embeddings"].startswith("http://")
        assert client.post("/v1/embeddings", json={"texts": TEXTS}).status_code == 200
    # AND stopping aib dev stops the server
    assert rt.endpoints is not None
    assert not rt.endpoints.processes["embeddings"].running


def test_a_dead_server_opens_the_circuit_and_callers_get_retry_after(
    functions: Path, embeddings_state: Path, tmp_path: Path
) -> None:
    # GIVEN aib dev with the model, whose server then dies
    with running_runtime(functions, tmp_path / "state", seed_state=embeddings_state) as rt:
        client = runtime_client(rt)
        assert client.post("/v1/embeddings", json={"texts": TEXTS}).status_code == 200
        assert rt.endpoints is not None
        rt.endpoints.processes["embeddings"].stop()
        # WHEN callers keep calling
        answers = [client.post("/v1/embeddings", json={"texts": TEXTS}) for _ in range(6)]
    # THEN every call is a 503 problem: five failed calls (each retried), then the circuit is
    # open and the answer comes at once with Retry-After
    assert [r.status_code for r in answers] == [503] * 6
    assert "not answering" in answers[0].json()["detail"]
    assert "circuit open" in answers[5].json()["detail"]
    assert int(answers[5].headers["retry-after"]) >= 1

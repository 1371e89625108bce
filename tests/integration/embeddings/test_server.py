"""The embeddings server's SageMaker contract, in process on the tiny model: `GET /ping`,
`POST /invocations` (JSON in and out, batches of up to 32, search), problem documents."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from aibackend.embeddings.backends import load_backend
from aibackend.embeddings.contract import MAX_BATCH, InvocationResponse
from aibackend.embeddings.server import create_app

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[TestClient]:
    app = create_app(lambda: load_backend(tiny_model_dir), max_wait_s=0.02)
    with TestClient(app) as client:  # runs the lifespan: the model loads before traffic
        yield client


def invoke(server: TestClient, body: object) -> InvocationResponse:
    r = server.post("/invocations", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return InvocationResponse.model_validate(r.json())


def test_ping_answers_200_with_the_model_once_loaded(server: TestClient) -> None:
    r = server.get("/ping")
    assert r.status_code == 200
    body = r.json()
    assert body["model"]["name"] == "embeddings" and body["model"]["version"] == 1
    assert body["device"] == "cpu"
    assert body["indexes"] == ["products"]


def test_ping_is_503_before_the_model_is_loaded(tiny_model_dir: Path) -> None:
    # GIVEN a server app whose lifespan has not run (nothing loaded yet)
    client = TestClient(create_app(lambda: load_backend(tiny_model_dir)))
    # WHEN SageMaker pings it THEN it is not healthy yet
    r = client.get("/ping")
    assert r.status_code == 503
    assert r.headers["content-type"] == PROBLEM


def test_invocations_embed_each_input_as_a_unit_vector_in_order(server: TestClient) -> None:
    texts = ["travel mug", "noise cancelling headphones", "travel mug"]
    answer = invoke(server, {"inputs": texts})
    vectors = np.array(answer.embeddings)
    assert vectors.shape == (3, answer.model.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], rtol=1e-6)  # same text, same vector
    assert not np.allclose(vectors[0], vectors[1])
    assert answer.tokens == [4, 5, 4]  # [CLS] travel mug [SEP], ...
    assert answer.matches is None


def test_a_request_over_one_batch_is_split_and_put_back_in_order(server: TestClient) -> None:
    # GIVEN more texts than one batch holds, of very different lengths
    texts = [" ".join(["mug"] * (i % 7 + 1)) + f" {i}" for i in range(MAX_BATCH * 2 + 5)]
    # WHEN they are embedded in one request, and each alone
    together = np.array(invoke(server, {"inputs": texts}).embeddings)
    alone = np.array([invoke(server, {"inputs": [t]}).embeddings[0] for t in texts[:6]])
    # THEN the batched answer has them in input order, as if each had come alone
    assert together.shape[0] == len(texts)
    np.testing.assert_allclose(together[:6], alone, atol=1e-6)


def test_texts_past_max_tokens_are_truncated_and_say_so(server: TestClient) -> None:
    answer = invoke(server, {"inputs": ["mug " * 100]})
    assert answer.tokens == [102]
    assert answer.tokens[0] > answer.model.max_tokens


def test_search_returns_top_k_products_best_first(server: TestClient) -> None:
    answer = invoke(
        server,
        {"inputs": ["travel mug", "yoga mat"], "search": {"top_k": 3}, "return_embeddings": False},
    )
    assert answer.embeddings is None
    assert answer.matches is not None and [len(m) for m in answer.matches] == [3, 3]
    for matches in answer.matches:
        scores = [m.score for m in matches]
        assert scores == sorted(scores, reverse=True)
        assert {"name", "category", "description", "price"} <= matches[0].document.keys()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": ["ok", 3]}, 422, "inputs[1]"),
        ({"text": ["a"]}, 422, "inputs"),
        ({"inputs": ["a"], "search": {"top_k": 0}}, 422, "search.top_k"),
        ({"inputs": ["\ud800"]}, 422, "body"),  # not valid JSON text for the parser
    ],
)
def test_bad_requests_are_problems_naming_the_field(
    server: TestClient, body: object, status: int, field: str
) -> None:
    import json

    # json.dumps escapes the lone surrogate as \ud800, as a careless client would send it
    r = server.post(
        "/invocations", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code == status
    assert r.headers["content-type"] == PROBLEM
    assert field in {e["field"] for e in r.json()["errors"]}


def test_unknown_index_and_wrong_media_type_are_problems(server: TestClient) -> None:
    r = server.post("/invocations", json={"inputs": ["a"], "search": {"index": "shoes"}})
    assert (r.status_code, r.headers["content-type"]) == (404, PROBLEM)
    assert "indexes: products" in r.json()["detail"]
    r = server.post("/invocations", content=b"inputs=a", headers={"content-type": "text/csv"})
    assert (r.status_code, r.headers["content-type"]) == (415, PROBLEM)
    assert "application/json" in r.json()["detail"]


def test_concurrent_requests_share_batches(tiny_model_dir: Path) -> None:
    # GIVEN a server that waits up to 200 ms to fill a batch
    app = create_app(lambda: load_backend(tiny_model_dir), max_wait_s=0.2)
    with TestClient(app) as client:
        # WHEN eight one-text requests arrive at once
        results: list[int] = []

        def call(i: int) -> None:
            r = client.post("/invocations", json={"inputs": [f"mug {i}"]})
            results.append(r.status_code)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ping = client.get("/ping").json()
    # THEN all are answered, in fewer forward passes than requests
    assert results == [200] * 8
    assert ping["batches"] < 8
    assert ping["texts"] == 8

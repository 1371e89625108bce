"""The local API Gateway: real REST proxy events in, Lambda proxy responses out."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from aibackend.catalog import load_catalog
from aibackend.local.gateway import build_gateway
from aibackend.local.host import FunctionHost

HANDLER = """
import base64, json, time

def handler(event, context):
    path = event["path"]
    if path.endswith("/boom"):
        raise RuntimeError("kaput")
    if path.endswith("/slow"):
        time.sleep(3)
    if path.endswith("/bad"):
        return "not a proxy response"
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {"x-multi": ["a", "b"]},
        "body": json.dumps({"event": event, "remaining_ms": context.get_remaining_time_in_millis(),
                            "function": context.function_name}),
    }
"""


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    pkg = tmp_path / "functions" / "echo_fn"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "handler.py").write_text(HANDLER)
    (pkg / "function.toml").write_text(
        textwrap.dedent(
            """
            timeout_s = 1
            [[routes]]
            method = "GET"
            path = "/v1/items/{item_id}"
            access = "api_key"
            [[routes]]
            method = "POST"
            path = "/v1/items/{item_id}"
            access = "api_key"
            [[routes]]
            method = "GET"
            path = "/v1/items/special"
            access = "api_key"
            [[routes]]
            method = "GET"
            path = "/v1/ops/{op}"
            access = "api_key"
            """
        )
    )
    catalog = load_catalog(tmp_path / "functions")
    hosts = {f.name: FunctionHost(f) for f in catalog.functions}
    for h in hosts.values():
        h.load()
    return TestClient(build_gateway(catalog, hosts, health=lambda: {"status": "ok"}))


def test_request_becomes_a_rest_proxy_event(client: TestClient) -> None:
    # WHEN a request with path parameter, repeated query and headers arrives
    r = client.get("/v1/items/42?tag=a&tag=b&x=1", headers={"x-api-key": "k"})
    # THEN the handler sees API Gateway's REST (v1) proxy event shape
    assert r.status_code == 200
    event = r.json()["event"]
    assert event["resource"] == "/v1/items/{item_id}"
    assert event["pathParameters"] == {"item_id": "42"}
    assert event["queryStringParameters"] == {"tag": "b", "x": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "x": ["1"]}
    assert event["headers"]["x-api-key"] == "k"
    assert event["requestContext"]["requestId"] == r.headers["x-amzn-requestid"]
    assert event["requestContext"]["resourcePath"] == "/v1/items/{item_id}"
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert r.json()["function"] == "echo_fn"
    assert 0 < r.json()["remaining_ms"] <= 1000
    # AND multi-value response headers come back
    assert r.headers.get_list("x-multi") == ["a", "b"]


def test_literal_segments_win_over_parameters(client: TestClient) -> None:
    assert client.get("/v1/items/special").json()["event"]["resource"] == "/v1/items/special"


def test_text_bodies_pass_as_text_and_binary_as_base64(client: TestClient) -> None:
    r = client.post(
        "/v1/items/1", content=b'{"a": 1}', headers={"content-type": "application/json"}
    )
    assert r.json()["event"]["body"] == '{"a": 1}'
    r = client.post(
        "/v1/items/1", content=b"\xff\x00", headers={"content-type": "application/octet-stream"}
    )
    assert r.json()["event"]["isBase64Encoded"] is True
    assert r.json()["event"]["body"] == "/wA="


def test_unknown_route_and_wrong_method_are_problem_responses(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "no function declares a route" in r.json()["detail"]
    r = client.delete("/v1/items/1")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"


def test_a_failing_function_gives_502_and_the_gateway_keeps_serving(client: TestClient) -> None:
    r = client.get("/v1/ops/boom")
    assert r.status_code == 502
    assert r.json()["detail"] == "echo_fn raised RuntimeError: kaput"
    assert client.get("/v1/items/1").status_code == 200


def test_a_function_past_its_timeout_gives_504(client: TestClient) -> None:
    r = client.get("/v1/ops/slow")
    assert r.status_code == 504
    assert "timeout_s = 1" in r.json()["detail"]


def test_a_malformed_lambda_response_is_a_502(client: TestClient) -> None:
    r = client.get("/v1/ops/bad")
    assert r.status_code == 502
    assert "Malformed Lambda proxy response" in json.dumps(r.json())

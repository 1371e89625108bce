"""The local API Gateway: real REST proxy events in, Lambda proxy responses out."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from aibackend.auth.local import LocalAccess
from aibackend.catalog import load_catalog
from aibackend.local.host import FunctionHost
from aibackend.settings import PlatformSettings
from tests.support import gateway_client

HANDLER = """
import base64, json, threading, time

RUNNING = [0, 0]  # invocations running now, most seen at once
LOCK = threading.Lock()

def handler(event, context):
    path = event["path"]
    if path.endswith("/overlap"):
        with LOCK:
            RUNNING[0] += 1
            RUNNING[1] = max(RUNNING)
        time.sleep(0.05)
        with LOCK:
            RUNNING[0] -= 1
        return {"statusCode": 200, "body": json.dumps({"most": RUNNING[1]})}
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
    access = LocalAccess(PlatformSettings(state_dir=tmp_path / "state"), catalog.plans)
    return gateway_client(catalog, hosts, access)


def test_request_becomes_a_rest_proxy_event(client: TestClient) -> None:
    # WHEN a request with path parameter, repeated query and headers arrives
    r = client.get("/v1/items/42?tag=a&tag=b&x=1", headers={"x-trace": "t1"})
    # THEN the handler sees API Gateway's REST (v1) proxy event shape
    assert r.status_code == 200
    event = r.json()["event"]
    assert event["resource"] == "/v1/items/{item_id}"
    assert event["pathParameters"] == {"item_id": "42"}
    assert event["queryStringParameters"] == {"tag": "b", "x": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "x": ["1"]}
    assert event["headers"]["x-trace"] == "t1"
    # AND the authorizer's answer: the development key's id and context, as on AWS
    context = event["requestContext"]
    assert context["identity"]["apiKeyId"] == context["authorizer"]["principalId"]
    assert context["authorizer"]["keyName"] == "development"
    assert context["authorizer"]["plan"] == "dev"
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
    assert r.json()["detail"] == "no function declares a route for /v1/nothing"
    r = client.delete("/v1/items/1")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("path", "meant"),
    [
        ("/v1/items/special/", "/v1/items/special"),
        ("/v1/items/7/", "/v1/items/7"),
        ("/v1/item/special", "/v1/items/special"),
    ],
)
def test_a_mistyped_path_is_answered_with_the_route_it_was_probably_meant_for(
    client: TestClient, path: str, meant: str
) -> None:
    # GIVEN a trailing slash, or a typo, on a declared route WHEN it is called
    r = client.get(path)
    # THEN the 404 names the declared path to use
    assert r.status_code == 404
    assert r.json()["detail"] == f"no function declares a route for {path}; did you mean {meant}?"


def test_a_failing_function_gives_502_and_the_gateway_keeps_serving(client: TestClient) -> None:
    r = client.get("/v1/ops/boom")
    assert r.status_code == 502
    assert r.json()["detail"] == "echo_fn raised RuntimeError: kaput"
    assert client.get("/v1/items/1").status_code == 200


def test_a_function_past_its_timeout_gives_504(client: TestClient) -> None:
    r = client.get("/v1/ops/slow")
    assert r.status_code == 504
    assert "timeout_s = 1" in r.json()["detail"]


def test_an_in_process_function_gets_one_request_at_a_time_like_one_lambda_environment(
    client: TestClient,
) -> None:
    # GIVEN six requests to one in-process function at the same moment
    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://aib", headers=client.headers
        ) as c:
            return await asyncio.gather(*(c.get("/v1/ops/overlap") for _ in range(6)))

    answers = asyncio.run(burst())
    # THEN each is answered, and the handler never ran two of them at once
    assert [r.status_code for r in answers] == [200] * 6
    assert max(r.json()["most"] for r in answers) == 1


def test_a_hung_invocation_frees_its_functions_turn_at_its_timeout(client: TestClient) -> None:
    # GIVEN a request that hangs past the function's timeout_s = 1 (its thread sleeps on)
    assert client.get("/v1/ops/slow").status_code == 504
    # WHEN the function is called again while that invocation still runs
    t0 = time.monotonic()
    r = client.get("/v1/items/1")
    # THEN it is served at once, not after the hung one
    assert r.status_code == 200 and time.monotonic() - t0 < 0.9


def test_a_malformed_lambda_response_is_a_502(client: TestClient) -> None:
    r = client.get("/v1/ops/bad")
    assert r.status_code == 502
    assert "Malformed Lambda proxy response" in json.dumps(r.json())


LIMITED = """
import json

def handler(event, context):
    path = event["path"]
    if path.endswith("/openapi.json"):
        prefix = path.rsplit("/", 1)[0]
        doc = {"paths": {prefix + "/items": {}}, "components": {"schemas": {prefix: {}}}}
        return {"statusCode": 200, "body": json.dumps(doc)}
    return {"statusCode": 200, "body": json.dumps({"size": len(event["body"] or "")})}
"""


@pytest.fixture
def limited(tmp_path: Path) -> tuple[TestClient, list[str]]:
    """A function whose POST route takes at most 1 KiB, and the paths it was invoked with."""
    pkg = tmp_path / "functions" / "limited_fn"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "handler.py").write_text(LIMITED)
    routes = [("POST", "/v1/upload", "max_body_kb = 1\n")] + [
        ("GET", f"/{v}/limited/openapi.json", "") for v in ("v1", "v2")
    ]
    (pkg / "function.toml").write_text(
        "".join(
            f'[[routes]]\nmethod = "{m}"\npath = "{p}"\naccess = "api_key"\n{extra}'
            for m, p, extra in routes
        )
    )
    catalog = load_catalog(tmp_path / "functions")
    host = FunctionHost(catalog.get("limited_fn"))
    host.load()
    calls: list[str] = []
    invoke = host.invoke

    def counting(event: dict[str, object], request_id: str | None = None) -> object:
        calls.append(str(event["path"]))
        return invoke(event, request_id)

    host.invoke = counting  # type: ignore[method-assign]
    access = LocalAccess(PlatformSettings(state_dir=tmp_path / "state"), catalog.plans)
    return gateway_client(catalog, {"limited_fn": host}, access), calls


def test_a_declared_length_over_the_route_limit_is_a_413_before_the_function_runs(
    limited: tuple[TestClient, list[str]],
) -> None:
    client, calls = limited
    # WHEN a body one byte over max_body_kb = 1 arrives with its Content-Length
    r = client.post("/v1/upload", content=b"x" * 1025)
    # THEN the gateway answers 413 naming the limit and the route, and never invokes the function
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert (problem["route"], problem["max_body_kb"]) == ("POST /v1/upload", 1)
    assert "max_body_kb = 1 (1,024 bytes; limited_fn's function.toml)" in problem["detail"]
    assert "x-amzn-requestid" not in r.headers
    assert calls == []


def test_chunked_and_understated_bodies_are_counted_while_read(
    limited: tuple[TestClient, list[str]],
) -> None:
    client, calls = limited
    # GIVEN a chunked body (no Content-Length) and one that claims 10 bytes but sends 2,000
    chunked = client.post("/v1/upload", content=iter([b"x" * 600, b"x" * 600]))
    lying = client.post("/v1/upload", content=b"x" * 2000, headers={"content-length": "10"})
    # THEN both are refused once the count passes the limit, without invoking the function
    for r in (chunked, lying):
        assert r.status_code == 413, r.text
        assert "stopped reading" in r.json()["detail"]
    assert calls == []


def test_a_body_exactly_at_the_limit_reaches_the_function(
    limited: tuple[TestClient, list[str]],
) -> None:
    client, calls = limited
    r = client.post("/v1/upload", content=b"x" * 1024, headers={"content-type": "text/plain"})
    assert r.status_code == 200
    assert r.json() == {"size": 1024}
    assert calls == ["/v1/upload"]


def test_each_version_gets_its_own_merged_openapi_document(
    limited: tuple[TestClient, list[str]],
) -> None:
    client, _ = limited
    # WHEN the per-version and the global documents are fetched
    v1, v2, every = (client.get(f"{p}/openapi.json").json() for p in ("/v1", "/v2", ""))
    # THEN each version lists only the paths its functions serve under that version
    assert list(v1["paths"]) == ["/v1/limited/items"]
    assert list(v1["components"]["schemas"]) == ["/v1/limited"]
    assert list(v2["paths"]) == ["/v2/limited/items"]
    assert v2["info"]["version"] == "2"
    # AND /openapi.json still merges everything
    assert sorted(every["paths"]) == ["/v1/limited/items", "/v2/limited/items"]
    # AND a version nobody serves documents is an ordinary 404
    assert client.get("/v3/openapi.json").status_code == 404

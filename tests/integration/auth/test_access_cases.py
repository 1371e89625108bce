"""One table of access cases, run through both topologies of the one authorizer.

`local`: HTTP requests through `aib dev`'s gateway (keys in SQLite, the development issuer).
`aws`: API Gateway REQUEST authorizer events into `functions/authorizer/handler.py`, keys in
DynamoDB and API Gateway (moto), the issuer's JWKS fetched from a URL, as from Cognito.
Both must reach the same verdict, with the same status and the same reason.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from moto import mock_aws

from aibackend.auth.apigateway import ROUTES_ENV, encode_routes
from aibackend.auth.aws import DynamoKeyStore
from aibackend.auth.keys import KeyStore
from aibackend.auth.local import LocalAccess
from aibackend.auth.tokens import DEV_AUDIENCE, DEV_ISSUER, DevSigningKey
from aibackend.catalog import Access, Catalog, Route, load_catalog
from aibackend.local.gateway import PROBLEM
from aibackend.local.host import FunctionHost
from aibackend.settings import PlatformSettings, platform_settings
from tests.conftest import load_event
from tests.support import create_data_table, gateway_client, write_functions

ECHO = """
import json

def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"authorizer": event["requestContext"].get("authorizer")})}
"""


def _routes(model: str) -> str:
    return f"""
        [[routes]]
        method = "GET"
        path = "/v1/{model}/health"
        access = "public"

        [[routes]]
        method = "GET"
        path = "/v1/{model}/info"
        access = "api_key"

        [[routes]]
        method = "POST"
        path = "/v1/{model}/predict"
        access = "token"
        scopes = ["predict:{model}"]
        """


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    # GIVEN two model services, each with a health check, a key route and a token route
    root = tmp_path_factory.mktemp("access") / "functions"
    write_functions(root, {f"{m}_model": (_routes(m), ECHO) for m in ("fraud", "sentiment")})
    return load_catalog(root)


@dataclass
class Verdict:
    status: int  # 200 when allowed
    reason: str = ""


@dataclass
class World:
    """One topology: where keys live, who signs tokens, and how a request is decided."""

    keys: KeyStore
    signer: DevSigningKey
    decide: Callable[[Route, dict[str, str]], Verdict]
    #: "local" (the gateway's answer) or "aws" (the Lambda authorizer's).
    topology: str = "local"

    def token(self, *scopes: str, **kw: Any) -> str:
        return self.signer.issue("alice", scopes, **kw)


def _route(catalog: Catalog, method: str, path: str) -> Route:
    return next(r for _, r in catalog.routes() if (r.method, r.path) == (method, path))


@pytest.fixture(params=["local", "aws"])
def world(
    request: pytest.FixtureRequest,
    catalog: Catalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    if request.param == "local":
        access = LocalAccess(PlatformSettings(state_dir=tmp_path / "state"), catalog.plans)
        hosts = {f.name: FunctionHost(f) for f in catalog.functions}
        for h in hosts.values():
            h.load()
        client = gateway_client(catalog, hosts, access, keyed=False)

        def over_http(route: Route, headers: dict[str, str]) -> Verdict:
            r = client.request(route.method, route.path, headers=headers)
            if r.status_code != 200:
                assert r.headers["content-type"] == PROBLEM
                return Verdict(r.status_code, r.json()["detail"])
            return Verdict(200)

        yield World(access.keys, access.signer, over_http)
        access.close()
        return

    # On AWS: the handler module as Lambda runs it, configured by the environment CDK writes.
    with mock_aws(), ExitStack() as stack:
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        ddb = boto3.client("dynamodb")
        create_data_table(ddb, "aib-api-keys")
        apigw = boto3.client("apigateway")
        plans = {name: apigw.create_usage_plan(name=name)["id"] for name in catalog.plans}
        keys = DynamoKeyStore(
            "aib-api-keys",
            dynamodb=ddb,
            apigateway=apigw,
            plans=catalog.plans,
            usage_plans=plans,
        )
        signer = DevSigningKey(tmp_path / "issuer.pem")
        jwks_url = stack.enter_context(_serving(json.dumps(signer.jwks()).encode()))
        for var, value in {
            "AIB_ADAPTERS": "aws",
            "AIB_TABLE_API_KEYS": "aib-api-keys",
            ROUTES_ENV: encode_routes(r for _, r in catalog.routes()),
            "AIB_TOKEN_ISSUER": DEV_ISSUER,
            "AIB_TOKEN_AUDIENCES": DEV_AUDIENCE,
            "AIB_TOKEN_JWKS_URL": jwks_url,  # fetched over HTTP, like Cognito's
        }.items():
            monkeypatch.setenv(var, value)
        from functions.authorizer import handler as authorizer

        platform_settings.cache_clear()
        authorizer._setup.cache_clear()
        base = load_event("apigw/authorizer_request")

        def through_lambda(route: Route, headers: dict[str, str]) -> Verdict:
            if route.access is Access.PUBLIC:
                return Verdict(200)  # no authorizer on the method: API Gateway never asks
            event = copy.deepcopy(base)
            arn_base = event["methodArn"].split("/prod/")[0] + "/prod"
            event.update(
                httpMethod=route.method,
                resource=route.path,
                path=route.path,
                methodArn=f"{arn_base}/{route.method}{route.path}",
                headers={
                    **{
                        k: v
                        for k, v in event["headers"].items()
                        if k.lower() not in ("x-api-key", "authorization")
                    },
                    **headers,
                },
            )
            try:
                result = authorizer.handler(event, _Context())
            except Exception as e:
                assert str(e) == "Unauthorized"  # API Gateway's 401
                return Verdict(401)
            statement = result["policyDocument"]["Statement"][0]
            allowed = statement["Effect"] == "Allow" and event["methodArn"] in statement["Resource"]
            if not allowed:
                # As the ACCESS_DENIED problem body will read it: a JSON string's content
                return Verdict(403, json.loads(f'"{result["context"]["reason"]}"'))
            # Metered under the presented key's usage plan
            assert result["usageIdentifierKey"] == headers["x-api-key"]
            return Verdict(200)

        yield World(keys, signer, through_lambda, "aws")
        platform_settings.cache_clear()
        authorizer._setup.cache_clear()


@contextmanager
def _serving(body: bytes) -> Iterator[str]:
    """`body` at http://127.0.0.1:<port>/.well-known/jwks.json (loopback only)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


class _Context:
    function_name = "authorizer"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:authorizer"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 5000


def _key(world: World, plan: str = "standard") -> str:
    return world.keys.create("checkout", plan)[1]


# -- the cases ----------------------------------------------------------------------------------


def test_health_is_public(world: World, catalog: Catalog) -> None:
    # WHEN the health route is called without any credential  THEN it is let through
    assert world.decide(_route(catalog, "GET", "/v1/fraud/health"), {}).status == 200


def test_a_missing_key_is_401(world: World, catalog: Catalog) -> None:
    # WHEN a key route is called without x-api-key  THEN 401
    assert world.decide(_route(catalog, "GET", "/v1/fraud/info"), {}).status == 401


def test_an_unknown_key_is_403(world: World, catalog: Catalog) -> None:
    # WHEN the key is not one of ours  THEN 403, saying so
    v = world.decide(_route(catalog, "GET", "/v1/fraud/info"), {"x-api-key": "aib_" + "x" * 43})
    assert (v.status, v.reason) == (403, "the x-api-key value is not a key of this API")


def test_a_valid_key_opens_key_routes(world: World, catalog: Catalog) -> None:
    key = _key(world)
    assert world.decide(_route(catalog, "GET", "/v1/fraud/info"), {"x-api-key": key}).status == 200


def test_a_revoked_key_is_403_naming_the_key(world: World, catalog: Catalog) -> None:
    # GIVEN a key that worked, then was revoked
    record, key = world.keys.create("checkout", "standard")
    route = _route(catalog, "GET", "/v1/fraud/info")
    assert world.decide(route, {"x-api-key": key}).status == 200
    world.keys.revoke(record.key_id)
    # WHEN it is used again  THEN 403, naming the key and when it was revoked
    v = world.decide(route, {"x-api-key": key})
    assert v.status == 403
    assert f"key {record.key_id} (checkout) was revoked at" in v.reason


def test_a_token_route_without_a_bearer_token_is_401(world: World, catalog: Catalog) -> None:
    route = _route(catalog, "POST", "/v1/fraud/predict")
    v = world.decide(route, {"x-api-key": _key(world)})
    assert v.status == 401
    if world.topology == "local":
        # The answer names the command that makes the token this route takes (on AWS the
        # 401 is API Gateway's UNAUTHORIZED response, which carries no per-route reason)
        assert "`aib token --scopes predict:fraud`" in v.reason


def test_a_token_without_a_key_is_401(world: World, catalog: Catalog) -> None:
    route = _route(catalog, "POST", "/v1/fraud/predict")
    bearer = {"Authorization": f"Bearer {world.token('predict:fraud')}"}
    assert world.decide(route, bearer).status == 401


def test_a_token_with_the_scope_opens_its_model_route(world: World, catalog: Catalog) -> None:
    route = _route(catalog, "POST", "/v1/fraud/predict")
    headers = {"x-api-key": _key(world), "Authorization": f"Bearer {world.token('predict:fraud')}"}
    assert world.decide(route, headers).status == 200


def test_a_token_scoped_to_one_model_is_refused_by_another(world: World, catalog: Catalog) -> None:
    # GIVEN a token for the fraud model only
    headers = {"x-api-key": _key(world), "Authorization": f"Bearer {world.token('predict:fraud')}"}
    # WHEN it calls the sentiment model's route  THEN 403 naming the missing scope
    v = world.decide(_route(catalog, "POST", "/v1/sentiment/predict"), headers)
    assert v.status == 403
    assert "POST /v1/sentiment/predict needs scope(s) predict:sentiment" in v.reason
    assert "(it has: predict:fraud)" in v.reason


def test_an_expired_token_is_403(world: World, catalog: Catalog) -> None:
    token = world.token("predict:fraud", ttl_s=60, now=1_700_000_000)  # expired in 2023
    headers = {"x-api-key": _key(world), "Authorization": f"Bearer {token}"}
    v = world.decide(_route(catalog, "POST", "/v1/fraud/predict"), headers)
    assert (v.status, v.reason) == (403, "the bearer token has expired; get a new one")


def test_a_token_for_another_audience_is_403(world: World, catalog: Catalog) -> None:
    token = world.token("predict:fraud", audience="some-other-api")
    headers = {"x-api-key": _key(world), "Authorization": f"Bearer {token}"}
    v = world.decide(_route(catalog, "POST", "/v1/fraud/predict"), headers)
    assert v.status == 403
    assert "the bearer token is for ['some-other-api'], not for this API" in v.reason


def test_a_token_from_another_issuer_key_is_403(
    world: World, catalog: Catalog, tmp_path: Path
) -> None:
    # GIVEN a token with the right claims, signed by a key the issuer never published
    forged = DevSigningKey(tmp_path / "forger.pem").issue("mallory", ["predict:fraud"])
    headers = {"x-api-key": _key(world), "Authorization": f"Bearer {forged}"}
    v = world.decide(_route(catalog, "POST", "/v1/fraud/predict"), headers)
    assert v.status == 403
    assert "is not in the issuer's key set" in v.reason


def test_a_reason_quoting_the_caller_stays_valid_json(world: World, catalog: Catalog) -> None:
    # GIVEN a token whose key id carries quotes and a backslash (the reason quotes it back)
    token = jwt.encode(
        {"sub": "x"}, world.signer._key, algorithm="RS256", headers={"kid": 'a"b\\c'}
    )
    headers = {"x-api-key": _key(world), "Authorization": f"Bearer {token}"}
    # WHEN it is refused  THEN the reason reads back intact from a JSON string (on AWS the
    # ACCESS_DENIED problem body pastes it between quotes)
    v = world.decide(_route(catalog, "POST", "/v1/fraud/predict"), headers)
    assert (v.status, v.reason) == (403, "token key id 'a\"b\\\\c' is not in the issuer's key set")

"""What only the local gateway does itself: usage plans (429), the development issuer's JWKS,
access in the OpenAPI documents, and the `aib keys` / `aib token` commands a newcomer uses."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from starlette.testclient import TestClient

from aibackend.auth.local import LocalAccess
from aibackend.catalog import Catalog, load_catalog
from aibackend.cli import main
from aibackend.local.host import FunctionHost
from aibackend.settings import PlatformSettings
from tests.support import gateway_client, write_functions

ECHO = """
import json

def handler(event, context):
    if event["path"].endswith("openapi.json"):
        paths = {"/v1/echo/" + p: {m: {"responses": {"200": {"description": "ok"}}}}
                 for p, m in (("info", "get"), ("admin", "post"), ("health", "get"))}
        return {"statusCode": 200, "body": json.dumps({"openapi": "3.1.0", "paths": paths})}
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps(event["requestContext"].get("authorizer"))}
"""
TOML = """
[[routes]]
method = "GET"
path = "/v1/echo/health"
access = "public"

[[routes]]
method = "GET"
path = "/v1/echo/info"
access = "api_key"

[[routes]]
method = "POST"
path = "/v1/echo/admin"
access = "token"
scopes = ["models:admin"]

[[routes]]
method = "GET"
path = "/v1/echo/openapi.json"
access = "api_key"
"""
PLANS = """
[plans.dev]
rate_per_s = 1000
burst = 1000

[plans.trial]
description = "three calls a day"
rate_per_s = 100
burst = 100
quota_per_day = 3

[plans.slow]
rate_per_s = 0.5
burst = 2
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    root = write_functions(tmp_path / "functions", {"echo": (TOML, ECHO)})
    (root / "plans.toml").write_text(PLANS)
    return load_catalog(root)


@pytest.fixture
def access(catalog: Catalog, tmp_path: Path) -> LocalAccess:
    return LocalAccess(PlatformSettings(state_dir=tmp_path / "state"), catalog.plans)


@pytest.fixture
def client(catalog: Catalog, access: LocalAccess) -> TestClient:
    hosts = {f.name: FunctionHost(f) for f in catalog.functions}
    for h in hosts.values():
        h.load()
    return gateway_client(catalog, hosts, access, keyed=False)


def test_a_key_over_its_daily_quota_gets_429_with_retry_after(
    client: TestClient, access: LocalAccess
) -> None:
    # GIVEN a key on a plan of 3 requests a day, used 3 times
    _, key = access.keys.create("partner", "trial")
    for _ in range(3):
        assert client.get("/v1/echo/info", headers={"x-api-key": key}).status_code == 200
    # WHEN it calls a 4th time
    r = client.get("/v1/echo/info", headers={"x-api-key": key})
    # THEN 429, a problem naming the quota, and Retry-After until midnight UTC
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert 0 < int(r.headers["retry-after"]) <= 86_400
    assert r.json()["limit"] == "quota"
    assert "quota of 3 requests today (UTC)" in r.json()["detail"]
    # AND another key is not affected
    _, other = access.keys.create("other", "trial")
    assert client.get("/v1/echo/info", headers={"x-api-key": other}).status_code == 200


def test_a_key_over_its_rate_gets_429_with_retry_after(
    client: TestClient, access: LocalAccess
) -> None:
    # GIVEN a key on a plan of one request every 2 s, burst 2
    _, key = access.keys.create("batch-job", "slow")
    codes = [client.get("/v1/echo/info", headers={"x-api-key": key}).status_code for _ in range(3)]
    # THEN the burst passes and the next is refused with how long to wait
    assert codes == [200, 200, 429]
    r = client.get("/v1/echo/info", headers={"x-api-key": key})
    assert r.json()["limit"] == "rate"
    assert r.headers["retry-after"] == "2"


def test_refusals_say_how_to_authenticate(client: TestClient, access: LocalAccess) -> None:
    # WHEN a key route is called without a key  THEN 401 with a challenge and what to do
    r = client.get("/v1/echo/info")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'ApiKey header="x-api-key"'
    assert "aib keys create NAME" in r.json()["detail"]
    # WHEN a token route is called with a key only  THEN 401 with a Bearer challenge
    _, key = access.keys.create("k", "dev")
    r = client.post("/v1/echo/admin", headers={"x-api-key": key})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    # WHEN the token lacks the scope  THEN 403 insufficient_scope naming it
    token = access.signer.issue("bob", ["predict:fraud"])
    r = client.post(
        "/v1/echo/admin", headers={"x-api-key": key, "Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 403
    assert 'error="insufficient_scope", scope="models:admin"' in r.headers["www-authenticate"]
    # AND the public health route needs nothing
    assert client.get("/v1/echo/health").status_code == 200


def test_the_function_sees_who_called(client: TestClient, access: LocalAccess) -> None:
    record, key = access.keys.create("ops-console", "dev")
    token = access.signer.issue("carol", ["models:admin"])
    r = client.post(
        "/v1/echo/admin", headers={"x-api-key": key, "Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200
    assert r.json() == {
        "principalId": record.key_id,
        "keyId": record.key_id,
        "keyName": "ops-console",
        "plan": "dev",
        "sub": "carol",
        "scope": "models:admin",
    }


def test_the_jwks_verifies_development_tokens(client: TestClient, access: LocalAccess) -> None:
    # GIVEN the public keys the gateway serves, as a Cognito user pool does
    jwks = client.get("/.well-known/jwks.json").json()
    token = access.signer.issue("dave", ["models:admin"])
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]].key
    # THEN a development token verifies with them
    assert jwt.decode(token, key, algorithms=["RS256"], audience="aibackend")["sub"] == "dave"


def test_openapi_documents_each_routes_access(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    paths = doc["paths"]
    assert paths["/v1/echo/health"]["get"]["security"] == []
    assert paths["/v1/echo/info"]["get"]["security"] == [{"apiKey": []}]
    assert paths["/v1/echo/admin"]["post"]["security"] == [
        {"apiKey": [], "bearer": ["models:admin"]}
    ]
    assert {"401", "403", "429"} <= set(paths["/v1/echo/info"]["get"]["responses"])


def test_keys_and_token_commands(
    catalog: Catalog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIB_STATE_DIR", str(tmp_path / "cli"))
    base = ["--functions", str(catalog.root), "--state-dir", str(tmp_path / "cli")]
    # WHEN a key is created  THEN its id, plan and secret are printed, the secret once
    assert main([*base, "keys", "create", "checkout", "--plan", "trial"]) == 0
    out = capsys.readouterr().out.splitlines()
    key_id = out[0].split()[1]
    assert out[0].startswith(f"created {key_id} (checkout, plan trial)")
    secret = out[1]
    access = LocalAccess(PlatformSettings(state_dir=tmp_path / "cli"), catalog.plans)
    assert access.keys.lookup(secret) is not None
    # AND `list` shows it active, `revoke` revokes it, `list` then says so
    assert main([*base, "keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "trial" in listed and "active" in listed
    assert secret not in listed
    assert main([*base, "keys", "revoke", key_id]) == 0
    assert main([*base, "keys", "list"]) == 0
    assert "revoked 20" in capsys.readouterr().out
    # AND an unknown plan is refused naming the plans there are
    assert main([*base, "keys", "create", "x", "--plan", "gold"]) == 1
    assert "unknown plan 'gold'; plans: dev, slow, trial" in capsys.readouterr().err
    # WHEN `keys dev` runs twice  THEN it prints one development key, on the dev plan
    assert main([*base, "keys", "dev"]) == 0
    assert main([*base, "keys", "dev"]) == 0
    first, second = capsys.readouterr().out.split()
    assert first == second
    dev = access.keys.lookup(first)
    assert dev is not None and (dev.name, dev.plan) == ("development", "dev")
    # WHEN a token is asked for  THEN it carries the scopes and verifies locally
    assert main([*base, "token", "--scopes", "predict:fraud", "models:admin", "--sub", "eve"]) == 0
    token = capsys.readouterr().out.strip()
    claims = access.authorizer.tokens.verify(token)  # type: ignore[union-attr]
    assert (claims.subject, claims.scopes) == ("eve", frozenset({"predict:fraud", "models:admin"}))
    assert main([*base, "token", "--scopes", "Predict Fraud"]) == 2
    access.close()


def test_a_running_runtime_writes_todays_usage_within_a_poll(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tests.support import running_runtime, runtime_client, wait_for

    # GIVEN aib dev's runtime with its watcher, and two requests on the development key
    root = write_functions(tmp_path / "functions", {"echo": (TOML, ECHO)})
    with running_runtime(root, tmp_path / "state", sources=False) as rt:
        rt.watch()
        client = runtime_client(rt)
        assert client.get("/v1/echo/info").status_code == 200
        assert client.get("/v1/echo/info").status_code == 200
        key = rt.access.keys.lookup(rt.access.ensure_dev_key()[0])
        assert key is not None
        # WHEN no more requests come  THEN `aib keys list` (another process) still sees both
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        other = LocalAccess(PlatformSettings(state_dir=tmp_path / "state"), rt.catalog.plans)
        wait_for(lambda: other.keys.usage(day).get(key.key_id) == 2, timeout=10)
        other.close()

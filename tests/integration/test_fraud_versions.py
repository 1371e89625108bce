"""Fraud API versions side by side: v1 stays as it was (plus lifecycle headers), v2 is its
successor, each version has its own OpenAPI document, and oversized bodies never reach them."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from aibackend.errors import ConfigError
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.local.host import FunctionHost
from aibackend.local.runtime import LocalRuntime
from tests.support import FUNCTIONS, running_runtime, runtime_client

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "events" / "payloads"
FRAUD_ENV = (
    "FRAUD_THRESHOLD",
    "FRAUD_REVIEW_THRESHOLD",
    "FRAUD_RISK_MEDIUM_AT",
    "FRAUD_RISK_HIGH_AT",
    "FRAUD_V1_DEPRECATED_AT",
    "FRAUD_V1_SUNSET_AT",
)


@pytest.fixture(scope="module")
def runtime(fraud_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("versions") / "state"
    with running_runtime(FUNCTIONS, state, seed_state=fraud_state) as rt:
        yield rt


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> TestClient:
    return runtime_client(runtime, scopes=("predict:fraud",))


@pytest.fixture
def env(runtime: LocalRuntime) -> dict[str, str]:
    """fraud_score's `[environment]`, as function.toml declares it."""
    return dict(runtime.catalog.get("fraud_score").environment)


@pytest.fixture
def invocations(runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths the fraud_score function is invoked with while a test runs."""
    host = runtime.hosts["fraud_score"]
    calls: list[str] = []
    invoke = host.invoke

    def counting(event: Any, request_id: str | None = None) -> Any:
        calls.append(event["path"])
        return invoke(event, request_id)

    monkeypatch.setattr(host, "invoke", counting)
    return calls


def _payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def _lifecycle_headers(env: dict[str, str]) -> dict[str, str]:
    deprecated = datetime.combine(
        date.fromisoformat(env["FRAUD_V1_DEPRECATED_AT"]), datetime.min.time(), UTC
    )
    return {
        "deprecation": f"@{int(deprecated.timestamp())}",
        "sunset": env["FRAUD_V1_SUNSET_AT"],
        "link": '</v2/fraud/score>; rel="successor-version"',
    }


def _headers_of(r: Any) -> dict[str, str]:
    got = {k: r.headers[k] for k in ("deprecation", "sunset", "link") if k in r.headers}
    if "sunset" in got:  # an HTTP-date: compare the day it names
        got["sunset"] = parsedate_to_datetime(got["sunset"]).date().isoformat()
    return got


def test_v1_answers_as_before_plus_deprecation_sunset_and_successor_link(
    client: TestClient, runtime: LocalRuntime, env: dict[str, str]
) -> None:
    # WHEN the sample transaction is scored on v1, and its model card is read
    r = client.post("/v1/fraud/score", json=_payload("transaction.json"))
    card = client.get("/v1/fraud/model")
    invalid = client.post("/v1/fraud/score", json={"amount": -1})
    # THEN v1's body is exactly its old shape
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"request_id", "model", "threshold", "results"}
    assert body["request_id"] == r.headers["x-amzn-requestid"]
    assert body["model"] == {
        "name": "fraud",
        "version": runtime.hosts["fraud_score"].models["fraud"],
    }
    assert body["threshold"] == float(env["FRAUD_THRESHOLD"])
    [res] = body["results"]
    assert set(res) == {"inference_id", "transaction_id", "score", "decision"}
    assert res["decision"] == ("decline" if res["score"] >= body["threshold"] else "approve")
    assert card.json()["name"] == "fraud"
    # AND every v1 response, errors included, carries the configured lifecycle dates
    assert r.headers["deprecation"].startswith("@")
    assert r.headers["sunset"].endswith(" GMT")
    for resp in (r, card, invalid):
        assert _headers_of(resp) == _lifecycle_headers(env), resp.url


def test_v2_scores_with_bands_and_decisions_consistent_with_the_policy(
    client: TestClient, runtime: LocalRuntime, env: dict[str, str]
) -> None:
    # GIVEN the sample batch and 990 generated transactions, a tenth of them fraud
    batch = {"transactions": _payload("transactions_batch.json")["transactions"]}
    batch["transactions"] += to_records(generate_transactions(990, seed=7, fraud_rate=0.1))
    # WHEN the same batch is scored on v1 and on v2
    old = client.post("/v1/fraud/score", json=batch).json()
    r = client.post("/v2/fraud/score", json=batch)
    # THEN v2 answers its own shape, without v1's lifecycle headers
    assert r.status_code == 200, r.text
    assert _headers_of(r) == {}
    body = r.json()
    assert set(body) == {"request_id", "model", "policy", "results"}
    assert body["request_id"] == r.headers["x-amzn-requestid"]
    assert body["model"] == old["model"]
    policy = body["policy"]
    assert policy == {
        "medium_at": float(env["FRAUD_RISK_MEDIUM_AT"]),
        "high_at": float(env["FRAUD_RISK_HIGH_AT"]),
        "review_at": float(env["FRAUD_REVIEW_THRESHOLD"]),
        "decline_at": float(env["FRAUD_THRESHOLD"]),
    }
    assert len(body["results"]) == len(batch["transactions"])
    actions = set()
    for new, was in zip(body["results"], old["results"], strict=True):
        assert set(new) == {"inference_id", "transaction_id", "risk", "decision"}
        assert new["transaction_id"] == was["transaction_id"]
        score, band = new["risk"]["score"], new["risk"]["band"]
        # same model, same score; and both versions decline the same transactions
        assert score == was["score"]
        assert (new["decision"]["action"] == "decline") == (was["decision"] == "decline")
        # the band and the decision follow from the score and the policy's cut-offs
        expected_band = (
            "high"
            if score >= policy["high_at"]
            else "medium"
            if score >= policy["medium_at"]
            else "low"
        )
        assert band == expected_band
        action, threshold = new["decision"]["action"], new["decision"]["threshold"]
        actions.add(action)
        if action == "decline":
            assert score >= threshold == policy["decline_at"]
        elif action == "review":
            assert policy["decline_at"] > score >= threshold == policy["review_at"]
        else:
            assert score < threshold == policy["review_at"]
    assert {"approve", "decline"} <= actions


def test_invalid_input_on_v2_is_a_problem_naming_each_field(client: TestClient) -> None:
    good = _payload("transaction.json")
    bad = {k: v for k, v in good.items() if k != "card_id"} | {"amount": -5, "currency": "XXX"}
    r = client.post("/v2/fraud/score", json={"transactions": [good, bad]})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert {e["field"] for e in r.json()["errors"]} == {
        "transactions[1].amount",
        "transactions[1].currency",
        "transactions[1].card_id",
    }
    too_many = client.post("/v2/fraud/score", json={"transactions": [good] * 1001})
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "transactions"


def test_each_version_has_its_own_openapi_document(client: TestClient) -> None:
    # WHEN the function's and the gateway's per-version documents are fetched
    own_v1 = client.get("/v1/fraud/openapi.json").json()
    v1 = client.get("/v1/openapi.json").json()
    v2 = client.get("/v2/openapi.json").json()
    every = client.get("/openapi.json").json()
    # THEN each lists only its version's paths; /openapi.json still lists them all
    assert sorted(own_v1["paths"]) == ["/v1/fraud/health", "/v1/fraud/model", "/v1/fraud/score"]
    assert all(p.startswith("/v1/") for p in v1["paths"])
    assert {"/v1/fraud/score", "/v1/fraud/model"} <= set(v1["paths"])
    assert all(p.startswith("/v2/") for p in v2["paths"])
    assert "/v2/fraud/score" in v2["paths"]
    assert {"/v1/fraud/score", "/v2/fraud/score"} <= set(every["paths"])
    assert "Transaction" in every["components"]["schemas"]
    # AND v1's operations are marked deprecated, v2's documents its new response
    assert v1["paths"]["/v1/fraud/score"]["post"]["deprecated"] is True
    assert "deprecated" not in v2["paths"]["/v2/fraud/score"]["post"]
    assert {"ScoreResponseV2", "FraudRisk", "FraudDecision"} <= set(v2["components"]["schemas"])
    assert "ScoreResponse" not in v2["components"]["schemas"]
    assert "risk" in v2["paths"]["/v2/fraud/score"]["post"]["description"]


def _body_of_size(size: int) -> bytes:
    """1,000 generated transactions, pretty-printed, padded with whitespace to `size` bytes."""
    records = to_records(generate_transactions(1000, seed=11))
    body = json.dumps({"transactions": records}, indent=2).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


@pytest.mark.parametrize("path", ["/v1/fraud/score", "/v2/fraud/score"])
def test_bodies_over_the_route_limit_are_413_and_never_reach_the_function(
    client: TestClient, runtime: LocalRuntime, invocations: list[str], path: str
) -> None:
    # GIVEN the score route's declared limit, and 1,000 transactions padded to exactly it
    [route] = [r for r in runtime.catalog.get("fraud_score").routes if r.path == path]
    limit = route.max_body_bytes
    at_limit = _body_of_size(limit)
    json_ct = {"content-type": "application/json"}
    # WHEN one byte more is sent: declared, chunked, or under a Content-Length that lies
    declared = client.post(path, content=at_limit + b" ", headers=json_ct)
    chunked = client.post(
        path, content=iter([at_limit[:1000], at_limit[1000:] + b" "]), headers=json_ct
    )
    lying = client.post(path, content=at_limit + b" ", headers={**json_ct, "content-length": "2"})
    # THEN each is a 413 problem naming the limit and the route, and the function never ran
    for r in (declared, chunked, lying):
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["route"] == f"POST {path}"
        assert problem["max_body_kb"] == route.max_body_kb
        assert f"{limit:,} bytes" in problem["detail"]
    assert invocations == []
    # AND the body exactly at the limit, 1,000 transactions, is scored
    ok = client.post(path, content=at_limit, headers=json_ct)
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["results"]) == 1000
    assert invocations == [path]


def test_risk_policy_and_lifecycle_dates_are_validated_when_the_function_loads(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN fraud_score declared with a review threshold above its decline threshold
    spec = runtime.catalog.get("fraud_score")
    for var in FRAUD_ENV:  # restored after the test: one process shares os.environ
        monkeypatch.setenv(var, spec.environment[var])
    bad = spec.model_copy(
        update={"environment": {**spec.environment, "FRAUD_REVIEW_THRESHOLD": "0.7"}}
    )
    # WHEN it loads, THEN it refuses, naming both variables
    decline_at = float(spec.environment["FRAUD_THRESHOLD"])
    message = f"FRAUD_REVIEW_THRESHOLD (0.7) must be below FRAUD_THRESHOLD ({decline_at})"
    with pytest.raises(ConfigError, match=re.escape(message)):
        FunctionHost(bad).load()
    # AND the dates are checked: ISO, with an offset, the sunset after the deprecation
    versions = importlib.import_module("fraud_score.versions")
    for dates, message in [
        (
            {"FRAUD_V1_DEPRECATED_AT": "1 Dec 2026"},
            "FRAUD_V1_DEPRECATED_AT: '1 Dec 2026' is not an ISO date",
        ),
        ({"FRAUD_V1_DEPRECATED_AT": "2026-12-01T10:00:00"}, "has no UTC offset"),
        (
            {"FRAUD_V1_DEPRECATED_AT": "2026-12-01", "FRAUD_V1_SUNSET_AT": "2026-11-01"},
            "must come after the deprecation",
        ),
        ({"FRAUD_V1_SUNSET_AT": "2027-01-01"}, "needs a deprecation date"),
    ]:
        with pytest.raises(ConfigError, match=message):
            versions.lifecycle_from_env("v1", "/v2/fraud/score", dates)
    assert versions.lifecycle_from_env("v1", "/v2/fraud/score", {}) is None


def test_bands_and_actions_start_at_their_cut_offs(
    runtime: LocalRuntime, env: dict[str, str]
) -> None:
    # GIVEN the policy fraud_score reads from its [environment]
    v2 = importlib.import_module("fraud_score.v2")
    policy = v2.RiskPolicy.from_env(env)
    below = 1e-9
    # THEN each band and each action starts exactly at its cut-off
    assert [policy.band(s) for s in (policy.medium_at - below, policy.medium_at)] == [
        "low",
        "medium",
    ]
    assert [policy.band(s) for s in (policy.high_at - below, policy.high_at)] == ["medium", "high"]
    decisions = [
        policy.decide(s).model_dump()
        for s in (policy.review_at - below, policy.review_at, policy.decline_at)
    ]
    assert decisions == [
        {"action": "approve", "threshold": policy.review_at},
        {"action": "review", "threshold": policy.review_at},
        {"action": "decline", "threshold": policy.decline_at},
    ]
    # AND cut-offs out of order or out of (0, 1) are refused, naming the variable
    with pytest.raises(ConfigError, match=re.escape("FRAUD_RISK_MEDIUM_AT (0.6) must be below")):
        v2.RiskPolicy.from_env({**env, "FRAUD_RISK_MEDIUM_AT": "0.6"})
    with pytest.raises(ConfigError, match="FRAUD_RISK_HIGH_AT: Input should be less than 1"):
        v2.RiskPolicy.from_env({**env, "FRAUD_RISK_HIGH_AT": "1.2"})

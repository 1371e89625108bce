"""Routing by weight: deterministic per request id, `percent` of the requests on average."""

from __future__ import annotations

import json
import math
import os
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from aibackend.capture import ENV as CAPTURE_ENV
from aibackend.capture import Capture
from aibackend.catalog import FunctionSpec
from aibackend.local.canary import (
    Recorder,
    Route,
    RoutedHost,
    ShadowQueue,
    bucket,
    is_error,
    pinned,
    scores_of,
)
from aibackend.ports import Canary
from aibackend.settings import model_version_env


class StubHost:
    """A function host answering like the fraud function: one score, from its version."""

    enforces_timeout = False

    def __init__(self, version: int, score: float) -> None:
        self.spec = FunctionSpec.model_validate(
            {"name": "svc", "directory": "/tmp/svc", "handler": "handler.handler"}
        )
        self.models: dict[str, int | None] = {"fraud": version}
        self.init_ms: float | None = 1.0
        self.loaded_at: float | None = 0.0
        self.version, self.score = version, score
        self.seen: list[str | None] = []
        self.stopped = False

    def load(self) -> None: ...

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        self.seen.append(request_id)
        body = {"model": {"version": self.version}, "results": [{"score": self.score}]}
        return {"statusCode": 200, "headers": {}, "body": json.dumps(body)}

    def stop(self) -> None:
        self.stopped = True


def _canary(mode: str = "canary", percent: int = 10) -> Canary:
    return Canary(
        id="c1",
        candidate=2,
        champion=1,
        mode=mode,
        percent=percent,
        started_at=datetime.now(UTC),
        window_s=60,
        actor="test",
    )


def test_buckets_are_stable_and_uniform() -> None:
    assert bucket("req-1") == bucket("req-1")
    values = [bucket(f"req-{i}") for i in range(10_000)]
    assert all(0 <= v < 100 for v in values)
    below = sum(v < 10 for v in values)
    assert abs(below - 1000) < 4 * math.sqrt(10_000 * 0.1 * 0.9)


def test_a_canary_sends_its_share_of_the_requests_to_the_candidate() -> None:
    # GIVEN a function split 20% to the candidate
    champion, candidate, recorder = StubHost(1, 0.1), StubHost(2, 0.9), Recorder()
    host = RoutedHost(champion)
    host.route = Route(_canary(percent=20), candidate, recorder)
    # WHEN 2,000 requests with distinct ids arrive
    answers = [host.invoke({}, f"rid-{i}") for i in range(2000)]
    # THEN the candidate answered within the binomial 4-sigma bounds of 20%
    n = len(candidate.seen)
    assert abs(n - 400) < 4 * math.sqrt(2000 * 0.2 * 0.8), n
    assert len(champion.seen) + n == 2000
    assert sum(json.loads(a["body"])["model"]["version"] == 2 for a in answers) == n
    # AND the same ids take the same way again
    again = [host.invoke({}, f"rid-{i}") for i in range(2000)]
    assert again == answers
    # AND each answer was recorded for its version, with its score
    observations = recorder.drain()
    assert sum(o.version == 2 for o in observations) == 2 * n
    assert {tuple(scores_of(o.result)) for o in observations if o.version == 2} == {(0.9,)}


def test_the_request_id_comes_from_the_event_when_not_given() -> None:
    champion, candidate = StubHost(1, 0.1), StubHost(2, 0.9)
    route = Route(_canary(percent=50), candidate, Recorder())
    event = {"requestContext": {"requestId": "rid-7"}}
    route.invoke(champion, event, None)
    assert (champion.seen + candidate.seen) == ["rid-7"]


def test_shadow_answers_come_from_the_champion_and_the_candidate_still_scores() -> None:
    # GIVEN a shadow of 50%
    champion, candidate, recorder = StubHost(1, 0.1), StubHost(2, 0.9), Recorder()
    route = Route(_canary("shadow", percent=50), candidate, recorder)
    # WHEN 200 requests arrive
    answers = [route.invoke(champion, {}, f"rid-{i}") for i in range(200)]
    assert route.shadow is not None
    route.shadow.join()
    # THEN every answer is the champion's, and the candidate saw about half of the requests
    assert {json.loads(a["body"])["model"]["version"] for a in answers} == {1}
    assert len(champion.seen) == 200
    assert abs(len(candidate.seen) - 100) < 4 * math.sqrt(200 * 0.25)
    assert set(candidate.seen) <= set(champion.seen)
    # AND its scores were recorded for v2
    shadowed = [o for o in recorder.drain() if o.version == 2]
    assert len(shadowed) == len(candidate.seen) and scores_of(shadowed[0].result) == [0.9]
    route.stop()
    assert candidate.stopped


def test_a_full_shadow_queue_drops_and_counts_instead_of_waiting() -> None:
    # GIVEN a shadow queue of 2 whose sender is blocked
    release = threading.Event()
    sent: list[str] = []

    def send(event: Any, rid: str) -> None:
        release.wait(5)
        sent.append(rid)

    shadow = ShadowQueue(send, size=2)
    # WHEN 10 requests are offered at once
    for i in range(10):
        shadow.offer({}, f"rid-{i}")
    # THEN the ones that did not fit are dropped and counted, never blocking the caller
    release.set()
    shadow.join()
    assert shadow.dropped == 10 - len(sent) and 2 <= len(sent) <= 3
    shadow.stop()


def test_errors_are_raised_invocations_and_5xx_answers_not_4xx() -> None:
    from aibackend.local.canary import Observation

    def obs(result: Any, raised: bool = False) -> Observation:
        return Observation(2, 1.0, result, raised)

    assert is_error(obs(None, raised=True))
    assert is_error(obs({"statusCode": 502, "body": ""}))
    assert not is_error(obs({"statusCode": 422, "body": ""}))
    assert scores_of({"statusCode": 200, "body": "not json"}) == []
    assert scores_of({"statusCode": 200, "body": '{"results": [{"label": "x"}]}'}) == []


def test_without_a_route_the_host_passes_straight_through() -> None:
    champion = StubHost(1, 0.1)
    host = RoutedHost(champion)
    host.invoke({}, "rid-1")
    assert champion.seen == ["rid-1"] and host.models == {"fraud": 1}


def test_a_shadow_candidate_loads_without_capture_and_the_environment_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN capture declared for fraud and production pinned at v1
    monkeypatch.setenv(CAPTURE_ENV, '{"fraud":{"rate":1.0}}')
    monkeypatch.setenv(model_version_env("fraud"), "1")
    # WHEN a shadow candidate (v2) loads: nobody receives its answers
    with pinned("fraud", 2, capture=False):
        # THEN it sees its own pin and no capture settings (it would count twice in monitoring)
        assert os.environ[model_version_env("fraud")] == "2"
        assert CAPTURE_ENV not in os.environ
        assert not Capture.from_env("fraud").enabled
    # AND a canary candidate (it answers real requests) keeps capturing
    with pinned("fraud", 2):
        assert Capture.from_env("fraud").enabled
    # AND afterwards the runtime's own environment is as it was
    assert os.environ[model_version_env("fraud")] == "1"
    assert os.environ[CAPTURE_ENV] == '{"fraud":{"rate":1.0}}'

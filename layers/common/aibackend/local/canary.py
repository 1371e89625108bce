"""Canaries under `aib dev`: the runtime routes by weight, and judges, while one is active.

A canary is registry state (`aib models promote NAME VERSION --canary`). On each watcher tick
`CanaryController.tick` reads every model's canary (one registry read per model per tick,
never per request) and:

- when one starts, loads a second host of every function that serves the model and has HTTP
  routes, with the candidate version pinned the way CDK pins it on AWS (the version variable of
  `settings.model_version_env`, set while the host loads), and puts a `Route` on the function's
  `RoutedHost`;
- while it runs, judges the per-version observations (`aibackend.canary.judge`) and writes a
  status file `canary/<model>.json` under the state folder (`aib models canary NAME`);
- ends it through the registry (promote, or roll back with the breach) as soon as the verdict
  is final, and takes the second hosts down; a candidate that fails to load is rolled back
  at once.

Routing is decided per request id (a hash: the same id always goes the same way, so tests are
reproducible): in `canary` mode `percent` of the requests are answered by the candidate; in
`shadow` mode the champion answers every request and that share is also sent to the candidate
off the request path (a bounded queue that drops, and counts the drops, when full), its answer
discarded. Observations are collected by the route itself rather than from inference
captures: they do not depend on a model's capture settings or sampling rate, arrive without
the capture queue's delay, and cover shadow answers too. Each is one `deque.append` on the
request path; parsing the answers for scores (`results[].score` of the response envelope)
happens on the tick.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aibackend.adapters.local import atomic_write
from aibackend.canary import CanaryVerdict, VersionStats, judge
from aibackend.capture import ENV as CAPTURE_ENV
from aibackend.catalog import FunctionSpec
from aibackend.local.host import Host
from aibackend.ports import Canary, CanaryCheck, ModelRegistry
from aibackend.settings import model_version_env

log = logging.getLogger("aib.canary")

#: Observations waiting for the next tick; past this many (a tick late under heavy load),
#: new ones are dropped and counted rather than growing memory.
MAX_PENDING = 100_000
#: Shadow requests waiting for the candidate; past this many they are dropped and counted.
SHADOW_QUEUE = 256
_SPACE = 2**64
_fallback_ids = itertools.count()


def bucket(request_id: str) -> float:
    """Where a request id falls in [0, 100): the same id always falls in the same place."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * 100 / _SPACE


def _request_id(event: Any, request_id: str | None) -> str:
    if request_id:
        return request_id
    if isinstance(event, dict):
        rid = event.get("requestContext", {}).get("requestId")
        if isinstance(rid, str) and rid:
            return rid
    return f"no-request-id-{next(_fallback_ids)}"


@dataclass(frozen=True)
class Observation:
    version: int
    #: None for a host's first answer after loading: its warm-up (first onnxruntime run,
    #: first request through the app), not a latency sample.
    latency_ms: float | None
    result: Any
    raised: bool


class Recorder:
    """Observations of both versions, appended on the request path, drained on the tick."""

    def __init__(self) -> None:
        self.pending: deque[Observation] = deque()
        self.dropped = 0

    def record(self, obs: Observation) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append(obs)

    def drain(self) -> list[Observation]:
        out = []
        while True:
            try:
                out.append(self.pending.popleft())
            except IndexError:
                return out


def is_error(obs: Observation) -> bool:
    """Raised, or answered 5xx (a client's 4xx is not the version's fault)."""
    if obs.raised:
        return True
    status = obs.result.get("statusCode") if isinstance(obs.result, dict) else None
    return not isinstance(status, int) or status >= 500


def scores_of(result: Any) -> list[float]:
    """`results[].score` of a response envelope (none when the answer has no such field)."""
    if not isinstance(result, dict) or not isinstance(result.get("body"), str):
        return []
    if result.get("isBase64Encoded"):
        return []
    try:
        body = json.loads(result["body"])
    except ValueError:
        return []
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        return []
    return [
        float(r["score"])
        for r in results
        if isinstance(r, dict) and isinstance(r.get("score"), int | float)
    ]


class ShadowQueue:
    """Requests the candidate scores beside the champion, off the request path."""

    def __init__(self, send: Callable[[Any, str], None], size: int = SHADOW_QUEUE) -> None:
        self._send = send
        self._queue: queue.Queue[tuple[Any, str] | None] = queue.Queue(maxsize=size)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="aib-canary-shadow", daemon=True)
        self._thread.start()

    def offer(self, event: Any, request_id: str) -> None:
        try:
            self._queue.put_nowait((event, request_id))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                # A failure is recorded as the candidate's error; the answer is discarded.
                with contextlib.suppress(Exception):
                    self._send(*item)
            finally:
                self._queue.task_done()

    def join(self) -> None:
        """Wait until every queued request was sent (tests)."""
        self._queue.join()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1)


class Route:
    """One function's traffic split between its champion host and a candidate host."""

    def __init__(self, canary: Canary, candidate: Host, recorder: Recorder) -> None:
        self.canary = canary
        self.candidate = candidate
        self.recorder = recorder
        self.shadow = (
            ShadowQueue(lambda e, rid: self._timed(candidate, canary.candidate, e, rid))
            if canary.mode == "shadow"
            else None
        )
        #: The candidate host was just loaded: its first answer is a warm-up.
        self._cold = True

    def invoke(self, champion: Host, event: Any, request_id: str | None) -> Any:
        rid = _request_id(event, request_id)
        chosen = bucket(rid) < self.canary.percent
        if self.shadow is None:
            if chosen:
                return self._timed(self.candidate, self.canary.candidate, event, rid)
            return self._timed(champion, self.canary.champion, event, rid)
        result = self._timed(champion, self.canary.champion, event, rid)
        if chosen:
            self.shadow.offer(event, rid)
        return result

    def _timed(self, host: Host, version: int, event: Any, rid: str) -> Any:
        cold = host is self.candidate and self._cold
        self._cold = self._cold and not cold
        t0 = time.perf_counter()
        try:
            result = host.invoke(event, rid)
        except BaseException:
            self.recorder.record(Observation(version, _ms(t0, cold), None, raised=True))
            raise
        self.recorder.record(Observation(version, _ms(t0, cold), result, raised=False))
        return result

    def stop(self) -> None:
        if self.shadow is not None:
            self.shadow.stop()
        self.candidate.stop()


def _ms(t0: float, cold: bool) -> float | None:
    return None if cold else (time.perf_counter() - t0) * 1000


class RoutedHost:
    """A function's host that a canary can split: without one, a plain pass-through."""

    def __init__(self, inner: Host) -> None:
        self.inner = inner
        self.spec: FunctionSpec = inner.spec
        self.enforces_timeout: bool = inner.enforces_timeout
        self.route: Route | None = None

    @property
    def models(self) -> dict[str, int | None]:
        return self.inner.models

    @models.setter
    def models(self, value: dict[str, int | None]) -> None:
        self.inner.models = value

    @property
    def init_ms(self) -> float | None:
        return self.inner.init_ms

    @init_ms.setter
    def init_ms(self, value: float | None) -> None:
        self.inner.init_ms = value

    @property
    def loaded_at(self) -> float | None:
        return self.inner.loaded_at

    @loaded_at.setter
    def loaded_at(self, value: float | None) -> None:
        self.inner.loaded_at = value

    @property
    def load_error(self) -> str | None:
        return self.inner.load_error

    @load_error.setter
    def load_error(self, value: str | None) -> None:
        self.inner.load_error = value

    def load(self) -> None:
        self.inner.load()

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        route = self.route
        if route is None:
            return self.inner.invoke(event, request_id)
        return route.invoke(self.inner, event, request_id)

    def stop(self) -> None:
        route, self.route = self.route, None
        if route is not None:
            route.stop()
        self.inner.stop()


def routable(host: Host) -> Host:
    """`host`, splittable by a canary if its function serves a model over HTTP."""
    return RoutedHost(host) if host.spec.models and host.spec.routes else host


@contextlib.contextmanager
def pinned(model: str, version: int, *, capture: bool = True) -> Iterator[None]:
    """The model's version variable set to `version` (what CDK writes on AWS), then restored.

    `capture=False` also hides the capture settings (`AIB_CAPTURE`) while the host loads, so a
    shadow candidate, whose answers nobody receives, captures nothing: its predictions would
    otherwise count twice in the model's monitoring windows and ledger."""
    saved = {v: os.environ.get(v) for v in (model_version_env(model), CAPTURE_ENV)}
    os.environ[model_version_env(model)] = str(version)
    if not capture:
        os.environ.pop(CAPTURE_ENV, None)
    try:
        yield
    finally:
        for var, before in saved.items():
            if before is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = before


@dataclass
class Active:
    """A canary this runtime is serving."""

    canary: Canary
    routes: dict[str, Route]
    recorder: Recorder
    champion: VersionStats
    candidate: VersionStats


class CanaryController:
    """Starts, observes, judges and ends the registry's canaries for this runtime."""

    def __init__(
        self,
        registry: ModelRegistry,
        hosts: Callable[[], Mapping[str, Host]],
        make_host: Callable[[FunctionSpec], Host],
        models: Callable[[], Sequence[str]],
        status_dir: Path,
        *,
        tick_s: float = 2.0,
        actor: str = "aib-dev-canary",
    ) -> None:
        """`tick_s`: how often the runtime calls `tick` (the interim looks at a window)."""
        self.registry = registry
        self._hosts = hosts
        self._make_host = make_host
        #: The models of the runtime's catalog (functions added while it runs included).
        self.models = models
        self.status_dir = status_dir
        self.actor = actor
        self.tick_s = tick_s
        self.active: dict[str, Active] = {}
        self._lock = threading.Lock()

    def tick(self, now: datetime | None = None) -> dict[str, CanaryVerdict]:
        """One look at every model's canary; returns the verdicts judged."""
        verdicts: dict[str, CanaryVerdict] = {}
        with self._lock:
            for model in self.models():
                verdict = self._tick(model, now or datetime.now(UTC))
                if verdict is not None:
                    verdicts[model] = verdict
        return verdicts

    def _tick(self, model: str, now: datetime) -> CanaryVerdict | None:
        canary = self.registry.canary(model)
        active = self.active.get(model)
        if active is not None and (canary is None or canary.id != active.canary.id):
            self._take_down(model)  # ended elsewhere (`aib models canary --abort`)
            active = None
        if canary is None:
            return None
        if active is None:
            active = self._start(model, canary)
            if active is None:
                return None
        return self._judge(model, active, now)

    def _routed(self, model: str) -> list[RoutedHost]:
        return [
            h
            for h in self._hosts().values()
            if isinstance(h, RoutedHost) and model in h.spec.models
        ]

    def _start(self, model: str, canary: Canary) -> Active | None:
        recorder = Recorder()
        routes: dict[str, Route] = {}
        for host in self._routed(model):
            if host.route is not None:
                log.error(
                    "function %s already splits traffic for a canary of v%s: the canary of "
                    "%s v%s leaves it alone",
                    host.spec.name,
                    host.route.canary.candidate,
                    model,
                    canary.candidate,
                )
                continue
            candidate = self._make_host(host.spec)
            try:
                with pinned(model, canary.candidate, capture=canary.mode != "shadow"):
                    candidate.load()
            except Exception as e:
                for route in routes.values():
                    route.stop()
                candidate.stop()
                self._end(
                    model,
                    canary,
                    passed=False,
                    reason=f"v{canary.candidate} failed to load in {host.spec.name}: "
                    f"{type(e).__name__}: {e}",
                    evidence=(),
                )
                return None
            routes[host.spec.name] = Route(canary, candidate, recorder)
        for name, route in routes.items():
            host = next(h for h in self._routed(model) if h.spec.name == name)
            host.route = route
        log.info(
            "%s of %s v%s (%d%%) beside v%s in %s",
            canary.mode,
            model,
            canary.candidate,
            canary.percent,
            canary.champion,
            ", ".join(routes) or "no function (none serves it over HTTP)",
        )
        active = Active(
            canary, routes, recorder, VersionStats(canary.champion), VersionStats(canary.candidate)
        )
        self.active[model] = active
        return active

    def _judge(self, model: str, active: Active, now: datetime) -> CanaryVerdict:
        for obs in active.recorder.drain():
            stats = active.candidate if obs.version == active.canary.candidate else active.champion
            stats.add(obs.latency_ms, error=is_error(obs), scores=scores_of(obs.result))
        looks = max(1, math.ceil(active.canary.window_s / self.tick_s))
        verdict = judge(active.canary, active.champion, active.candidate, now, looks=looks)
        self._write_status(model, active, verdict)
        if verdict.outcome != "continue":
            self._take_down(model)
            self._end(
                model,
                active.canary,
                passed=verdict.outcome == "promote",
                reason=verdict.reason,
                evidence=verdict.checks,
            )
        return verdict

    def _end(
        self,
        model: str,
        canary: Canary,
        *,
        passed: bool,
        reason: str,
        evidence: Sequence[CanaryCheck],
    ) -> None:
        try:
            self.registry.end_canary(
                model, passed=passed, actor=self.actor, reason=reason, evidence=evidence
            )
        except Exception:
            log.exception("ending the canary of %s v%s failed", model, canary.candidate)
            return
        outcome = "promoted" if passed else "rolled back"
        log.warning("canary of %s v%s %s: %s", model, canary.candidate, outcome, reason)

    def _take_down(self, model: str) -> None:
        active = self.active.pop(model, None)
        if active is None:
            return
        for host in self._routed(model):
            if host.route is not None and host.route.canary.id == active.canary.id:
                host.route = None
        for route in active.routes.values():
            route.stop()

    def _write_status(self, model: str, active: Active, verdict: CanaryVerdict) -> None:
        shadow_dropped = sum(
            r.shadow.dropped for r in active.routes.values() if r.shadow is not None
        )
        status = {
            "model": model,
            "canary": active.canary.model_dump(mode="json"),
            "updated_at": datetime.now(UTC).isoformat(),
            "functions": sorted(active.routes),
            "champion": active.champion.summary(),
            "candidate": active.candidate.summary(),
            "dropped": {"observations": active.recorder.dropped, "shadow": shadow_dropped},
            "verdict": verdict.model_dump(mode="json"),
        }
        atomic_write(status_path(self.status_dir, model), json.dumps(status, indent=2).encode())

    def stop(self) -> None:
        with self._lock:
            for model in list(self.active):
                self._take_down(model)


def status_path(status_dir: Path, model: str) -> Path:
    """The status file the runtime writes for a model's canary on every tick."""
    return status_dir / f"{model}.json"


def read_status(status_dir: Path, model: str) -> dict[str, Any] | None:
    path = status_path(status_dir, model)
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data

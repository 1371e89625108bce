"""`aib models promote NAME VERSION --canary|--shadow` and `aib models canary NAME`.

Starting a canary records it in the registry (`canary_started`); the runtime that serves the
model (`aib dev`) routes and judges it, and ends it (`canary_passed` + `promoted`, or
`rolled_back` with the breach). Every promotion, direct or not, publishes the registry's
`Model Version Approved` event, which the AWS deployer turns into a CodeDeploy rollout.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aibackend.canary import load_settings, parse_window
from aibackend.contracts.registry import SOURCE, DeploymentMode, ModelVersionApprovedV1
from aibackend.local.canary import read_status
from aibackend.ports import CanaryCheck, EventBus, ModelRegistry, PutEvent, RegistryEvent


def approval_event(
    name: str,
    version: int,
    previous: int | None,
    *,
    mode: DeploymentMode,
    actor: str,
    reason: str,
    percent: int = 10,
    window_s: float = 300.0,
) -> PutEvent:
    """The `Model Version Approved` v1 event of a promotion (`mode` direct, canary or shadow)."""
    detail = ModelVersionApprovedV1(
        model=name,
        model_version=version,
        previous_version=previous,
        mode=mode,
        percent=percent,
        window_minutes=max(1, math.ceil(window_s / 60)),
        actor=actor,
        reason=reason,
    )
    dumped = detail.model_dump(mode="json")
    return PutEvent(
        source=SOURCE,
        detail_type=detail.detail_type,
        detail={k: v for k, v in dumped.items() if v is not None},
    )


def publish(bus: EventBus, event: PutEvent) -> bool:
    """Publish the approval; False (and why, on stderr) when the bus refused it."""
    try:
        result = bus.put_events([event])
    except Exception as e:  # the registry change stands; say what did not happen
        print(
            f"warning: {event.detail_type} not published: {type(e).__name__}: {e}", file=sys.stderr
        )
        return False
    for _, code, message in result.failures:
        print(f"warning: {event.detail_type} not published: {code} {message}", file=sys.stderr)
    return result.failed_count == 0


def start(
    reg: ModelRegistry,
    name: str,
    version: int,
    *,
    functions_dir: Path,
    shadow: bool,
    percent: int | None,
    window: str | None,
    actor: str,
    reason: str,
    force: bool,
) -> PutEvent:
    """Record the canary; returns the approval event to publish."""
    settings = load_settings(name, functions_dir)
    window_s = settings.window_s if window is None else parse_window(window)
    pct = settings.percent if percent is None else percent
    canary = reg.start_canary(
        name,
        version,
        actor=actor,
        reason=reason,
        mode="shadow" if shadow else "canary",
        percent=pct,
        window_s=window_s,
        criteria=settings.criteria,
        force=force,
    )
    share = "scores" if shadow else "answers"
    print(
        f"{name}: {canary.mode} of v{canary.candidate} started beside v{canary.champion}: the "
        f"candidate {share} {canary.percent}% of the requests for {window_s:g} s; `aib dev` "
        f"judges it and promotes or rolls back (watch with `aib models canary {name}`)"
    )
    return approval_event(
        name,
        version,
        canary.champion,
        mode=canary.mode,
        actor=actor,
        reason=reason,
        percent=canary.percent,
        window_s=window_s,
    )


def show_status(reg: ModelRegistry, name: str, status_dir: Path) -> int:
    """The active canary: mode, share, time left, per-version counts, the current verdict."""
    canary = reg.canary(name)
    if canary is None:
        last = [e for e in reg.history(name) if e.action in ("canary_passed", "rolled_back")]
        print(f"{name}: no canary running")
        if last:
            print("last ended: " + trail_line(last[-1]))
        return 0
    elapsed = (datetime.now(UTC) - canary.started_at).total_seconds()
    print(
        f"{name}: {canary.mode} of v{canary.candidate} beside v{canary.champion}, "
        f"{canary.percent}%, {elapsed:.0f} of {canary.window_s:g} s, started by {canary.actor}: "
        f"{canary.reason}"
    )
    status = read_status(status_dir, name)
    if status is None or status["canary"]["id"] != canary.id:
        print("no observations yet: is `aib dev` running? (it routes and judges the canary)")
        return 0
    for side in ("champion", "candidate"):
        s = status[side]
        p99 = "-" if s["p99_ms"] is None else f"{s['p99_ms']:.1f} ms"
        print(
            f"  {side:9} v{s['version']}: {s['requests']} requests, {s['errors']} errors "
            f"({s['error_rate']:.2%}), p99 {p99}, {s['scores']} scores"
        )
    dropped = status["dropped"]
    if dropped["observations"] or dropped["shadow"]:
        print(f"  dropped: {dropped['observations']} observations, {dropped['shadow']} shadow")
    verdict = status["verdict"]
    print(f"  as of {status['updated_at']}: {verdict['outcome']} ({verdict['reason']})")
    for line in describe_checks(CanaryCheck.model_validate(c) for c in verdict["checks"]):
        print(f"    {line}")
    return 0


def abort(reg: ModelRegistry, name: str, *, actor: str, reason: str) -> int:
    mv = reg.end_canary(name, passed=False, actor=actor, reason=f"aborted: {reason}")
    print(f"{name}: canary aborted, v{mv.version} stays production")
    return 0


def describe_checks(checks: Any) -> list[str]:
    """One line per canary check: PASS / FAIL / ... (observing), value against limit, detail."""
    lines = []
    for c in checks:
        mark = {True: "PASS", False: "FAIL", None: "... "}[c.passed]
        measured = "" if c.value is None else f" {c.value:.4g} (limit {c.threshold:g})"
        lines.append(f"{mark} {c.name}{measured}: {c.detail}")
    return lines


def trail_line(e: RegistryEvent) -> str:
    stages = f" {e.from_stage} -> {e.to_stage}" if e.from_stage else ""
    stages = stages or (f" as {e.to_stage}" if e.to_stage else "")
    return f"{e.at:%Y-%m-%d %H:%M:%S}  v{e.version}  {e.action}{stages}  by {e.actor}: {e.reason}"


def trail_evidence(e: RegistryEvent) -> Sequence[str]:
    """The checks a canary event records, indented under its trail line."""
    return [f"    {line}" for line in describe_checks(e.evidence)]

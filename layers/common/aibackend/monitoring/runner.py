"""Run the monitor over models and windows with the platform's adapters: what the scheduled
`monitor_models` function and `aib monitor run` both call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime

from aibackend.adapters import event_bus, model_registry, object_store
from aibackend.capture import BUCKET
from aibackend.monitoring.config import MonitorSettings, settings_for, settings_from_env
from aibackend.monitoring.ledger import open_ledger
from aibackend.monitoring.profiles import WindowKey
from aibackend.monitoring.service import (
    MonitorReport,
    Ports,
    monitor_window,
    parse_window,
    scheduled_windows,
)
from aibackend.settings import (
    PlatformSettings,
    model_version_env,
    physical_name,
    platform_settings,
)


def platform_ports(settings: PlatformSettings | None = None) -> Ports:
    s = settings or platform_settings()
    return Ports(
        store=object_store(physical_name("bucket", BUCKET), s),
        models=object_store(s.model_bucket, s),
        registry=model_registry(s),
        bus=event_bus(s),
    )


def windows_of(windows: Sequence[str] | None, at: datetime) -> list[WindowKey]:
    """The named windows (`hour`, `day:2026-11-27`, ...), or the scheduled ones for `at`."""
    if not windows:
        return scheduled_windows(at)
    return [parse_window(w, at) for w in windows]


def run_monitor(
    *,
    models: Sequence[str] | None,
    windows: Sequence[str] | None,
    at: datetime,
    cause: str,
    monitored: dict[str, MonitorSettings] | None = None,
    settings: PlatformSettings | None = None,
) -> list[MonitorReport]:
    """Judge each window of each monitored model (all of them unless `models` names some)."""
    known = settings_from_env() if monitored is None else monitored
    chosen = list(models) if models else sorted(known)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise ValueError(
            f"model(s) {', '.join(unknown)} are not monitored; monitored: "
            f"{', '.join(sorted(known)) or 'none'} (functions/monitoring.toml [capture.<model>])"
        )
    ports = platform_ports(settings)
    keys = windows_of(windows, at)
    now = datetime.now(UTC)
    return [
        monitor_window(
            ports,
            open_ledger(model, settings),
            model,
            key,
            settings_for(model, known),
            cause=cause,
            now=now,
            pinned=_pinned(model),
        )
        for model in chosen
        for key in keys
    ]


def _pinned(model: str) -> int | None:
    """The version deployed with the monitor function (`models = [...]`), if pinned."""
    raw = os.environ.get(model_version_env(model), "")
    return int(raw) if raw.isdigit() else None

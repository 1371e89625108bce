"""Rolling per-device window features: the one definition training and serving share.

A reading's window is its device's last `WINDOW_READINGS` readings (itself included) taken
within `WINDOW_SPAN_S` seconds before it, by reading time: late or repeated readings give the
same window as in-order ones. From it, the model's features, each scaled by the device
type's typical spread (`scale`) or noise so that one model fits every device of the type:

| feature | meaning |
|---|---|
| `level` | (value - type nominal) / scale: how far the value is from what the type reads |
| `jump` | (value - window mean) / noise: how far it is from the device's recent level |
| `spread` | window std / noise: too small (stuck) or too large (erratic) |
| `slope` | least-squares slope (units per minute) / scale: a drift |
| `baseline` | (window mean - nominal) / scale: the device's recent level |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aibackend.iot.devices import DEVICE_TYPES

WINDOW_READINGS = 20
WINDOW_SPAN_S = 600.0
FEATURES: tuple[str, ...] = ("level", "jump", "spread", "slope", "baseline")


@dataclass(frozen=True)
class WindowStats:
    readings: int
    span_s: float
    mean: float
    std: float
    slope_per_min: float


def window_stats(times_s: Sequence[float], values: Sequence[float]) -> WindowStats:
    """Statistics of one window (times ascending, the scored reading last)."""
    if not times_s or len(times_s) != len(values):
        raise ValueError("a window needs at least one reading, with one time per value")
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    dt = t - t.mean()
    denom = float(np.dot(dt, dt))
    slope_per_s = float(np.dot(dt, v - v.mean()) / denom) if denom > 0 else 0.0
    return WindowStats(
        readings=len(v),
        span_s=float(t[-1] - t[0]),
        mean=float(v.mean()),
        std=float(v.std()),
        slope_per_min=slope_per_s * 60.0,
    )


def features(device_type: str, value: float, stats: WindowStats) -> np.ndarray:
    """The model's input row (float32, `FEATURES` order) for a reading and its window."""
    t = DEVICE_TYPES[device_type]
    row = [
        (value - t.nominal) / t.scale,
        (value - stats.mean) / t.noise,
        stats.std / t.noise,
        stats.slope_per_min / t.scale,
        (stats.mean - t.nominal) / t.scale,
    ]
    return np.asarray([row], dtype=np.float32)


def select(history: Sequence[tuple[float, float]], at_s: float) -> tuple[list[float], list[float]]:
    """The window of the reading at `at_s` from a device's (time, value) history: the last
    `WINDOW_READINGS` with `at_s - WINDOW_SPAN_S < time <= at_s`, ascending."""
    inside = sorted(p for p in history if at_s - WINDOW_SPAN_S < p[0] <= at_s)
    last = inside[-WINDOW_READINGS:]
    return [p[0] for p in last], [p[1] for p in last]


def series_features(device_type: str, times_s: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Features of every reading of one device's series (times ascending), as served."""
    history = list(zip(times_s.tolist(), values.tolist(), strict=True))
    rows = []
    for i, (at, value) in enumerate(history):
        ts, vs = select(history[max(0, i - WINDOW_READINGS + 1) : i + 1], at)
        rows.append(features(device_type, value, window_stats(ts, vs))[0])
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(FEATURES))

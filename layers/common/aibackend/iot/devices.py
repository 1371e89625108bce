"""Device types, and a generator of their readings: normal behaviour and injected anomalies.

Training (`aibackend.training.iot`) fits each type's model on normal readings only; the
simulator (`aib simulate --scenario iot`) streams readings with occasional anomalies.

A device of type T reads `nominal + offset + amplitude * sin(2 pi t / period) + noise`, with
a per-device offset of up to `scale`, noise of sd `noise`. Anomalies, each lasting a few
readings: `spike` (a jump of 6-12 noise sds), `stuck` (the same value repeated), `drift`
(a ramp of 1 `scale` per minute).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Anomaly = Literal["spike", "stuck", "drift"]
ANOMALIES: tuple[Anomaly, ...] = ("spike", "stuck", "drift")


@dataclass(frozen=True)
class DeviceType:
    name: str
    unit: str
    nominal: float
    #: Typical spread between devices and of the daily cycle; window features are divided by it.
    scale: float
    noise: float
    period_s: float


DEVICE_TYPES: dict[str, DeviceType] = {
    t.name: t
    for t in (
        DeviceType("thermostat", "celsius", nominal=21.0, scale=1.5, noise=0.15, period_s=86_400),
        DeviceType("vibration", "mm/s", nominal=4.0, scale=0.8, noise=0.25, period_s=3_600),
        DeviceType("pressure", "kPa", nominal=300.0, scale=6.0, noise=0.8, period_s=43_200),
    )
}


def device_id(device_type: str, index: int) -> str:
    return f"{device_type}-{index:04d}"


@dataclass
class Device:
    """One simulated device: its offset, phase and current anomaly (if any)."""

    id: str
    type: DeviceType
    offset: float
    phase: float
    anomaly: Anomaly | None = None
    anomaly_left: int = 0
    anomaly_base: float = 0.0
    anomaly_start_s: float = 0.0

    def normal(self, t_s: float, rng: np.random.Generator) -> float:
        cycle = math.sin(2 * math.pi * t_s / self.type.period_s + self.phase)
        level = self.type.nominal + self.offset + 0.5 * self.type.scale * cycle
        return level + float(rng.normal(0.0, self.type.noise))

    def start_anomaly(self, kind: Anomaly, t_s: float, readings: int, value: float) -> None:
        self.anomaly, self.anomaly_left = kind, readings
        self.anomaly_base, self.anomaly_start_s = value, t_s

    def read(self, t_s: float, rng: np.random.Generator) -> float:
        """The value at `t_s` (seconds since the fleet started)."""
        value = self.normal(t_s, rng)
        if self.anomaly is None:
            return value
        self.anomaly_left -= 1
        kind = self.anomaly
        if self.anomaly_left <= 0:
            self.anomaly = None
        if kind == "stuck":
            return self.anomaly_base
        if kind == "drift":
            return value + self.type.scale * (t_s - self.anomaly_start_s) / 60.0
        jump = float(rng.uniform(6, 12)) * self.type.noise
        return value + jump if rng.random() < 0.5 else value - jump


def fleet(devices_per_type: int, rng: np.random.Generator) -> list[Device]:
    """`devices_per_type` devices of each type, with random offsets and phases."""
    return [
        Device(
            id=device_id(name, i),
            type=t,
            offset=float(rng.uniform(-1, 1)) * t.scale,
            phase=float(rng.uniform(0, 2 * math.pi)),
        )
        for name, t in DEVICE_TYPES.items()
        for i in range(devices_per_type)
    ]


def normal_series(
    device_type: str, devices: int, readings: int, interval_s: float, seed: int
) -> np.ndarray:
    """Normal readings of `devices` devices of a type, shape (devices, readings), one every
    `interval_s` seconds from a random start of day: what the model is trained on."""
    rng = np.random.default_rng(seed)
    t = DEVICE_TYPES[device_type]
    offset = rng.uniform(-1, 1, (devices, 1)) * t.scale
    phase = rng.uniform(0, 2 * math.pi, (devices, 1))
    start = rng.uniform(0, t.period_s, (devices, 1))
    times = start + interval_s * np.arange(readings)[None, :]
    cycle = np.sin(2 * math.pi * times / t.period_s + phase)
    noise = rng.normal(0.0, t.noise, (devices, readings))
    out: np.ndarray = t.nominal + offset + 0.5 * t.scale * cycle + noise
    return out

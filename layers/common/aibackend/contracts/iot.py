"""Contracts of the IoT events: `Sensor Reading` (devices report one value at a time) and
`Anomaly Detected` (emitted by `functions/iot_anomaly`, routed by `functions/alerts`, which
deduplicates and rate-limits by `device_id`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aibackend.contracts.base import Detail, EmittedDetail, register
from aibackend.contracts.fraud import ModelRef

#: Device types with an anomaly model each (`aibackend.iot.devices.DEVICE_TYPES`).
DeviceType = Literal["thermostat", "vibration", "pressure"]
DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
#: Physical values: finite and within what any of the sensors can report.
Value = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


ReadingTime = Annotated[
    datetime,
    AfterValidator(_aware),
    Field(description="When the sensor measured the value (no offset: UTC)"),
]


@register
class SensorReadingV1(Detail):
    """One measurement of one device (source: the device fleet, `aib.iot` in the simulator).
    A device's readings may arrive late or twice; the window features are keyed by reading
    time, so redelivery changes nothing."""

    detail_type = "Sensor Reading"
    version = "1"

    schema_version: Literal["1"] = "1"
    device_id: DeviceId
    device_type: DeviceType
    value: Value
    unit: Annotated[str, Field(min_length=1, max_length=16)]
    reading_time: ReadingTime


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Value
    unit: Annotated[str, Field(min_length=1, max_length=16)]
    reading_time: ReadingTime


class Window(BaseModel):
    """The rolling window the score was computed on: the device's last `readings` readings
    within `span_s` seconds up to and including this one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    readings: Annotated[int, Field(ge=1)]
    span_s: Annotated[float, Field(ge=0, description="First to last reading in the window")]
    mean: float
    std: Annotated[float, Field(ge=0)]
    slope_per_min: Annotated[float, Field(description="Least-squares slope, units per minute")]


@register
class AnomalyDetectedV1(EmittedDetail):
    """A reading whose window scores at or above its device type's threshold (source
    `aib.iot`). `score` is the isolation forest's anomaly score (higher: more anomalous)."""

    detail_type = "Anomaly Detected"
    version = "1"

    schema_version: Literal["1"] = "1"
    device_id: DeviceId
    device_type: DeviceType
    reading: Reading
    score: float
    threshold: float
    window: Window
    model: ModelRef

"""IoT anomaly detection: a `Sensor Reading` event in, what to publish out.

The reading goes into the online window table first; its window (the device's readings of the
last 10 minutes, at most 20, by reading time) is read back, turned into features with
`aibackend.iot.window` (the definition training uses), and scored by the device type's
isolation forest. At or above the type's threshold (the model card's `metrics.threshold`)
an `Anomaly Detected` follows, with the reading, the score and the window, chained to the
reading's event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aibackend.contracts import Parsed, emit, expect, parse
from aibackend.contracts.fraud import ModelRef
from aibackend.contracts.iot import AnomalyDetectedV1, Reading, SensorReadingV1, Window
from aibackend.errors import ModelLoadError
from aibackend.iot.store import ReadingStore
from aibackend.iot.window import features, window_stats
from aibackend.models.runtime import LoadedModel
from aibackend.ports import PutEvent

SOURCE = "aib.iot"


@dataclass(frozen=True)
class Detector:
    """A device type's model and its decision threshold."""

    model: LoadedModel
    threshold: float

    @classmethod
    def of(cls, model: LoadedModel) -> Detector:
        threshold = model.card.metrics.get("threshold")
        if threshold is None:
            raise ModelLoadError(
                f"{model.name} v{model.version}: the card has no metrics.threshold; retrain "
                f"it with `aib train {model.name}`"
            )
        return cls(model, float(threshold))

    def score(self, row: Any) -> float:
        """Anomaly score: the forest's decision function, negated (higher: more anomalous)."""
        return -float(self.model.run(row)[-1].ravel()[0])


def reading(event: dict[str, Any]) -> Parsed[SensorReadingV1]:
    return expect(parse(event), SensorReadingV1)


def detect(
    event: dict[str, Any], detectors: Mapping[str, Detector], store: ReadingStore
) -> tuple[float, list[PutEvent]]:
    """The reading's score and the events to publish (none, or one `Anomaly Detected`)."""
    cause = reading(event)
    d = cause.detail
    window = store.record_and_window(d.device_id, d.reading_time.timestamp(), d.value)
    stats = window_stats([t for t, _ in window], [v for _, v in window])
    detector = detectors[d.device_type]
    score = detector.score(features(d.device_type, d.value, stats))
    if score < detector.threshold:
        return score, []
    model = detector.model
    anomaly = emit(
        cause,
        SOURCE,
        AnomalyDetectedV1,
        device_id=d.device_id,
        device_type=d.device_type,
        reading=Reading(value=d.value, unit=d.unit, reading_time=d.reading_time),
        score=score,
        threshold=detector.threshold,
        window=Window(
            readings=stats.readings,
            span_s=stats.span_s,
            mean=stats.mean,
            std=stats.std,
            slope_per_min=stats.slope_per_min,
        ),
        model=ModelRef(name=model.name, version=model.version),
    )
    return score, [anomaly]

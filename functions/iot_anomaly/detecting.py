"""IoT anomaly detection: `Sensor Reading` events in (a batch at a time), what to publish out.

The readings go into the online window table first; each one's window (the device's readings of the
last 10 minutes, at most 20, by reading time) is read back, turned into features with
`aibackend.iot.window` (the definition training uses), and scored by the device type's
isolation forest. At or above the type's threshold (the model card's `metrics.threshold`)
an `Anomaly Detected` follows, with the reading, the score and the window, chained to the
reading's event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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

    def scores(self, rows: Any) -> Any:
        """Anomaly score of each row of a matrix, in one model call: the forest's decision
        function, negated (higher: more anomalous)."""
        return -self.model.run(rows)[-1].ravel().astype(float)


def reading(event: dict[str, Any]) -> Parsed[SensorReadingV1]:
    return expect(parse(event), SensorReadingV1)


def detect_all(
    causes: Sequence[Parsed[SensorReadingV1]],
    detectors: Mapping[str, Detector],
    store: ReadingStore,
) -> list[tuple[float, list[PutEvent]]]:
    """Each reading's score and the events to publish (none, or one `Anomaly Detected`), in
    order: the batch's readings stored in one write, one model call per device type."""
    details = [c.detail for c in causes]
    windows = store.record_and_windows(
        [(d.device_id, d.reading_time.timestamp(), d.value) for d in details]
    )
    stats = [window_stats([t for t, _ in w], [v for _, v in w]) for w in windows]
    scores = [0.0] * len(details)
    by_type: dict[str, list[int]] = {}
    for i, d in enumerate(details):
        by_type.setdefault(d.device_type, []).append(i)
    for device_type, index in by_type.items():
        rows = np.vstack([features(device_type, details[i].value, stats[i]) for i in index])
        for i, score in zip(index, detectors[device_type].scores(rows), strict=True):
            scores[i] = float(score)
    out: list[tuple[float, list[PutEvent]]] = []
    for cause, d, st, score in zip(causes, details, stats, scores, strict=True):
        detector = detectors[d.device_type]
        if score < detector.threshold:
            out.append((score, []))
            continue
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
                readings=st.readings,
                span_s=st.span_s,
                mean=st.mean,
                std=st.std,
                slope_per_min=st.slope_per_min,
            ),
            model=ModelRef(name=model.name, version=model.version),
        )
        out.append((score, [anomaly]))
    return out

"""Accuracy with late labels: a ledger of captured predictions and labels joined on inference id,
and the metrics of a time window computed from the join.

Labels arrive hours or weeks after the prediction (a chargeback, a review). The ledger keeps
both sides and joins them at query time, so:
- a late label lands in the window of its *prediction* time, whenever it arrives;
- a prediction or label delivered twice counts once (the inference id is the key); a label
  delivered again with a different value and a later `received_at` is a correction and wins;
- a label that arrives before its prediction's capture is kept and joins when the capture does.

ROC AUC is exact (Mann-Whitney with tied ranks averaged) from the joined scores: a window holds
thousands of labelled rows, sorting them costs well under a millisecond, and it avoids the bias
that per-bucket histograms add at the score extremes where fraud models live.

Storage is behind the narrow `LabelStore` protocol; `SqliteLabelStore` is the local one (WAL,
durable); a DynamoDB store needs only the same three methods.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Protocol

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


AwareTime = Annotated[datetime, AfterValidator(_aware)]
InferenceId = Annotated[str, Field(min_length=1, max_length=128)]


class CapturedPrediction(BaseModel):
    """What the capture keeps of one prediction, for the join with its label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inference_id: InferenceId
    time: AwareTime
    score: Annotated[float, Field(ge=0.0, le=1.0, description="positive-class probability")]
    predicted: Annotated[int, Field(ge=0, le=1, description="the decision at serving time")]
    #: Sensitive attributes for bias metrics, e.g. {"region": "EU", "customer_age_band": "25-34"}.
    groups: dict[str, str | None] = Field(default_factory=dict)


class Label(BaseModel):
    """The ground truth of one prediction, as feedback or a labels file delivers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inference_id: InferenceId
    label: Annotated[int, Field(ge=0, le=1)]
    received_at: AwareTime


class LabelsWritten(BaseModel):
    """What a batch of labels did to the ledger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    new: int
    corrected: int
    duplicates: int
    #: Labels whose prediction is not captured (yet); they join when it is.
    unmatched: int
    #: Prediction times of the newly labelled or corrected rows: the windows to recompute.
    prediction_times: list[datetime]


@dataclass(frozen=True)
class JoinedWindow:
    """Every prediction captured in [start, end) and, for the labelled ones, the label."""

    start: datetime
    end: datetime
    predictions: int
    scores: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray
    groups: dict[str, np.ndarray]

    @property
    def labelled(self) -> int:
        return int(self.labels.size)


class LabelStore(Protocol):
    def put_predictions(self, records: Sequence[CapturedPrediction]) -> int:
        """Store captures; returns how many were new (a re-delivered capture is ignored)."""
        ...

    def put_labels(self, labels: Sequence[Label]) -> LabelsWritten: ...

    def window(self, start: datetime, end: datetime) -> JoinedWindow:
        """Predictions with prediction time in [start, end), joined with their labels."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    inference_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    score REAL NOT NULL,
    predicted INTEGER NOT NULL,
    groups TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE TABLE IF NOT EXISTS labels (
    inference_id TEXT PRIMARY KEY,
    label INTEGER NOT NULL,
    received_at REAL NOT NULL
) WITHOUT ROWID;
"""


class SqliteLabelStore:
    """The ledger in one SQLite file (WAL mode): durable across restarts of `aib dev`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self._path, timeout=30.0)
        try:
            with db:
                yield db
        finally:
            db.close()

    def put_predictions(self, records: Sequence[CapturedPrediction]) -> int:
        rows = [
            (
                r.inference_id,
                r.time.timestamp(),
                r.score,
                r.predicted,
                json.dumps(r.groups, sort_keys=True),
            )
            for r in records
        ]
        with self._connect() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?)", rows)
            return db.total_changes - before

    def put_labels(self, labels: Sequence[Label]) -> LabelsWritten:
        latest: dict[str, Label] = {}
        for lab in labels:  # within one batch too, the latest delivery wins
            old = latest.get(lab.inference_id)
            if old is None or lab.received_at > old.received_at:
                latest[lab.inference_id] = lab
        rows = [(x.inference_id, x.label, x.received_at.timestamp()) for x in latest.values()]
        with self._connect() as db:
            db.execute(
                "CREATE TEMP TABLE batch (inference_id TEXT PRIMARY KEY, label, received_at, kind)"
            )
            db.executemany("INSERT INTO batch VALUES (?, ?, ?, NULL)", rows)
            db.execute(
                "UPDATE batch SET kind = 'new' WHERE inference_id NOT IN "
                "(SELECT inference_id FROM labels)"
            )
            db.execute(
                "UPDATE batch SET kind = 'corrected' FROM labels l "
                "WHERE batch.inference_id = l.inference_id "
                "AND batch.received_at > l.received_at AND batch.label != l.label"
            )
            db.execute(
                "UPDATE labels SET label = b.label, received_at = b.received_at FROM batch b "
                "WHERE labels.inference_id = b.inference_id AND b.kind = 'corrected'"
            )
            db.execute(
                "INSERT INTO labels SELECT inference_id, label, received_at FROM batch "
                "WHERE kind = 'new'"
            )
            new, corrected = db.execute(
                "SELECT COUNT(*) FILTER (WHERE kind = 'new'), "
                "COUNT(*) FILTER (WHERE kind = 'corrected') FROM batch"
            ).fetchone()
            changed = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT p.ts FROM batch b JOIN predictions p USING (inference_id) "
                    "WHERE b.kind IS NOT NULL"
                )
            ]
            unmatched = db.execute(
                "SELECT COUNT(*) FROM batch b LEFT JOIN predictions p USING (inference_id) "
                "WHERE p.inference_id IS NULL"
            ).fetchone()[0]
            db.execute("DROP TABLE batch")
        return LabelsWritten(
            new=int(new),
            corrected=int(corrected),
            duplicates=len(labels) - int(new) - int(corrected),
            unmatched=int(unmatched),
            prediction_times=sorted(datetime.fromtimestamp(t, UTC) for t in changed),
        )

    def window(self, start: datetime, end: datetime) -> JoinedWindow:
        lo, hi = _aware(start).timestamp(), _aware(end).timestamp()
        with self._connect() as db:
            total = db.execute(
                "SELECT COUNT(*) FROM predictions WHERE ts >= ? AND ts < ?", (lo, hi)
            ).fetchone()[0]
            rows = db.execute(
                "SELECT p.score, p.predicted, l.label, p.groups FROM predictions p "
                "JOIN labels l USING (inference_id) WHERE p.ts >= ? AND p.ts < ? "
                "ORDER BY p.inference_id",
                (lo, hi),
            ).fetchall()
        groups = [json.loads(r[3]) for r in rows]
        names = sorted({k for g in groups for k in g})
        return JoinedWindow(
            start=_aware(start),
            end=_aware(end),
            predictions=int(total),
            scores=np.array([r[0] for r in rows], dtype=np.float64),
            predicted=np.array([r[1] for r in rows], dtype=np.int8),
            labels=np.array([r[2] for r in rows], dtype=np.int8),
            groups={k: np.array([g.get(k) for g in groups], dtype=object) for k in names},
        )

"""Labels into the ledger: `POST /v1/feedback` bodies and labels files (`labels/<model>/*.csv`).

A labels file is CSV with a header, `inference_id,label[,observed_at]`: label 0/1 (or
true/false), observed_at ISO 8601 (default: when the file is read). Rows that cannot be read
are quarantined with a reason, under `labels-quarantine/<model>/<file name>.rejected.csv`
(outside `labels/`, so it triggers nothing); the rest go to the ledger.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aibackend.monitoring.labels import AwareTime, InferenceId, Label, LabelStore

LABELS_PREFIX = "labels/"
QUARANTINE_PREFIX = "labels-quarantine/"
MAX_LABELS = 1000
_TRUE = frozenset({"1", "true", "t", "yes"})
_FALSE = frozenset({"0", "false", "f", "no"})


class FeedbackItem(BaseModel):
    """The ground truth of one prediction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inference_id: InferenceId = Field(description="The inference id the prediction answered with")
    label: Annotated[int, Field(ge=0, le=1, description="1: the positive class (fraud)")]
    observed_at: AwareTime | None = Field(
        default=None, description="When the outcome was known (default: now); a later one wins"
    )


class FeedbackAccepted(BaseModel):
    """What a batch of labels did to the ledger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    received: int
    accepted: int = Field(description="new labels and corrections")
    corrected: int
    duplicates: int = Field(description="labels the ledger already held, unchanged")
    unknown_yet: int = Field(
        description="labels of predictions not captured yet; they join when the capture does"
    )


def record_labels(
    ledger: LabelStore, model: str, items: Sequence[FeedbackItem], now: datetime
) -> FeedbackAccepted:
    written = ledger.put_labels(
        [
            Label(inference_id=i.inference_id, label=i.label, received_at=i.observed_at or now)
            for i in items
        ]
    )
    return FeedbackAccepted(
        model=model,
        received=len(items),
        accepted=written.new + written.corrected,
        corrected=written.corrected,
        duplicates=written.duplicates,
        unknown_yet=written.unmatched,
    )


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str
    row: str


@dataclass(frozen=True)
class LabelsFile:
    items: list[FeedbackItem]
    rejected: list[Rejected]


class LabelsFileError(ValueError):
    """The file as a whole cannot be read (not UTF-8, no header, wrong columns)."""


def model_of(key: str) -> str:
    """`labels/<model>/...csv` -> model; a LabelsFileError for keys outside that layout."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] + "/" != LABELS_PREFIX or not parts[1]:
        raise LabelsFileError(f"{key}: expected labels/<model>/<file>.csv")
    return parts[1]


def quarantine_key(key: str) -> str:
    return QUARANTINE_PREFIX + key.removeprefix(LABELS_PREFIX) + ".rejected.csv"


def parse_labels_csv(data: bytes, source: str) -> LabelsFile:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelsFileError(f"{source}: not UTF-8 ({e.reason} at byte {e.start})") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if header[:2] != ["inference_id", "label"] or header[2:] not in ([], ["observed_at"]):
        raise LabelsFileError(
            f"{source}: the header must be inference_id,label[,observed_at]; got {','.join(header)}"
        )
    items: list[FeedbackItem] = []
    rejected: list[Rejected] = []
    for line, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        try:
            items.append(_item(row, len(header)))
        except ValueError as e:
            rejected.append(Rejected(line=line, reason=str(e), row=",".join(row)))
    return LabelsFile(items=items, rejected=rejected)


def _item(row: list[str], columns: int) -> FeedbackItem:
    if len(row) != columns:
        raise ValueError(f"{len(row)} fields, expected {columns}")
    label = row[1].strip().lower()
    if label not in _TRUE | _FALSE:
        raise ValueError(f"label {row[1]!r} is not 0/1 or true/false")
    observed = row[2].strip() if columns == 3 else ""
    try:
        return FeedbackItem(
            inference_id=row[0].strip(),
            label=int(label in _TRUE),
            observed_at=datetime.fromisoformat(observed) if observed else None,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def rejected_csv(rejected: Sequence[Rejected]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["line", "reason", "row"])
    for r in rejected:
        w.writerow([r.line, r.reason, r.row])
    return out.getvalue().encode()


def chunks(items: Sequence[FeedbackItem], size: int = 5000) -> list[Sequence[FeedbackItem]]:
    return [items[i : i + size] for i in range(0, len(items), size)]

"""One capture message (a JSON list of records of one model) -> one JSON Lines object, one
profile delta and the model's ledger rows.

Every write is keyed by the message id (object keys, the delta id, inference ids in the
ledger), so a redelivered message rewrites the same objects and adds nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from aibackend.capture import capture_key
from aibackend.monitoring.config import MonitorSettings
from aibackend.monitoring.ingest import ingest, profile_key
from aibackend.monitoring.labels import LabelStore
from aibackend.ports import ObjectStore


class CaptureMessageError(ValueError):
    """The message is not a list of capture records of one model."""


@dataclass(frozen=True)
class Stored:
    key: str
    records: int
    #: None when monitoring cannot profile the model's inputs (see `aibackend.monitoring.ingest`).
    profile_key: str | None
    new_predictions: int


def store_message(
    store: ObjectStore,
    message_id: str,
    body: str,
    *,
    ledger: Callable[[str], LabelStore],
    settings: Callable[[str], MonitorSettings],
) -> Stored:
    """Write the message's records, their profile delta, and their predictions to the ledger."""
    records = _records(message_id, body)
    model, at = _model_and_time(message_id, records)
    key = capture_key(model, at, message_id)
    data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
    store.put(key, data, content_type="application/x-ndjson")
    cfg = settings(model)
    done = ingest(
        records,
        message_id,
        attributes=cfg.sensitive_attributes,
        positive=cfg.positive_decisions,
    )
    pkey = None
    if done.profile is not None:
        pkey = profile_key(model, at, message_id)
        store.put(pkey, done.profile.to_bytes(), content_type="application/octet-stream")
    new = ledger(model).put_predictions(done.predictions)
    return Stored(key=key, records=len(records), profile_key=pkey, new_predictions=new)


def _records(message_id: str, body: str) -> list[dict[str, object]]:
    try:
        records = json.loads(body)
    except ValueError as e:
        raise CaptureMessageError(f"message {message_id}: not JSON: {e}") from None
    if (
        not isinstance(records, list)
        or not records
        or not all(isinstance(r, dict) for r in records)
    ):
        raise CaptureMessageError(f"message {message_id}: expected a non-empty list of records")
    return records


def _model_and_time(message_id: str, records: Sequence[dict[str, object]]) -> tuple[str, datetime]:
    try:
        models = {r["model"]["name"] for r in records}  # type: ignore[index]
        at = datetime.fromisoformat(str(records[0]["at"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CaptureMessageError(
            f"message {message_id}: a record lacks model or at: {e}"
        ) from None
    if len(models) != 1:
        raise CaptureMessageError(f"message {message_id}: records of several models {models}")
    return str(models.pop()), at

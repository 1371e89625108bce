"""A batch of capture messages (each a JSON list of records of one model) -> per model and
hour: one JSON Lines object of their records, one bundle of their profile deltas (one delta per
message, its id from the message id, kept as rows: `DeltaRows`), and their predictions in the
model's label ledger.

Why per batch: a capture message usually holds one prediction, and objects per message (two
synced files each, locally) cost more than the prediction did. Why still a delta per message:
SQS may redeliver a message in a different batch; its delta keeps its id, so the monitor's
window counts it once (`Window.add_rows` skips ids it has merged), and the ledger is keyed by
inference id. Why rows: a one-prediction delta built as a profile of sketches cost more CPU
than the prediction itself; the monitor profiles a bundle's rows in one vectorized build.

The records object of a redelivered message may hold its records a second time (in another
batch's object): the raw archive is at-least-once, each record carries its
`inference_id`; what monitoring counts is exactly-once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aibackend.capture import capture_key
from aibackend.monitoring.config import MonitorSettings
from aibackend.monitoring.ingest import (
    CaptureRecordError,
    Ingested,
    bundle_key,
    delta_rows,
    ingest,
)
from aibackend.monitoring.labels import LabelStore
from aibackend.monitoring.profiles import delta_id_for
from aibackend.ports import ObjectStore


class CaptureMessageError(ValueError):
    """The message is not a list of capture records of one model."""


@dataclass(frozen=True)
class Message:
    message_id: str
    body: str


@dataclass(frozen=True)
class Stored:
    """What one group (one model, one hour) of the batch became."""

    model: str
    key: str
    messages: int
    records: int
    #: None when monitoring cannot profile the model's inputs (see `aibackend.monitoring.ingest`).
    profile_key: str | None
    new_predictions: int


@dataclass
class BatchResult:
    stored: list[Stored] = field(default_factory=list)
    #: Message id -> why it was not stored (the message is retried, then dead-lettered).
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class _Group:
    model: str
    at: datetime
    #: (message id, its records, their delta and ledger rows)
    messages: list[tuple[str, list[dict[str, object]], Ingested]] = field(default_factory=list)


def batch_id(message_ids: Sequence[str]) -> str:
    """The objects' name: the message id for one message, else a hash of the sorted ids (the
    same batch redelivered whole rewrites the same objects)."""
    if len(message_ids) == 1:
        return message_ids[0]
    return "b-" + delta_id_for(*sorted(message_ids))


def store_batch(
    store: ObjectStore,
    messages: Sequence[Message],
    *,
    ledger: Callable[[str], LabelStore],
    settings: Callable[[str], MonitorSettings],
) -> BatchResult:
    """Store every readable message; a message that cannot be read, or whose group cannot be
    written, is in `failed` with the reason, and the others are stored regardless."""
    out = BatchResult()
    groups: dict[tuple[str, str], _Group] = {}
    seen: set[str] = set()
    for m in messages:
        if m.message_id in seen:  # the same message twice in one batch: stored once
            continue
        seen.add(m.message_id)
        try:
            records = _records(m.message_id, m.body)
            model, at = _model_and_time(m.message_id, records)
            cfg = settings(model)
            done = ingest(
                records,
                m.message_id,
                attributes=cfg.sensitive_attributes,
                positive=cfg.positive_decisions,
            )
        except (CaptureMessageError, CaptureRecordError) as e:
            out.failed[m.message_id] = str(e)
            continue
        except (KeyError, TypeError, ValueError) as e:  # a record of the wrong shape
            out.failed[m.message_id] = f"message {m.message_id}: {type(e).__name__}: {e}"
            continue
        hour = at.astimezone(UTC).strftime("%Y-%m-%dT%H")
        group = groups.setdefault((model, hour), _Group(model=model, at=at))
        group.messages.append((m.message_id, records, done))
    for group in groups.values():
        try:
            out.stored.append(_store_group(store, group, ledger=ledger))
        except Exception as e:  # a failed write fails the group's messages, not the batch
            reason = f"{type(e).__name__}: {e}"
            out.failed.update({mid: reason for mid, _, _ in group.messages})
    return out


def _store_group(
    store: ObjectStore, group: _Group, *, ledger: Callable[[str], LabelStore]
) -> Stored:
    done = [d for _, _, d in group.messages]
    name = batch_id([mid for mid, _, _ in group.messages])
    # Ledger first, deltas last: a batch that fails half way is retried, and every write is
    # keyed so that the retry adds nothing twice.
    new = ledger(group.model).put_predictions([p for d in done for p in d.predictions])
    key = capture_key(group.model, group.at.astimezone(UTC), name)
    lines = [
        json.dumps(r, separators=(",", ":")).encode() + b"\n"
        for _, records, _ in group.messages
        for r in records
    ]
    store.put(key, b"".join(lines), content_type="application/x-ndjson")
    rows = [d.rows for d in done if d.rows is not None]
    pkey = None
    if rows:
        pkey = bundle_key(group.model, group.at, name)
        store.put(pkey, delta_rows(rows).to_bytes(), content_type="application/octet-stream")
    return Stored(
        model=group.model,
        key=key,
        messages=len(group.messages),
        records=len(lines),
        profile_key=pkey,
        new_predictions=new,
    )


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

"""Captured records -> what monitoring keeps of them: the rows of a profile delta per message
(the model's input features, its score and decision; profiled when a window merges them, see
`profiles.DeltaRows`) and the ledger rows that late labels join.

A model is profiled when its inputs can be turned into the feature matrix it was trained on
(`MONITORED`): the live profile then has the columns of the training baseline (`profile.bin`,
built by `profile_matrix` from the training matrix) and the drift tests compare like with like.
Bias attributes (`sensitive_attributes`) are read from the raw inputs into the ledger, where
labels join them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import ValidationError

from aibackend.models.card import Feature
from aibackend.monitoring.labels import CapturedPrediction
from aibackend.monitoring.profiles import (
    ROWS_MAGIC,
    DeltaRows,
    Profile,
    ProfileSchema,
    Window,
    delta_id_for,
    matrix_frame,
)

PROFILES_PREFIX = "profiles/"


class CaptureRecordError(ValueError):
    """A capture record lacks what monitoring needs (score, decision, time, inputs)."""


@dataclass(frozen=True)
class ModelInputs:
    """How a model's captured inputs become its feature matrix (columns in `features` order)."""

    features: tuple[Feature, ...]
    matrix: Callable[[Sequence[Mapping[str, Any]]], np.ndarray]


def _fraud() -> ModelInputs:
    from aibackend.fraud.features import FEATURES, transactions_matrix
    from aibackend.fraud.schema import Transaction

    def to_matrix(inputs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        try:
            txns = [Transaction.model_validate(i) for i in inputs]
        except ValidationError as e:
            raise CaptureRecordError(f"captured fraud inputs are not transactions: {e}") from None
        return transactions_matrix(txns)

    return ModelInputs(features=FEATURES, matrix=to_matrix)


#: Models whose captured inputs monitoring can profile, by registry name (built on first use).
MONITORED: dict[str, Callable[[], ModelInputs]] = {"fraud": _fraud}


@dataclass(frozen=True)
class Rows:
    """One message's rows as monitoring profiles them: its delta id, the model's feature matrix
    of its inputs, the scores and the decisions."""

    delta_id: str
    features: tuple[Feature, ...]
    x: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray


@dataclass(frozen=True)
class Ingested:
    model: str
    at: datetime
    #: None when monitoring cannot profile the model's inputs (not in `MONITORED`).
    rows: Rows | None
    predictions: list[CapturedPrediction]


def delta_rows(messages: Sequence[Rows]) -> DeltaRows:
    """The deltas of several messages (of one model) side by side, decoded in one pass."""
    if not messages:
        raise ValueError("no messages to bundle")
    features = messages[0].features
    if any(m.features != features for m in messages):
        raise ValueError("messages of different feature sets cannot share a bundle")
    return DeltaRows(
        schema=ProfileSchema.from_features(features),
        deltas=tuple((m.delta_id, len(m.x)) for m in messages),
        frame=matrix_frame(np.concatenate([m.x for m in messages]), features),
        scores=np.concatenate([m.scores for m in messages]),
        predicted=np.concatenate([m.decisions for m in messages]),
    )


def profile_key(model: str, at: datetime, message_id: str) -> str:
    """Where one profile delta is stored (hour partitions, UTC, as the capture)."""
    u = at.astimezone(UTC)
    return f"{PROFILES_PREFIX}{model}/{u:%Y-%m-%d}/{u:%H}/{message_id}.bin"


def bundle_key(model: str, at: datetime, batch_id: str) -> str:
    """Where the profile deltas of one consumer batch are stored, side by side in one object."""
    u = at.astimezone(UTC)
    return f"{PROFILES_PREFIX}{model}/{u:%Y-%m-%d}/{u:%H}/{batch_id}{BUNDLE_SUFFIX}"


#: A bundle of profiles (what `monitor_capture` wrote before it wrote `DeltaRows`, still read):
#: the magic line, then per delta a 4-byte big-endian length and `Profile.to_bytes()`. Its
#: deltas keep their own ids (one per capture message), so a message redelivered into a
#: different batch is a duplicate the window skips, not rows counted twice.
BUNDLE_MAGIC = b"AIBPBUNDLE1\n"
BUNDLE_SUFFIX = ".bundle"
_LEN = struct.Struct(">I")


def bundle_bytes(deltas: Sequence[Profile]) -> bytes:
    parts = [BUNDLE_MAGIC]
    for d in deltas:
        blob = d.to_bytes()
        parts += [_LEN.pack(len(blob)), blob]
    return b"".join(parts)


def bundle_profiles(data: bytes) -> Iterator[Profile]:
    """The deltas of a bundle, in the order they were written."""
    if not data.startswith(BUNDLE_MAGIC):
        raise ValueError(f"not a profile bundle (starts {data[:12]!r})")
    at = len(BUNDLE_MAGIC)
    while at < len(data):
        if at + _LEN.size > len(data):
            raise ValueError(f"profile bundle truncated at byte {at}")
        (size,) = _LEN.unpack_from(data, at)
        at += _LEN.size
        if at + size > len(data):
            raise ValueError(f"profile bundle truncated: a delta of {size} bytes at byte {at}")
        yield Profile.from_bytes(data[at : at + size])
        at += size


def add_bundle(window: Window, data: bytes) -> int:
    """Merge a `.bundle` object into `window`, either format; returns how many deltas were new."""
    if data.startswith(ROWS_MAGIC):
        return window.add_rows(DeltaRows.from_bytes(data))
    return window.add_all(bundle_profiles(data))


def ingest(
    records: Sequence[Mapping[str, Any]],
    message_id: str,
    *,
    attributes: Sequence[str],
    positive: Sequence[str],
) -> Ingested:
    """The rows of the profile delta (delta id from `message_id`: a redelivery has the same id)
    and the ledger rows of one capture message's records (all of one model)."""
    if not records:
        raise CaptureRecordError(f"message {message_id}: no records")
    model = str(records[0]["model"]["name"])
    scores, decisions, times = _outputs(records, message_id)
    predicted = np.isin(decisions, np.asarray(positive, dtype=object))
    groups = [{a: _group(r["inputs"].get(a)) for a in attributes} for r in records]
    predictions = [
        CapturedPrediction(
            inference_id=str(r["inference_id"]),
            time=t,
            score=float(s),
            predicted=int(p),
            groups=g,
        )
        for r, t, s, p, g in zip(records, times, scores, predicted, groups, strict=True)
    ]
    rows = None
    make = MONITORED.get(model)
    if make is not None:
        spec = make()
        rows = Rows(
            delta_id=delta_id_for(message_id),
            features=spec.features,
            x=spec.matrix([r["inputs"] for r in records]),
            scores=scores,
            decisions=decisions,
        )
    return Ingested(model=model, at=times[0], rows=rows, predictions=predictions)


def _outputs(
    records: Sequence[Mapping[str, Any]], message_id: str
) -> tuple[np.ndarray, np.ndarray, list[datetime]]:
    try:
        scores = np.array([float(r["output"]["score"]) for r in records], dtype=np.float64)
        decisions = np.array([str(r["output"]["decision"]) for r in records], dtype=object)
        times = [datetime.fromisoformat(str(r["at"])) for r in records]
    except (KeyError, TypeError, ValueError) as e:
        raise CaptureRecordError(
            f"message {message_id}: a record lacks output.score, output.decision or at: {e!r}"
        ) from None
    if not np.all((scores >= 0) & (scores <= 1)):
        raise CaptureRecordError(f"message {message_id}: a score is outside [0, 1]")
    return scores, decisions, [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times]


def _group(value: Any) -> str | None:
    return None if value is None else str(value)

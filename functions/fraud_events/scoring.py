"""Real-time fraud: `Transaction Created` events in (a batch at a time), what to publish out.

The transactions are written to the shared online feature table first, then their card-history
features are computed from the table with `aibackend.fraud.velocity` (the definition the
pipeline and training use), so the same transactions give the same values on both paths.
The velocity fields the event may carry are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aibackend.contracts import Parsed, emit, expect, parse
from aibackend.contracts.fraud import (
    FraudSuspectedV1,
    HistoryFeatures,
    ModelRef,
    TransactionCreatedV1,
    TransactionScoredV1,
)
from aibackend.fraud.decision import DecisionSettings
from aibackend.fraud.features import transactions_matrix
from aibackend.fraud.schema import Transaction
from aibackend.fraud.velocity import (
    HISTORY_COLUMNS,
    LOOKBACK_US,
    Txn,
    amount_eur,
    epoch_us,
    with_history,
)
from aibackend.models.runtime import LoadedModel
from aibackend.pipeline.features import FeatureStore
from aibackend.ports import PutEvent

SOURCE = "aib.fraud"


def created(event: dict[str, Any]) -> Parsed[TransactionCreatedV1]:
    """The event's `Transaction Created` v1 detail; a `ContractError` for anything else."""
    return expect(parse(event), TransactionCreatedV1)


def transaction_id(created: Parsed[TransactionCreatedV1]) -> str:
    """The transaction's id, or the event's when the producer gave none (stable on redelivery)."""
    return created.detail.transaction_id or created.event_id


def online_transactions(
    causes: Sequence[Parsed[TransactionCreatedV1]], features: FeatureStore
) -> list[Transaction]:
    """Record the transactions in the feature table, then return them with their history
    features (`txn_count_1h`, `txn_count_24h`, `avg_amount_30d`) computed from the table: one
    write and one read for the batch. Each transaction's window ends at its own time, so a
    transaction sees the others of its batch that came before it, as it would one at a time."""
    txns: list[Transaction] = []
    rows: list[Txn] = []
    for cause in causes:
        d = cause.detail
        txn_id = transaction_id(cause)
        rows.append(Txn(d.card_id, txn_id, epoch_us(d.timestamp), amount_eur(d.amount, d.currency)))
        # The event's own velocity fields are dropped: `with_history` sets them from the table.
        fields = d.model_dump(exclude={"schema_version", "correlation_id", *HISTORY_COLUMNS})
        txns.append(Transaction.model_validate({**fields, "transaction_id": txn_id}))
    if not rows:
        return []
    features.put(rows)
    times = [r.at_us for r in rows]
    history = features.histories([r.card_id for r in rows], min(times) - LOOKBACK_US, max(times))
    online: list[Transaction] = with_history(txns, history)
    return online


def online_transaction(
    created: Parsed[TransactionCreatedV1], features: FeatureStore
) -> Transaction:
    """`online_transactions` of one event."""
    return online_transactions([created], features)[0]


@dataclass(frozen=True)
class Scored:
    """What scoring one event produced: the events to publish and the transaction as scored
    (with the features computed from the online table), for inference capture."""

    events: list[PutEvent]
    transaction: Transaction
    correlation_id: str


def score_events(
    causes: Sequence[Parsed[TransactionCreatedV1]],
    model: LoadedModel,
    settings: DecisionSettings,
    features: FeatureStore,
) -> list[Scored]:
    """For each event, in order: `Transaction Scored`, plus `Fraud Suspected` at the threshold,
    each with the chain's correlation id and `caused_by` = the `Transaction Created` event's
    id. One feature-table write, one read and one model call for all of them."""
    txns = online_transactions(causes, features)
    if not txns:
        return []
    scores = model.predict_proba(transactions_matrix(txns))
    ref = ModelRef(name=model.name, version=model.version)
    out: list[Scored] = []
    for cause, txn, raw in zip(causes, txns, scores, strict=True):
        score = float(raw)
        decision = settings.decide(score)
        common: dict[str, Any] = {
            "transaction_id": txn.transaction_id,
            "card_id": txn.card_id,
            "score": score,
            "threshold": settings.threshold,
            "model": ref,
        }
        history = HistoryFeatures(
            txn_count_1h=txn.txn_count_1h,
            txn_count_24h=txn.txn_count_24h,
            avg_amount_30d=txn.avg_amount_30d,
        )
        events = [
            emit(cause, SOURCE, TransactionScoredV1, decision=decision, features=history, **common)
        ]
        if decision == "decline":
            events.append(emit(cause, SOURCE, FraudSuspectedV1, decision=decision, **common))
        out.append(Scored(events, txn, cause.correlation_id))
    return out

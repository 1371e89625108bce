"""Real-time fraud: a `Transaction Created` event in, what to publish out.

The transaction is written to the shared online feature table first, then its card-history
features are computed from the table with `aibackend.fraud.velocity` (the definition the
pipeline and training use), so the same transactions give the same values on both paths.
The velocity fields the event may carry are ignored.
"""

from __future__ import annotations

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


def online_transaction(
    created: Parsed[TransactionCreatedV1], features: FeatureStore
) -> Transaction:
    """Record the transaction in the feature table, then return it with its history features
    (`txn_count_1h`, `txn_count_24h`, `avg_amount_30d`) computed from the table."""
    d = created.detail
    at = epoch_us(d.timestamp)
    txn_id = transaction_id(created)
    features.put([Txn(d.card_id, txn_id, at, amount_eur(d.amount, d.currency))])
    history = features.histories([d.card_id], at - LOOKBACK_US, at)
    # The event's own velocity fields are dropped: `with_history` sets them from the table.
    fields = d.model_dump(exclude={"schema_version", "correlation_id", *HISTORY_COLUMNS})
    txn = Transaction.model_validate({**fields, "transaction_id": txn_id})
    online: list[Transaction] = with_history([txn], history)
    return online[0]


@dataclass(frozen=True)
class Scored:
    """What scoring one event produced: the events to publish and the transaction as scored
    (with the features computed from the online table), for inference capture."""

    events: list[PutEvent]
    transaction: Transaction
    correlation_id: str


def score_event(
    event: dict[str, Any], model: LoadedModel, settings: DecisionSettings, features: FeatureStore
) -> Scored:
    """`Transaction Scored` for every transaction, plus `Fraud Suspected` at the threshold, each
    with the chain's correlation id and `caused_by` = the `Transaction Created` event's id."""
    cause = created(event)
    txn = online_transaction(cause, features)
    score = float(model.predict_proba(transactions_matrix([txn]))[0])
    decision = settings.decide(score)
    common: dict[str, Any] = {
        "transaction_id": transaction_id(cause),
        "card_id": txn.card_id,
        "score": score,
        "threshold": settings.threshold,
        "model": ModelRef(name=model.name, version=model.version),
    }
    history = HistoryFeatures(
        txn_count_1h=txn.txn_count_1h,
        txn_count_24h=txn.txn_count_24h,
        avg_amount_30d=txn.avg_amount_30d,
    )
    out = [emit(cause, SOURCE, TransactionScoredV1, decision=decision, features=history, **common)]
    if decision == "decline":
        out.append(emit(cause, SOURCE, FraudSuspectedV1, decision=decision, **common))
    return Scored(out, txn, cause.correlation_id)

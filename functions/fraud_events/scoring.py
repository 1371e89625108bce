"""Score a `Transaction Created` event and say what to publish; no AWS, no I/O."""

from __future__ import annotations

from typing import Any

from aibackend.fraud.decision import DecisionSettings
from aibackend.fraud.features import transactions_matrix
from aibackend.fraud.schema import Transaction
from aibackend.models.runtime import LoadedModel
from aibackend.ports import PutEvent

SOURCE = "aib.fraud"


def score_event(
    event: dict[str, Any], model: LoadedModel, settings: DecisionSettings
) -> list[PutEvent]:
    """`Transaction Scored` for every transaction, plus `Fraud Suspected` at the threshold.

    Each outgoing event names the event that caused it (`caused_by`), so one transaction can be
    followed from creation to alert. An invalid transaction raises: Lambda retries, then its
    on-failure record carries the validation error.
    """
    txn = Transaction.model_validate(event["detail"])
    score = float(model.predict_proba(transactions_matrix([txn]))[0])
    decision = settings.decide(score)
    detail = {
        "transaction_id": txn.transaction_id,
        "card_id": txn.card_id,
        "score": score,
        "decision": decision,
        "threshold": settings.threshold,
        "model": {"name": model.name, "version": model.version},
        "caused_by": event["id"],
    }
    out = [PutEvent(source=SOURCE, detail_type="Transaction Scored", detail=detail)]
    if decision == "decline":
        out.append(PutEvent(source=SOURCE, detail_type="Fraud Suspected", detail=detail))
    return out

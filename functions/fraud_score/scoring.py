"""Fraud scoring logic: typed in, typed out; no HTTP, no AWS."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aibackend.fraud.decision import DecisionSettings
from aibackend.fraud.features import transactions_matrix
from aibackend.fraud.schema import Transaction
from aibackend.models.runtime import LoadedModel
from aibackend.serving import Envelope, Prediction, inference_id, model_ref

MAX_BATCH = 1000


class ScoreBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: Annotated[list[Transaction], Field(min_length=1, max_length=MAX_BATCH)]


class Score(Prediction):
    transaction_id: str | None
    score: Annotated[float, Field(ge=0, le=1, description="Probability of fraud")]
    decision: Literal["decline", "approve"]


class ScoreResponse(Envelope):
    threshold: float
    results: list[Score]


def probabilities(txns: list[Transaction], model: LoadedModel) -> np.ndarray:
    """Fraud probability of each transaction, from one `session.run` (every API version's)."""
    return model.predict_proba(transactions_matrix(txns))


def score(
    txns: list[Transaction], model: LoadedModel, settings: DecisionSettings, request_id: str
) -> ScoreResponse:
    """Score a batch in one `session.run`; decision = decline at or above the threshold."""
    probs = probabilities(txns, model)
    return ScoreResponse(
        request_id=request_id,
        model=model_ref(model),
        threshold=settings.threshold,
        results=[
            Score(
                inference_id=inference_id(),
                transaction_id=txn.transaction_id,
                score=float(p),
                decision=settings.decide(p),
            )
            for txn, p in zip(txns, probs, strict=True)
        ],
    )

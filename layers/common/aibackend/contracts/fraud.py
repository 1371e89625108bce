"""Contracts of the card-payment events: `Transaction Created` (consumed by the real-time
scorer), `Transaction Scored` and `Fraud Suspected` (emitted by it; the pipeline emits
`Fraud Suspected` too)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from aibackend.contracts.base import Detail, EmittedDetail, EventId, register
from aibackend.fraud.schema import Transaction

_COMPUTED = (
    "Optional: the real-time scorer computes it from the online feature table and ignores "
    "what the event says"
)

_Count1h = Annotated[int | None, Field(ge=0, le=100_000, description=_COMPUTED)]
_Count24h = Annotated[int | None, Field(ge=0, le=1_000_000, description=_COMPUTED)]


@register
class TransactionCreatedV1(Detail, Transaction):
    """A card transaction as the payments system reports it: `aibackend.fraud.schema.Transaction`'s
    fields. Without `transaction_id` the event's id identifies the transaction."""

    detail_type = "Transaction Created"
    version = "1"

    schema_version: Literal["1"] = "1"
    # Widened to optional on purpose (pydantic allows it; mypy sees a changed base type).
    txn_count_1h: _Count1h = None  # type: ignore[assignment]
    txn_count_24h: _Count24h = None  # type: ignore[assignment]
    avg_amount_30d: Annotated[float | None, Field(ge=0, description=_COMPUTED)] = None


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64)]
    version: Annotated[int, Field(ge=1)]


class HistoryFeatures(BaseModel):
    """The card-history features the score used (`aibackend.fraud.velocity`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    txn_count_1h: Annotated[int, Field(ge=0)]
    txn_count_24h: Annotated[int, Field(ge=0)]
    avg_amount_30d: Annotated[
        float | None, Field(ge=0, description="In the transaction's currency; none: no history")
    ]


Score = Annotated[float, Field(ge=0, le=1, description="Fraud probability")]
Id = Annotated[str, Field(min_length=1, max_length=128)]


@register
class TransactionScoredV1(EmittedDetail):
    """The fraud model's verdict on one `Transaction Created` (source `aib.fraud`)."""

    detail_type = "Transaction Scored"
    version = "1"

    schema_version: Literal["1"] = "1"
    transaction_id: Id
    card_id: Id
    score: Score
    decision: Literal["decline", "approve"]
    threshold: Annotated[float, Field(gt=0, lt=1)]
    features: HistoryFeatures
    model: ModelRef


@register
class FraudSuspectedV1(Detail):
    """A transaction at or above the fraud threshold.

    From `aib.fraud` (real time): `decision`, `threshold`, `correlation_id` and `caused_by`.
    From `aib.pipeline` (batch): `band`, `reasons`, `run_id` and `idempotency_key` (the
    transaction id); its `correlation_id` is the run id (the chain is the run of one file) and
    it has no `caused_by` (no single event caused it). Before the pipeline set them, its
    events had neither field nor `schema_version`: such an event still reads as version 1
    and starts its own chain.
    """

    detail_type = "Fraud Suspected"
    version = "1"

    schema_version: Literal["1"] = "1"
    caused_by: Annotated[
        EventId | None, Field(description="Id of the event that directly caused it")
    ] = None
    transaction_id: Id
    card_id: Id
    score: Score
    model: ModelRef
    decision: Literal["decline"] | None = None
    threshold: Annotated[float, Field(gt=0, lt=1)] | None = None
    band: Literal["high"] | None = None
    reasons: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = None
    run_id: Id | None = None
    idempotency_key: Id | None = None

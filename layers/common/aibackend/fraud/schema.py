"""Public contract of a card transaction as the fraud service receives it (version 1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from aibackend.fraud.currencies import CURRENCY_TO_EUR


def _known_currency(code: str) -> str:
    if code not in CURRENCY_TO_EUR:
        raise ValueError(
            f"unsupported currency {code!r}; supported: {', '.join(sorted(CURRENCY_TO_EUR))}"
        )
    return code


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class Transaction(BaseModel):
    """One card transaction with the velocity context the caller (or the pipeline) knows.

    Numbers and booleans are strict: `"amount": "5"`, `"card_present": "yes"` or
    `"card_age_days": 3.0` are refused (422) instead of being coerced; an integer is still a
    valid amount. Timestamps are ISO 8601 strings (without an offset: UTC).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    transaction_id: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    card_id: Annotated[str, Field(min_length=1, max_length=64)]
    amount: Annotated[float, Strict(), Field(gt=0, le=1_000_000, description="In `currency`")]
    currency: Annotated[
        str,
        Field(
            pattern=r"^[A-Z]{3}$",
            description="ISO 4217 code of a supported currency",
            json_schema_extra={"enum": sorted(CURRENCY_TO_EUR)},
        ),
        AfterValidator(_known_currency),
    ]
    merchant_category: Annotated[str, Field(min_length=1, max_length=40)]
    timestamp: Annotated[datetime, AfterValidator(_aware)]
    card_age_days: Annotated[int, Strict(), Field(ge=0, le=36_500)]
    card_present: Annotated[bool, Strict()]
    country_mismatch: Annotated[
        bool, Strict(), Field(description="Card's issuing country differs from the merchant's")
    ]
    txn_count_1h: Annotated[int, Strict(), Field(ge=0, le=100_000)] = 0
    txn_count_24h: Annotated[int, Strict(), Field(ge=0, le=1_000_000)] = 0
    avg_amount_30d: Annotated[
        float | None,
        Strict(),
        Field(ge=0, description="Card's average amount over 30 days, in `currency`"),
    ] = None
    # Attributes kept for bias monitoring; deliberately not model features.
    customer_age_band: Annotated[str | None, Field(max_length=16)] = None
    region: Annotated[str | None, Field(max_length=32)] = None

"""Fraud features: one definition shared by training, the pipeline and the real-time path.

Input is columnar (a mapping of column name to a sequence or array, one entry per transaction)
so training maps millions of generated rows with the same numpy code the service runs on a
request's batch. The output is the float32 matrix the ONNX graph takes, columns in `FEATURES`
order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aibackend.models.card import Feature

#: Static rates to the base currency (EUR). The pipeline issue replaces this with a rates table.
CURRENCY_TO_EUR: dict[str, float] = {
    "EUR": 1.0,
    "USD": 0.92,
    "GBP": 1.17,
    "CHF": 1.04,
    "SEK": 0.088,
    "NOK": 0.086,
    "DKK": 0.134,
    "PLN": 0.23,
    "CZK": 0.040,
    "JPY": 0.0061,
    "CAD": 0.68,
    "AUD": 0.61,
    "BRL": 0.17,
    "INR": 0.011,
    "MXN": 0.051,
}
CURRENCIES: tuple[str, ...] = tuple(CURRENCY_TO_EUR)

MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurants",
    "fuel",
    "transport",
    "pharmacy",
    "apparel",
    "home",
    "online_services",
    "travel",
    "electronics",
    "jewelry",
    "gaming",
    "gift_cards",
    "money_transfer",
)

FEATURES: tuple[Feature, ...] = (
    Feature(name="amount_eur", kind="numeric", description="amount converted to EUR"),
    Feature(
        name="amount_ratio",
        kind="numeric",
        description="amount / card's 30-day average (1 when unknown)",
    ),
    Feature(
        name="hour",
        kind="numeric",
        description="hour of day, 0-23, in the timestamp's own offset (merchant local time)",
    ),
    Feature(name="card_age_days", kind="numeric"),
    Feature(name="card_present", kind="boolean"),
    Feature(name="country_mismatch", kind="boolean"),
    Feature(name="txn_count_1h", kind="numeric"),
    Feature(name="txn_count_24h", kind="numeric"),
    Feature(name="merchant_category", kind="categorical", categories=MERCHANT_CATEGORIES),
    Feature(name="currency", kind="categorical", categories=CURRENCIES),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)

#: Raw columns `matrix` reads.
RAW_COLUMNS: tuple[str, ...] = (
    "amount",
    "currency",
    "avg_amount_30d",
    "hour",
    "card_age_days",
    "card_present",
    "country_mismatch",
    "txn_count_1h",
    "txn_count_24h",
    "merchant_category",
)

_MERCHANT_CODE = {c: i for i, c in enumerate(MERCHANT_CATEGORIES)}
_CURRENCY_CODE = {c: i for i, c in enumerate(CURRENCIES)}
_RATES = np.array([CURRENCY_TO_EUR[c] for c in CURRENCIES], dtype=np.float64)


def _codes(values: Sequence[str] | np.ndarray, vocab: dict[str, int]) -> np.ndarray:
    # Unseen categories get -1: the trees send them down the "missing" branch.
    get = vocab.get
    return np.fromiter((get(v, -1) for v in values), dtype=np.int64, count=len(values))


def matrix(cols: Mapping[str, Any]) -> np.ndarray:
    """Raw columns -> float32 model input, shape (n, len(FEATURES))."""
    amount = np.asarray(cols["amount"], dtype=np.float64)
    n = amount.shape[0]
    cur = _codes(cols["currency"], _CURRENCY_CODE)
    if (cur < 0).any():
        bad = sorted({str(c) for c, k in zip(cols["currency"], cur, strict=True) if k < 0})
        raise ValueError(f"unsupported currency {bad}; supported: {', '.join(CURRENCIES)}")
    avg = np.asarray(cols["avg_amount_30d"], dtype=np.float64)  # NaN where unknown
    out = np.empty((n, len(FEATURES)), dtype=np.float32)
    out[:, 0] = amount * _RATES[cur]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = amount / avg
    out[:, 1] = np.where(np.isfinite(ratio), ratio, 1.0)
    out[:, 2] = np.asarray(cols["hour"], dtype=np.float32)
    out[:, 3] = np.asarray(cols["card_age_days"], dtype=np.float32)
    out[:, 4] = np.asarray(cols["card_present"], dtype=np.float32)
    out[:, 5] = np.asarray(cols["country_mismatch"], dtype=np.float32)
    out[:, 6] = np.asarray(cols["txn_count_1h"], dtype=np.float32)
    out[:, 7] = np.asarray(cols["txn_count_24h"], dtype=np.float32)
    out[:, 8] = _codes(cols["merchant_category"], _MERCHANT_CODE)
    out[:, 9] = cur
    return out


def columns_from_transactions(txns: Sequence[Any]) -> dict[str, list[Any]]:
    """Columns from `Transaction` objects (one pass per column; no per-row dicts)."""
    return {
        "amount": [t.amount for t in txns],
        "currency": [t.currency for t in txns],
        "avg_amount_30d": [
            float("nan") if t.avg_amount_30d is None else t.avg_amount_30d for t in txns
        ],
        "hour": [t.timestamp.hour for t in txns],
        "card_age_days": [t.card_age_days for t in txns],
        "card_present": [t.card_present for t in txns],
        "country_mismatch": [t.country_mismatch for t in txns],
        "txn_count_1h": [t.txn_count_1h for t in txns],
        "txn_count_24h": [t.txn_count_24h for t in txns],
        "merchant_category": [t.merchant_category for t in txns],
    }


def transactions_matrix(txns: Sequence[Any]) -> np.ndarray:
    """`Transaction` objects -> model input; what the service and real-time consumers call."""
    return matrix(columns_from_transactions(txns))

"""Fraud features: one definition shared by training, the pipeline and the real-time path.

Input is columnar (a mapping of column name to a sequence or array, one entry per transaction)
so training maps millions of generated rows with the same numpy code the service runs on a
request's batch. The output is the float32 matrix the ONNX graph takes, columns in `FEATURES`
order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

import numpy as np

from aibackend.fraud.currencies import CURRENCY_TO_EUR
from aibackend.models.card import Feature

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

#: Larger ratios carry no more signal (training data stays far below) and could overflow float32.
MAX_AMOUNT_RATIO = 1e6

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


class _Vocab:
    """Category -> index lookups, vectorized for numpy string columns."""

    def __init__(self, categories: tuple[str, ...]) -> None:
        self.index = {c: i for i, c in enumerate(categories)}
        order = np.argsort(np.array(categories))
        self.sorted = np.array(categories)[order]
        self.codes = order.astype(np.float64)

    def codes_of(self, values: Sequence[Any]) -> np.ndarray:
        """Index per value as float64; NaN where the value is not in the vocabulary."""
        if isinstance(values, np.ndarray) and values.dtype.kind == "U":
            pos = np.searchsorted(self.sorted, values).clip(0, len(self.sorted) - 1)
            return np.where(self.sorted[pos] == values, self.codes[pos], np.nan)
        # map(dict.get) runs in C; numpy turns the None of unknown values into NaN.
        return np.array(list(map(self.index.get, values)), dtype=np.float64)


_MERCHANTS = _Vocab(MERCHANT_CATEGORIES)
_CURRENCIES = _Vocab(CURRENCIES)
_RATES = np.array([CURRENCY_TO_EUR[c] for c in CURRENCIES], dtype=np.float64)


def matrix(cols: Mapping[str, Any]) -> np.ndarray:
    """Raw columns -> float32 model input, shape (n, len(FEATURES))."""
    amount = np.asarray(cols["amount"], dtype=np.float64)
    n = amount.shape[0]
    cur = _CURRENCIES.codes_of(cols["currency"])
    unknown = np.isnan(cur)
    if unknown.any():
        bad = sorted({str(c) for c, u in zip(cols["currency"], unknown, strict=True) if u})
        raise ValueError(f"unsupported currency {bad}; supported: {', '.join(CURRENCIES)}")
    # None (unknown average) becomes NaN here, and the ratio falls back to 1.
    avg = np.asarray(cols["avg_amount_30d"], dtype=np.float64)
    out = np.empty((n, len(FEATURES)), dtype=np.float32)
    out[:, 0] = amount * _RATES[cur.astype(np.intp)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = amount / avg
    # Bounded before the float32 cast: a tiny average would otherwise overflow to inf.
    out[:, 1] = np.where(np.isfinite(ratio), np.minimum(ratio, MAX_AMOUNT_RATIO), 1.0)
    out[:, 2] = np.asarray(cols["hour"], dtype=np.float32)
    out[:, 3] = np.asarray(cols["card_age_days"], dtype=np.float32)
    out[:, 4] = np.asarray(cols["card_present"], dtype=np.float32)
    out[:, 5] = np.asarray(cols["country_mismatch"], dtype=np.float32)
    out[:, 6] = np.asarray(cols["txn_count_1h"], dtype=np.float32)
    out[:, 7] = np.asarray(cols["txn_count_24h"], dtype=np.float32)
    # An unseen merchant category is a missing value (NaN): the trees' missing-value branch
    # takes it, the same in scikit-learn and in the exported graph.
    out[:, 8] = _MERCHANTS.codes_of(cols["merchant_category"])
    out[:, 9] = cur
    return out


_ROW = attrgetter(
    "amount",
    "currency",
    "avg_amount_30d",
    "timestamp.hour",
    "card_age_days",
    "card_present",
    "country_mismatch",
    "txn_count_1h",
    "txn_count_24h",
    "merchant_category",
)


def columns_from_transactions(txns: Sequence[Any]) -> dict[str, tuple[Any, ...]]:
    """Columns from `Transaction` objects: one C-level getter per row, then a transpose."""
    if not txns:
        return dict.fromkeys(RAW_COLUMNS, ())
    return dict(zip(RAW_COLUMNS, zip(*map(_ROW, txns), strict=True), strict=True))


def transactions_matrix(txns: Sequence[Any]) -> np.ndarray:
    """`Transaction` objects -> model input; what the service and real-time consumers call."""
    return matrix(columns_from_transactions(txns))

"""Per-card history features: the one definition training data, the pipeline and the real-time
scorer compute `txn_count_1h`, `txn_count_24h` and `avg_amount_30d` with.

**Window semantics.** For a transaction of card C at UTC instant t (microseconds), over a
window of length W:

- the window is the half-open interval **[t - W, t)**: a transaction of C exactly W before t
  counts, one at t itself (the transaction, or another one at the same instant) does not;
- `txn_count_1h` counts C's transactions in the window with W = 1 h, `txn_count_24h` with
  W = 24 h;
- `avg_amount_30d` is the mean amount, in EUR, of C's transactions in the window with W = 30 days
  (`math.fsum`, exact whatever the order), converted into the transaction's own currency
  (divided by its EUR rate, as the `Transaction` contract has it); None when there is none.

A card's history is a set of transactions keyed by transaction id (a second copy of an id
replaces the first), each with its event time: the values depend only on which transactions
exist, never on the order they were written or on how often, so a redelivered or reordered
chunk changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from aibackend.fraud.features import CURRENCY_TO_EUR

US = 1_000_000
#: Window lengths in microseconds.
HOUR_US = 3_600 * US
DAY_US = 24 * HOUR_US
MONTH_US = 30 * DAY_US
#: How far back a transaction's features look: history older than this is never read.
LOOKBACK_US = MONTH_US
#: The columns `card_features` computes (they replace the `Transaction` fields of these names).
HISTORY_COLUMNS: tuple[str, ...] = ("txn_count_1h", "txn_count_24h", "avg_amount_30d")


def epoch_us(timestamp: datetime | str) -> int:
    """UTC microseconds since the epoch; a naive timestamp is taken as UTC."""
    ts = datetime.fromisoformat(timestamp) if isinstance(timestamp, str) else timestamp
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def amount_eur(amount: float, currency: str) -> float:
    return amount * CURRENCY_TO_EUR[currency]


@dataclass(frozen=True)
class Txn:
    """What the history keeps of one transaction."""

    card_id: str
    transaction_id: str
    at_us: int
    amount_eur: float


@dataclass(frozen=True)
class CardHistory:
    """One card's transactions, by event time (ascending)."""

    at_us: npt.NDArray[np.int64]
    amount_eur: npt.NDArray[np.float64]

    @classmethod
    def of(cls, txns: Iterable[Txn]) -> CardHistory:
        """Deduplicated by transaction id (the last copy wins), sorted by (time, id)."""
        by_id = {t.transaction_id: t for t in txns}
        ordered = sorted(by_id.values(), key=lambda t: (t.at_us, t.transaction_id))
        return cls(
            at_us=np.array([t.at_us for t in ordered], dtype=np.int64),
            amount_eur=np.array([t.amount_eur for t in ordered], dtype=np.float64),
        )


def histories(txns: Iterable[Txn]) -> dict[str, CardHistory]:
    """Transactions grouped into per-card histories."""
    by_card: dict[str, list[Txn]] = {}
    for t in txns:
        by_card.setdefault(t.card_id, []).append(t)
    return {card: CardHistory.of(rows) for card, rows in by_card.items()}


def card_features(history: CardHistory, at_us: int, currency: str) -> tuple[int, int, float | None]:
    """(`txn_count_1h`, `txn_count_24h`, `avg_amount_30d`) at `at_us` from the card's history
    (see the module docstring for the windows)."""
    times = history.at_us
    end = int(np.searchsorted(times, at_us, side="left"))
    start_1h, start_24h, start_30d = np.searchsorted(
        times, [at_us - HOUR_US, at_us - DAY_US, at_us - MONTH_US], side="left"
    ).tolist()
    n_30d = end - start_30d
    avg = None
    if n_30d:
        avg = math.fsum(history.amount_eur[start_30d:end].tolist()) / n_30d
        avg /= CURRENCY_TO_EUR[currency]
    return end - start_1h, end - start_24h, avg


_EMPTY = CardHistory(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


def history_columns(
    card_ids: Sequence[str],
    at_us: Sequence[int],
    currencies: Sequence[str],
    history: Mapping[str, CardHistory],
) -> dict[str, list[Any]]:
    """`HISTORY_COLUMNS` for many transactions at once, each from its card's history."""
    out: dict[str, list[Any]] = {name: [] for name in HISTORY_COLUMNS}
    for card, at, cur in zip(card_ids, at_us, currencies, strict=True):
        values = card_features(history.get(card, _EMPTY), int(at), cur)
        for name, value in zip(HISTORY_COLUMNS, values, strict=True):
            out[name].append(value)
    return out


def generated_with_history(cols: Mapping[str, Any]) -> dict[str, Any]:
    """Generator columns (`aibackend.fraud.generator`) with `HISTORY_COLUMNS` recomputed from
    the generated transactions themselves: the training-data path of the definition.

    The generator draws these three columns from each card's behaviour rather than from its
    own rows (the fraud model's training data keeps doing so); this gives a data set whose
    history features mean exactly what the pipeline and the real-time path compute.
    """
    local = np.asarray(cols["timestamp"], dtype="datetime64[s]")
    offsets = np.asarray(cols["utc_offset_min"], dtype=np.int64)
    utc_us = (local.astype(np.int64) - offsets * 60) * US
    cards = np.asarray(cols["card_id"]).tolist()
    currencies = np.asarray(cols["currency"]).tolist()
    ids = np.asarray(cols["transaction_id"]).tolist()
    amounts = np.asarray(cols["amount"], dtype=np.float64).tolist()
    at = utc_us.tolist()
    txns = [
        Txn(card, txn, t, amount_eur(a, cur))
        for card, txn, t, a, cur in zip(cards, ids, at, amounts, currencies, strict=True)
    ]
    derived = history_columns(cards, at, currencies, histories(txns))
    out = dict(cols)
    out["txn_count_1h"] = np.array(derived["txn_count_1h"], dtype=np.int64)
    out["txn_count_24h"] = np.array(derived["txn_count_24h"], dtype=np.int64)
    out["avg_amount_30d"] = np.array(
        [math.nan if v is None else v for v in derived["avg_amount_30d"]], dtype=np.float64
    )
    return out


def with_history(txns: Sequence[Any], history: Mapping[str, CardHistory]) -> list[Any]:
    """`Transaction` objects with `HISTORY_COLUMNS` from the cards' histories: the real-time
    path's hook (a scorer holding an online feature table calls this before
    `features.transactions_matrix`)."""
    out = []
    for t in txns:
        values = card_features(history.get(t.card_id, _EMPTY), epoch_us(t.timestamp), t.currency)
        out.append(t.model_copy(update=dict(zip(HISTORY_COLUMNS, values, strict=True))))
    return out

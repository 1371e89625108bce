"""Score: online features, batch inference, risk band and reason codes for one chunk.

A chunk's transactions are first written to the feature table, then each one's history
features are computed from its card's stored transactions with `aibackend.fraud.velocity`
(the definition training and the real-time path share). The scored row is the valid row with
`txn_count_1h`, `txn_count_24h` and `avg_amount_30d` replaced by those online values (what the
model saw), plus `score`, `band`, `reasons` and `model` ({name, version}).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from aibackend.errors import ConfigError
from aibackend.fraud.features import FEATURES, matrix
from aibackend.fraud.velocity import (
    HISTORY_COLUMNS,
    LOOKBACK_US,
    Txn,
    amount_eur,
    epoch_us,
    history_columns,
)
from aibackend.models.card import Baseline, CategoricalStats
from aibackend.models.runtime import LoadedModel
from aibackend.pipeline.features import FeatureStore
from aibackend.pipeline.messages import Record
from aibackend.ports import PutEvent

SOURCE = "aib.pipeline"
#: Reason codes per transaction, at most.
TOP_REASONS = 3


@dataclass(frozen=True)
class Bands:
    """Risk bands, the same cut-offs and variables as fraud_score's v2 `RiskPolicy`: `low`
    below `FRAUD_RISK_MEDIUM_AT`, `high` from `FRAUD_RISK_HIGH_AT`."""

    medium_at: float = 0.2
    high_at: float = 0.5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Bands:
        env = os.environ if env is None else env
        try:
            medium = float(env.get("FRAUD_RISK_MEDIUM_AT", cls.medium_at))
            high = float(env.get("FRAUD_RISK_HIGH_AT", cls.high_at))
        except ValueError as e:
            raise ConfigError(f"FRAUD_RISK_MEDIUM_AT / FRAUD_RISK_HIGH_AT: {e}") from e
        if not 0 < medium < high < 1:
            raise ConfigError(
                f"need 0 < FRAUD_RISK_MEDIUM_AT ({medium}) < FRAUD_RISK_HIGH_AT ({high}) < 1 "
                "(function.toml [environment])"
            )
        return cls(medium, high)

    def band(self, score: float) -> str:
        return "high" if score >= self.high_at else "medium" if score >= self.medium_at else "low"


def reference_row(baseline: Baseline) -> npt.NDArray[np.float32]:
    """The typical training input: each numeric feature's median (p50), each categorical
    feature's most frequent category (its code)."""
    ref = np.empty(len(FEATURES), dtype=np.float32)
    for j, f in enumerate(FEATURES):
        stats = baseline.features[f.name]
        if isinstance(stats, CategoricalStats):
            known = {c: s for c, s in stats.frequencies.items() if c in f.categories}
            ref[j] = f.categories.index(max(known, key=lambda c: known[c]))
        else:
            ref[j] = stats.quantiles[5]
    return ref


@dataclass(frozen=True)
class Scores:
    score: npt.NDArray[np.float64]
    #: Per row, up to `TOP_REASONS` feature names, largest contribution first.
    reasons: list[list[str]]


def score_matrix(
    model: LoadedModel, x: npt.NDArray[np.float32], ref: npt.NDArray[np.float32]
) -> Scores:
    """Scores and reason codes with one `session.run` for the whole chunk.

    Reason codes by occlusion: for each feature, the row is scored again with that feature set
    to its `reference_row` value; the feature's contribution is the score minus that
    occluded score. A transaction's reasons are the features with the largest positive
    contributions (ties: the earlier feature in `FEATURES`), at most `TOP_REASONS`. The
    original and the n x features occluded rows go through the model as one stacked batch.
    Deterministic: the same matrix gives the same reasons.
    """
    n, k = x.shape
    stacked = np.repeat(x[np.newaxis], k + 1, axis=0)  # (k + 1, n, k); block 0 is the original
    for j in range(k):
        stacked[j + 1, :, j] = ref[j]
    probs = model.predict_proba(stacked.reshape(-1, k)).reshape(k + 1, n)
    score = probs[0]
    contribution = score[np.newaxis, :] - probs[1:]  # (k, n)
    order = np.argsort(-contribution, axis=0, kind="stable")[:TOP_REASONS]  # (top, n)
    names = [f.name for f in FEATURES]
    reasons = [[names[j] for j in order[:, i].tolist() if contribution[j, i] > 0] for i in range(n)]
    return Scores(score=score, reasons=reasons)


def feature_txns(records: Sequence[Record]) -> list[Txn]:
    return [
        Txn(
            r["card_id"],
            r["transaction_id"],
            epoch_us(r["timestamp"]),
            amount_eur(r["amount"], r["currency"]),
        )
        for r in records
    ]


def online_columns(records: Sequence[Record], features: FeatureStore) -> dict[str, list[Any]]:
    """Write the chunk's transactions, then compute their `HISTORY_COLUMNS` from the table."""
    txns = feature_txns(records)
    features.put(txns)
    at = [t.at_us for t in txns]
    cards = [t.card_id for t in txns]
    history = features.histories(cards, min(at) - LOOKBACK_US, max(at))
    return history_columns(cards, at, [r["currency"] for r in records], history)


def model_columns(records: Sequence[Record], online: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The raw columns `features.matrix` reads: the rows' own fields, the online history
    features, and the hour of the timestamp in its own offset (as the real-time path)."""
    cols: dict[str, Any] = {
        name: [r[name] for r in records]
        for name in ("amount", "currency", "card_age_days", "card_present", "country_mismatch")
    }
    cols["merchant_category"] = [r["merchant_category"] for r in records]
    cols["hour"] = [datetime.fromisoformat(r["timestamp"]).hour for r in records]
    cols.update(online)
    return cols


def score_chunk(
    records: Sequence[Record],
    *,
    model: LoadedModel,
    features: FeatureStore,
    bands: Bands,
    ref: npt.NDArray[np.float32],
) -> list[Record]:
    """The chunk's scored rows, in order."""
    if not records:
        return []
    online = online_columns(records, features)
    scores = score_matrix(model, matrix(model_columns(records, online)), ref)
    out = []
    for i, r in enumerate(records):
        s = float(scores.score[i])
        row = {**r, **{name: online[name][i] for name in HISTORY_COLUMNS}}
        row.update(
            score=s,
            band=bands.band(s),
            reasons=scores.reasons[i],
            model={"name": model.name, "version": model.version},
        )
        out.append(row)
    return out


def suspected_events(run_id: str, rows: Sequence[Record]) -> list[PutEvent]:
    """`Fraud Suspected` for each high-risk row; `idempotency_key` is the transaction id, so a
    redelivered chunk's second publication is recognisable downstream."""
    return [
        PutEvent(
            source=SOURCE,
            detail_type="Fraud Suspected",
            detail={
                "idempotency_key": r["transaction_id"],
                "transaction_id": r["transaction_id"],
                "card_id": r["card_id"],
                "score": r["score"],
                "band": r["band"],
                "reasons": r["reasons"],
                "model": r["model"],
                "run_id": run_id,
            },
        )
        for r in rows
        if r["band"] == "high"
    ]

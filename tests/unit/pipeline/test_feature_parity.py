"""Feature parity: the same transactions give identical model inputs through the training-data
path, the pipeline (CSV -> validate -> online feature table -> score columns) and the real-time
path (`Transaction` objects -> `velocity.with_history` -> `transactions_matrix`)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aibackend.fraud.features import matrix, transactions_matrix
from aibackend.fraud.generator import generate_transactions, to_records, write_csv
from aibackend.fraud.schema import Transaction
from aibackend.fraud.velocity import (
    CardHistory,
    Txn,
    amount_eur,
    card_features,
    epoch_us,
    generated_with_history,
    histories,
    history_columns,
)
from aibackend.fraud.velocity import with_history as realtime_with_history
from aibackend.pipeline.features import SqliteFeatureStore
from aibackend.pipeline.ingest import read_chunks
from aibackend.pipeline.messages import Columns
from aibackend.pipeline.score import model_columns, online_columns
from aibackend.pipeline.validate import validate_chunk

ROWS = 3_000
CHUNK = 500


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    # Few cards, so that cards have real histories (several transactions per hour and day).
    return generate_transactions(ROWS, seed=11, n_cards=40)


def _training(cols: dict[str, Any]) -> np.ndarray:
    return matrix(generated_with_history(cols))


def _pipeline_rows(cols: dict[str, Any], tmp: Path) -> list[Columns]:
    """The generator's CSV, read and validated in chunks as the pipeline does."""
    path = tmp / "day.csv"
    write_csv(cols, path)
    chunks = []
    with path.open("rb") as raw:
        for columns in read_chunks(raw, path.name, CHUNK):
            result = validate_chunk(columns, now=2e9, claim=lambda _ids: set())
            assert not result.quarantined
            chunks.append(result.valid)
    return chunks


def _pipeline(chunks: list[Columns], store: SqliteFeatureStore) -> np.ndarray:
    return np.vstack([matrix(model_columns(c, online_columns(c, store))) for c in chunks])


def test_training_pipeline_and_real_time_give_identical_feature_vectors(
    generated: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN generated transactions
    cols = generated
    # WHEN their model inputs are computed on the training path
    training = _training(cols)
    # ... on the pipeline path, chunk by chunk in file order
    pipeline = _pipeline(_pipeline_rows(cols, tmp_path), SqliteFeatureStore(tmp_path / "f.db"))
    # ... and on the real-time path, each transaction against the cards' stored history
    txns = [Transaction.model_validate(r) for r in to_records(cols)]
    history = histories(
        Txn(
            t.card_id,
            str(t.transaction_id),
            epoch_us(t.timestamp),
            amount_eur(t.amount, t.currency),
        )
        for t in txns
    )
    realtime = transactions_matrix(realtime_with_history(txns, history))
    # THEN all three are identical, bit for bit
    assert training.dtype == pipeline.dtype == realtime.dtype == np.float32
    np.testing.assert_array_equal(training, pipeline)
    np.testing.assert_array_equal(training, realtime)
    # ... and the history features carry signal (cards have histories to count)
    assert training[:, 6].max() >= 2 and training[:, 7].max() >= 5


def test_pipeline_features_do_not_change_with_redelivered_or_reordered_chunks(
    generated: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN the pipeline's features after the chunks arrived in file order
    chunks = _pipeline_rows(generated, tmp_path)
    store = SqliteFeatureStore(tmp_path / "f.db")
    first = _pipeline(chunks, store)
    # WHEN every chunk is delivered again, in a shuffled order, some twice
    order = [*range(len(chunks)), 0, 2]
    random.Random(3).shuffle(order)
    again = {k: matrix(model_columns(chunks[k], online_columns(chunks[k], store))) for k in order}
    # THEN every chunk's features are what they were
    np.testing.assert_array_equal(first, np.vstack([again[k] for k in range(len(chunks))]))


def test_a_chunk_is_unaffected_by_later_chunks_written_before_it(
    generated: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN the last chunk scored first, then the others in reverse order
    chunks = _pipeline_rows(generated, tmp_path)
    store = SqliteFeatureStore(tmp_path / "f.db")
    reversed_run = {
        k: matrix(model_columns(chunks[k], online_columns(chunks[k], store)))
        for k in reversed(range(len(chunks)))
    }
    # THEN the first chunk (whose history is all in itself) gets the training path's values:
    # transactions after a row never count towards it
    np.testing.assert_array_equal(reversed_run[0], _training(generated)[:CHUNK])


def test_one_search_over_many_cards_equals_each_card_on_its_own(generated: dict[str, Any]) -> None:
    # GIVEN the generated transactions as the cards' histories, and queries for every
    # transaction plus a card without history
    cards = [str(c) for c in generated["card_id"]]
    txns = [
        Txn(card, str(txn), at, 10.0 + i % 7)
        for i, (card, txn, at) in enumerate(
            zip(cards, generated["transaction_id"], _utc_us(generated), strict=True)
        )
    ]
    table = histories(txns)
    queries = [*cards, "card-without-history"]
    at = [t.at_us for t in txns] + [txns[0].at_us]
    currencies = ["EUR", "USD", "GBP", "JPY"] * (len(queries) // 4) + ["EUR"] * (len(queries) % 4)
    # WHEN all windows are found at once, over the whole table
    together = history_columns(queries, at, currencies, table)
    # THEN each transaction has what its card's own history alone gives it
    alone = [
        card_features(table[c] if c in table else CardHistory.of([]), t, cur)
        for c, t, cur in zip(queries, at, currencies, strict=True)
    ]
    assert list(zip(*together.values(), strict=True)) == alone
    assert alone[-1] == (0, 0, None) and max(a[1] for a in alone) >= 5


def _utc_us(cols: dict[str, Any]) -> list[int]:
    local = np.asarray(cols["timestamp"], dtype="datetime64[s]").astype(np.int64)
    return ((local - np.asarray(cols["utc_offset_min"], dtype=np.int64) * 60) * 10**6).tolist()

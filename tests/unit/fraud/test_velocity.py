"""The per-card history features' window semantics, on hand-made histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aibackend.fraud.currencies import CURRENCY_TO_EUR
from aibackend.fraud.schema import Transaction
from aibackend.fraud.velocity import (
    DAY_US,
    HOUR_US,
    MONTH_US,
    CardHistory,
    Txn,
    card_features,
    epoch_us,
    histories,
    history_columns,
    with_history,
)

T = epoch_us("2024-03-10T12:00:00+00:00")


def _history(*rows: tuple[str, int, float]) -> CardHistory:
    return CardHistory.of(Txn("c1", txn, at, eur) for txn, at, eur in rows)


def test_epoch_us_given_an_offset_timestamp_is_the_utc_instant() -> None:
    # GIVEN the same instant written in two offsets, and a naive one
    # WHEN converted THEN they agree (naive counts as UTC)
    assert epoch_us("2024-03-10T13:00:00+01:00") == T
    assert epoch_us("2024-03-10T12:00:00") == T
    assert epoch_us(datetime(2024, 3, 10, 12, 0, 0, 1, tzinfo=UTC)) == T + 1


@pytest.mark.parametrize(
    ("before_us", "in_1h", "in_24h", "in_30d"),
    [
        (0, False, False, False),  # same instant: not before it
        (1, True, True, True),
        (HOUR_US, True, True, True),  # exactly 1 h before: inside [t - 1 h, t)
        (HOUR_US + 1, False, True, True),
        (DAY_US, False, True, True),
        (DAY_US + 1, False, False, True),
        (MONTH_US, False, False, True),
        (MONTH_US + 1, False, False, False),
        (-1, False, False, False),  # after it
    ],
)
def test_card_features_given_one_earlier_transaction_counts_it_only_inside_each_window(
    before_us: int, in_1h: bool, in_24h: bool, in_30d: bool
) -> None:
    # GIVEN a card whose only other transaction is `before_us` before T
    h = _history(("a", T - before_us, 50.0))
    # WHEN its features at T are computed
    c1, c24, avg = card_features(h, T, "EUR")
    # THEN each window is [t - W, t)
    assert (c1, c24) == (int(in_1h), int(in_24h))
    assert avg == (50.0 if in_30d else None)


def test_card_features_average_is_in_eur_converted_to_the_transactions_currency() -> None:
    # GIVEN two earlier transactions worth 30 and 60 EUR
    h = _history(("a", T - 10, 30.0), ("b", T - 20, 60.0))
    # WHEN computed for a USD transaction
    _, _, avg = card_features(h, T, "USD")
    # THEN the mean (45 EUR) is expressed in USD
    assert avg == pytest.approx(45.0 / CURRENCY_TO_EUR["USD"])


def test_card_history_given_redelivered_and_reordered_rows_gives_the_same_values() -> None:
    # GIVEN the same transactions written in order, then reversed with a duplicate
    rows = [("a", T - 3 * HOUR_US, 10.0), ("b", T - 30 * 60 * 10**6, 20.0), ("c", T - 5, 0.1)]
    in_order = _history(*rows)
    shuffled = _history(*reversed(rows), rows[1])
    # WHEN features are computed at several instants THEN both histories agree exactly
    for at in (T - HOUR_US, T - 1, T, T + DAY_US):
        assert card_features(in_order, at, "GBP") == card_features(shuffled, at, "GBP")
    assert card_features(in_order, T, "EUR")[:2] == (2, 3)


def test_card_history_given_a_transaction_id_twice_keeps_the_last_copy() -> None:
    # GIVEN an id written twice (a corrected amount)
    h = _history(("a", T - 10, 10.0), ("a", T - 10, 30.0))
    # THEN it counts once, with the last amount
    assert card_features(h, T, "EUR") == (1, 1, 30.0)


def test_with_history_gives_transactions_their_cards_own_features() -> None:
    # GIVEN two cards' histories and a transaction of each at T
    hist = histories([Txn("c1", "a", T - 10, 10.0), Txn("c2", "b", T - 2 * HOUR_US, 20.0)])
    base = {
        "amount": 5.0,
        "currency": "EUR",
        "merchant_category": "grocery",
        "timestamp": datetime(2024, 3, 10, 12, tzinfo=UTC) + timedelta(0),
        "card_age_days": 100,
        "card_present": True,
        "country_mismatch": False,
        "txn_count_1h": 99,
        "txn_count_24h": 99,
        "avg_amount_30d": 1.0,
    }
    txns = [Transaction(card_id="c1", **base), Transaction(card_id="c2", **base)]
    # WHEN the real-time hook fills in the history features
    out = with_history(txns, hist)
    # THEN each gets its own card's values, replacing what the client sent
    assert [(t.txn_count_1h, t.txn_count_24h, t.avg_amount_30d) for t in out] == [
        (1, 1, 10.0),
        (0, 1, 20.0),
    ]


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["c1", "c2"]),
            # Around T, on the window edges too: whole hours, days and 30 days before it
            st.one_of(
                st.integers(-MONTH_US - DAY_US, DAY_US),
                st.sampled_from([0, -HOUR_US, -DAY_US, -MONTH_US, -MONTH_US - 1, 1]),
            ),
            st.floats(0.01, 5_000, allow_nan=False),
        ),
        max_size=40,
    ),
    card=st.sampled_from(["c1", "c2", "never-seen"]),
    currency=st.sampled_from(sorted(CURRENCY_TO_EUR)),
)
def test_one_transactions_columns_equal_the_table_wide_computation(
    rows: list[tuple[str, int, float]], card: str, currency: str
) -> None:
    # GIVEN any two cards' histories around T (ties and window edges included)
    table = histories(Txn(c, f"t{i}", T + dt, eur) for i, (c, dt, eur) in enumerate(rows))
    # WHEN one transaction's columns are computed alone (the real-time path) and in a call of
    # two (the table-wide ranking the pipeline uses)
    alone = history_columns([card], [T], [currency], table)
    together = history_columns([card, "c1"], [T, T], [currency, "EUR"], table)
    # THEN they are the same values, bit for bit
    assert alone == {name: values[:1] for name, values in together.items()}

"""The one feature definition: columns and Transaction objects map to the same matrix."""

from __future__ import annotations

import numpy as np
import pytest

from aibackend.fraud.features import FEATURE_NAMES, matrix, transactions_matrix
from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.fraud.schema import Transaction


def test_objects_and_columns_give_the_same_matrix() -> None:
    # GIVEN generated columns and the Transaction objects a request would carry
    cols = generate_transactions(500, seed=3)
    txns = [Transaction.model_validate(r) for r in to_records(cols)]
    # THEN both paths produce the identical float32 matrix
    a, b = matrix(cols), transactions_matrix(txns)
    assert a.dtype == np.float32
    assert a.shape == (500, len(FEATURE_NAMES))
    np.testing.assert_array_equal(a, b)


def test_amount_is_converted_to_eur_and_ratio_defaults_to_one() -> None:
    cols = {
        "amount": [100.0, 100.0],
        "currency": ["USD", "EUR"],
        "avg_amount_30d": [50.0, None],
        "hour": [3, 14],
        "card_age_days": [10, 1000],
        "card_present": [False, True],
        "country_mismatch": [True, False],
        "txn_count_1h": [5, 0],
        "txn_count_24h": [9, 1],
        "merchant_category": ["electronics", "grocery"],
    }
    x = matrix(cols)
    assert x[0, FEATURE_NAMES.index("amount_eur")] == pytest.approx(92.0)
    assert x[0, FEATURE_NAMES.index("amount_ratio")] == pytest.approx(2.0)
    assert x[1, FEATURE_NAMES.index("amount_ratio")] == 1.0


def test_unknown_merchant_category_is_missing_and_unknown_currency_is_refused() -> None:
    base = generate_transactions(2, seed=1)
    for as_list in (False, True):
        cols = {k: (list(v) if as_list else v) for k, v in base.items()}
        cols["merchant_category"] = (
            ["grocery", "space_tourism"] if as_list else np.array(["grocery", "space_tourism"])
        )
        x = matrix(cols)
        assert x[0, 8] == 0.0
        assert np.isnan(x[1, 8])
    cols = dict(base, currency=np.array(["EUR", "XYZ"]))
    with pytest.raises(ValueError, match=r"unsupported currency \['XYZ'\]"):
        matrix(cols)

"""Column-at-a-time validation against the fraud Transaction contract's limits."""

from __future__ import annotations

import time
from typing import Any

import pytest

from aibackend.fraud.generator import generate_transactions, to_records
from aibackend.fraud.schema import Transaction
from aibackend.pipeline.messages import from_records
from aibackend.pipeline.messages import to_records as rows_of
from aibackend.pipeline.validate import RULES, validate_chunk

NOW = time.time()


def _rows(n: int = 20, seed: int = 7) -> list[dict[str, Any]]:
    """Generator records as a CSV gives them: every value a string, an empty field None."""
    out = []
    for r in to_records(generate_transactions(n, seed=seed)):
        out.append(
            {
                k: None if v is None else str(int(v)) if isinstance(v, bool) else str(v)
                for k, v in r.items()
            }
        )
    return out


def _no_claims(ids: list[str]) -> set[str]:
    return set()


def test_the_limits_are_the_contracts() -> None:
    # GIVEN the rules read from Transaction WHEN compared with its fields THEN they agree
    rules = {r.name: r for r in RULES}
    assert set(rules) == set(Transaction.model_fields)
    assert (rules["amount"].gt, rules["amount"].le) == (0, 1_000_000)
    assert (rules["card_age_days"].ge, rules["card_age_days"].le) == (0, 36_500)
    assert rules["merchant_category"].max_len == 40
    assert rules["transaction_id"].required  # the pipeline needs it; the API does not
    assert not rules["avg_amount_30d"].required


def test_valid_rows_come_out_typed_and_accepted_by_the_contract() -> None:
    # GIVEN generator rows in CSV's string form
    rows = _rows()
    # WHEN the chunk is validated
    result = validate_chunk(from_records(rows), now=NOW, claim=_no_claims)
    # THEN every row is valid, typed, and the real-time contract accepts it as it is
    assert result.quarantined == []
    assert result.valid_rows == len(rows)
    for v in rows_of(result.valid):
        assert Transaction.model_validate(v).model_dump(mode="json")["amount"] == v["amount"]
        assert isinstance(v["card_present"], bool) and isinstance(v["card_age_days"], int)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("amount", "0", "amount: must be greater than 0"),
        ("amount", "1000000.5", "amount: must be at most 1000000"),
        ("amount", "NaN", "amount: not a valid float"),
        ("amount", None, "amount: missing"),
        ("currency", "eur", "currency: unsupported currency code"),
        ("timestamp", "2024-13-01T00:00:00", "timestamp: not a valid timestamp"),
        ("timestamp", "2999-01-01T00:00:00Z", "timestamp: in the future"),
        ("card_age_days", "-1", "card_age_days: must be at least 0"),
        ("card_present", "yes", "card_present: not a valid bool"),
        ("merchant_category", "x" * 41, "merchant_category: longer than 40 characters"),
        ("transaction_id", None, "transaction_id: missing"),
        ("txn_count_1h", "100001", "txn_count_1h: must be at most 100000"),
    ],
)
def test_a_broken_value_quarantines_its_row_with_the_reason(
    field: str, value: str | None, reason: str
) -> None:
    # GIVEN a chunk whose row 3 breaks one rule
    rows = _rows()
    rows[3][field] = value
    # WHEN validated
    result = validate_chunk(from_records(rows), now=NOW, claim=_no_claims)
    # THEN only row 3 is quarantined, as received, with that reason
    assert [(q["index"], q["reason"]) for q in result.quarantined] == [(3, reason)]
    assert result.quarantined[0]["row"] == rows[3]
    assert result.valid_rows == len(rows) - 1
    assert rows[3]["transaction_id"] not in result.valid["transaction_id"]


def test_optional_fields_may_be_empty() -> None:
    # GIVEN a row without the optional velocity and bias fields
    rows = _rows(3)
    for f in ("txn_count_1h", "txn_count_24h", "avg_amount_30d", "region", "customer_age_band"):
        rows[0][f] = None
    # WHEN validated THEN it is valid, with the contract's defaults
    (first, *_) = rows_of(validate_chunk(from_records(rows), now=NOW, claim=_no_claims).valid)
    assert (first["txn_count_1h"], first["avg_amount_30d"], first["region"]) == (0, None, None)


def test_duplicates_within_the_chunk_and_the_run_are_quarantined() -> None:
    # GIVEN a chunk repeating row 0's id in row 5, and whose row 8's id another chunk holds
    rows = _rows()
    rows[5]["transaction_id"] = rows[0]["transaction_id"]
    held = rows[8]["transaction_id"]
    claimed: list[str] = []

    def claim(ids: list[str]) -> set[str]:
        claimed.extend(ids)
        return {held}

    # WHEN validated
    result = validate_chunk(from_records(rows), now=NOW, claim=claim)
    # THEN the first occurrence stays valid, the repeat and the other chunk's id do not
    assert [(q["index"], q["reason"]) for q in result.quarantined] == [
        (5, "transaction_id: duplicate within the chunk"),
        (8, "transaction_id: duplicate of a row in another chunk of this run"),
    ]
    # AND only the ids of rows valid so far were claimed, once each
    assert len(claimed) == len(set(claimed)) == len(rows) - 1


def test_a_line_that_was_no_json_object_is_quarantined() -> None:
    # GIVEN a JSON Lines chunk with a line that did not parse
    rows: list[dict[str, Any]] = [*_rows(2), {"_raw": "{not json"}]
    # WHEN validated THEN that row is quarantined for it, as it was received
    result = validate_chunk(from_records(rows), now=NOW, claim=_no_claims)
    assert [(q["index"], q["reason"], q["row"]) for q in result.quarantined] == [
        (2, "row: not a JSON object", {"_raw": "{not json"})
    ]
    assert result.valid_rows == 2

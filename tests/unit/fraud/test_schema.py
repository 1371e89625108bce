"""The transaction contract refuses what it would otherwise have to guess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aibackend.fraud.schema import Transaction

SAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[3] / "events" / "payloads" / "transaction.json").read_text()
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "5"),  # a number in a string
        ("card_present", "yes"),  # lax pydantic would read it as True
        ("card_present", 1),
        ("country_mismatch", "false"),
        ("card_age_days", 3.5),
        ("card_age_days", "3"),
        ("txn_count_1h", "2"),
        ("avg_amount_30d", "10.0"),
        ("card_id", "   "),  # blank once stripped
    ],
)
def test_a_value_of_the_wrong_type_is_refused_not_coerced(field: str, value: Any) -> None:
    # GIVEN the sample transaction with one field of the wrong JSON type
    # WHEN it is validated THEN the error names that field
    with pytest.raises(ValidationError) as e:
        Transaction.model_validate({**SAMPLE, field: value})
    assert {err["loc"][0] for err in e.value.errors()} == {field}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("amount", 5, 5.0),  # a JSON integer is a number
        ("avg_amount_30d", None, None),
        ("avg_amount_30d", 12, 12.0),
        ("timestamp", "2026-11-27T10:00:00", "2026-11-27T10:00:00Z"),  # no offset: UTC
    ],
)
def test_values_json_gives_naturally_are_accepted(field: str, value: Any, expected: Any) -> None:
    txn = Transaction.model_validate({**SAMPLE, field: value})
    assert txn.model_dump(mode="json")[field] == expected

"""Catalogue and histories in a graph's metadata: a lossless round trip, damage detected."""

from __future__ import annotations

import numpy as np
import pytest

from aibackend.errors import ModelLoadError
from aibackend.recommend.artifact import (
    ITEM_IDS_KEY,
    ITEMS_KEY,
    OFFSETS_KEY,
    USER_IDS_KEY,
    ModelData,
    UserHistories,
)


def _data() -> ModelData:
    # u-b touched items 2 and 0 (and 2 again); u-a touched item 1; u-c nothing kept
    histories = UserHistories.from_pairs(
        ("u-a", "u-b", "u-c"), np.array([1, 1, 0, 1]), np.array([2, 0, 1, 2])
    )
    return ModelData(item_ids=("i0", "i1", "é2"), histories=histories)


def test_pairs_become_sorted_distinct_rows() -> None:
    h = _data().histories
    assert h.row(0).tolist() == [1]
    assert h.row(1).tolist() == [0, 2]
    assert h.row(2).tolist() == []
    assert np.array_equal(h.items_of("u-b"), [0, 2])  # type: ignore[arg-type]
    assert h.items_of("nobody") is None
    assert "u-a" in h and "nobody" not in h
    assert h.interactions == 3


def test_metadata_round_trip_is_lossless() -> None:
    data = _data()
    meta = data.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    back = ModelData.from_metadata(meta)
    assert back.item_ids == data.item_ids
    assert back.histories.user_ids == data.histories.user_ids
    np.testing.assert_array_equal(back.histories.offsets, data.histories.offsets)
    np.testing.assert_array_equal(back.histories.items, data.histories.items)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: m.pop(OFFSETS_KEY), r"lacks metadata aib\.recommend\.history_offsets"),
        (lambda m: m.update({USER_IDS_KEY: "[1, 2]"}), "unreadable catalogue or histories"),
        (lambda m: m.update({ITEMS_KEY: "not base64!"}), "unreadable catalogue or histories"),
        (lambda m: m.update({USER_IDS_KEY: '["u-a"]'}), r"do not fit 1 users and 3 items"),
        (lambda m: m.update({ITEM_IDS_KEY: '["i0"]'}), r"do not fit 3 users and 1 items"),
    ],
    ids=["missing-key", "ids-not-strings", "bad-base64", "user-count", "item-out-of-range"],
)
def test_damaged_metadata_is_refused(damage: object, message: str) -> None:
    meta = _data().to_metadata()
    damage(meta)  # type: ignore[operator]
    with pytest.raises(ModelLoadError, match=message):
        ModelData.from_metadata(meta)

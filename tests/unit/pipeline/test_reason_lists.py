"""GIVEN/WHEN/THEN: reason codes spelled out per distinct tuple equal the per-row definition."""

from __future__ import annotations

import numpy as np

from aibackend.fraud.features import FEATURES
from aibackend.pipeline.score import TOP_REASONS, _reason_lists

NAMES = [f.name for f in FEATURES]


def per_row(order: np.ndarray, positive: np.ndarray) -> list[list[str]]:
    """The definition: each row's top features in order, those with a positive contribution."""
    return [
        [NAMES[j] for j, p in zip(js, ps, strict=True) if p]
        for js, ps in zip(order.T.tolist(), positive.T.tolist(), strict=True)
    ]


def test_reason_lists_match_the_per_row_definition_on_random_rankings() -> None:
    rng = np.random.default_rng(7)
    k, n = len(FEATURES), 3_000
    # GIVEN each row's ranking of the features by contribution (best first) and how many of its
    # top ones contributed positively (0 to TOP_REASONS: positives always lead a ranking)
    order = np.argsort(rng.random((k, n)), axis=0)[:TOP_REASONS]
    leading = rng.integers(0, TOP_REASONS + 1, size=n)
    positive = np.arange(TOP_REASONS)[:, np.newaxis] < leading[np.newaxis, :]
    # WHEN the reasons are spelled out
    got = _reason_lists(order, positive)
    # THEN every row has exactly the definition's names, and no two rows share a list object
    assert got == per_row(order, positive)
    assert len({id(r) for r in got}) == n
    assert any(r == [] for r in got) and any(len(r) == TOP_REASONS for r in got)


def test_reason_lists_of_an_empty_chunk_are_empty() -> None:
    empty = np.zeros((TOP_REASONS, 0), dtype=np.intp)
    assert _reason_lists(empty, empty.astype(bool)) == []

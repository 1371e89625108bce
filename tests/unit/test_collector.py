"""GIVEN/WHEN/THEN: the collector settings batch functions apply at INIT."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from aibackend.collector import BATCH_THRESHOLDS, tune_for_batches


@pytest.fixture
def restore_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("restore_thresholds")
def test_batches_make_young_collections_rarer_and_keep_the_older_ratios() -> None:
    # GIVEN CPython's defaults
    gc.set_threshold(700, 10, 10)
    # WHEN a batch function tunes the collector at INIT
    tune_for_batches()
    # THEN young passes run every 10,000 allocations, the older generations as before
    assert gc.get_threshold() == BATCH_THRESHOLDS == (10_000, 10, 10)
    assert gc.isenabled()

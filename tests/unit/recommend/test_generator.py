"""The synthetic interaction generator: seeded, power-law popularity, users true to their
taste clusters, timestamps spread over the period."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from aibackend.recommend.generator import Generated, generate_interactions, write_csv

#: 500 users x ~40 interactions over 1,000 items (50 per cluster): big enough for the
#: statistics, under a second to generate.
SHAPE = {"rows": 20_000, "users": 500, "items": 1_000}


@pytest.fixture(scope="module")
def data() -> Generated:
    return generate_interactions(**SHAPE, seed=3)


def _loglog_slope(data: Generated) -> float:
    """Slope of log(count) against log(rank), ranks 10 to a quarter of the catalogue."""
    counts = np.sort(np.bincount(data.item, minlength=data.world.item_weight.size))[::-1]
    ranks = np.arange(1, counts.size + 1)
    part = slice(9, counts.size // 4)
    slope, _ = np.polyfit(np.log(ranks[part]), np.log(np.maximum(counts[part], 1)), 1)
    return float(slope)


def _own_cluster_share(data: Generated, users: np.ndarray) -> float:
    """Share of interactions in the clusters that make up 80% of `users[u]`'s taste."""
    taste = data.world.taste
    order = np.argsort(-taste, axis=1)
    mass = np.cumsum(np.take_along_axis(taste, order, axis=1), axis=1)
    own = np.zeros_like(taste, dtype=bool)
    for u, n in enumerate((mass < 0.8).sum(axis=1) + 1):
        own[u, order[u, :n]] = True
    return float(own[users, data.world.item_cluster[data.item]].mean())


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = generate_interactions(**SHAPE, seed=1), generate_interactions(**SHAPE, seed=1)
    c = generate_interactions(**SHAPE, seed=2)
    for name in ("user", "item", "rating", "timestamp"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.item, c.item)


def test_item_popularity_follows_a_power_law(data: Generated) -> None:
    # GIVEN items drawn with weight rank ** -1
    counts = np.bincount(data.item, minlength=data.world.item_weight.size)
    # THEN the rank-frequency curve falls steeply on log-log axes, the top 10% of items take
    # ~40% of the interactions, and observed popularity follows the hidden weights
    assert _loglog_slope(data) < -0.55
    top = np.sort(counts)[::-1][: counts.size // 10].sum() / counts.sum()
    assert top > 0.35
    ranks = np.argsort(np.argsort(-counts)), np.argsort(np.argsort(-data.world.item_weight))
    assert np.corrcoef(*ranks)[0, 1] > 0.6  # Spearman; the long tail's counts are noisy
    # AND with the exponent at 0 the same curve is far flatter (the test can tell)
    flat = generate_interactions(**SHAPE, seed=3, zipf_exponent=0.0)
    assert _loglog_slope(flat) > -0.35


def test_users_mostly_interact_with_items_of_their_taste_clusters(data: Generated) -> None:
    # THEN over half of a user's interactions fall in their own clusters, three times what
    # the same items would score against another user's taste
    own = _own_cluster_share(data, data.user)
    other = _own_cluster_share(data, np.random.default_rng(0).permutation(500)[data.user])
    assert own > 0.5
    assert own > 3 * other
    # AND they rate those items higher
    taste = data.world.taste[data.user, data.world.item_cluster[data.item]]
    liked = taste >= np.median(taste)
    assert data.rating[liked].mean() > data.rating[~liked].mean() + 1.0


def test_each_user_meets_an_item_once_and_timestamps_spread_over_the_period(
    data: Generated,
) -> None:
    pairs = data.user * 10_000 + data.item
    assert np.unique(pairs).size == pairs.size
    assert (np.diff(data.timestamp) >= 0).all()  # sorted by time
    span_days = (data.timestamp.max() - data.timestamp.min()) / 86_400
    assert span_days > 0.9 * 180
    # AND users' activity overlaps: every month of the period has interactions
    months = (data.timestamp - data.timestamp.min()) // (30 * 86_400)
    assert set(np.unique(months).tolist()) >= set(range(6))
    # AND activity is heavy-tailed with everyone at 5 or more
    per_user = np.bincount(data.user)
    assert per_user.min() >= 5
    assert per_user.max() > 4 * np.median(per_user)
    assert set(np.unique(data.rating).tolist()) <= {1, 2, 3, 4, 5}


def test_write_csv_writes_the_documented_columns(data: Generated, tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    assert write_csv(data, path) == len(data)
    with path.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["user_id", "item_id", "rating", "timestamp"]
    assert rows[1][3].endswith("Z") and rows[1][3].startswith("2026-01-")
    assert len(rows) == len(data) + 1

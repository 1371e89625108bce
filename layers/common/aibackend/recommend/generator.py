"""Synthetic user-item interactions with the structure real catalogues show, seeded.

numpy only. The world behind the data:

- **Items** belong to one of `clusters` taste clusters (genres; uneven sizes) and have a
  power-law popularity: the item of popularity rank r is drawn with weight `r ** -zipf_exponent`,
  ranks shuffled across clusters (every genre has its hits and its long tail).
- **Users** have a taste: a sparse Dirichlet mix over clusters, most of it on one to three.
  Each interaction comes from the user's taste (a cluster by taste, then an item of that
  cluster by popularity) with probability `1 - explore`, else from global popularity. A user
  meets an item once (sampling without replacement), and finds popular items sooner than
  niche ones: the order of the draws is the order in time.
- **Activity** is heavy-tailed (log-normal interaction counts, at least `min_per_user`); each
  user arrives at some point of the `days`-long period and stays active for a while, so
  timestamps spread over the whole period and users' histories overlap in time.
- **Ratings** (1-5) are higher for items of clusters the user likes more, with noise.

`generate_interactions` returns the interactions sorted by time, and the hidden world
(clusters, popularity, tastes) so tests can check the properties above.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

#: Start of the generated period (UTC).
EPOCH_START = datetime(2026, 1, 1, tzinfo=UTC)
CSV_FIELDS = ("user_id", "item_id", "rating", "timestamp")
_CHUNK_USERS = 512


@dataclass(frozen=True)
class World:
    """The hidden structure behind generated interactions."""

    #: Cluster of each item, shape (items,).
    item_cluster: np.ndarray
    #: Sampling weight of each item, `rank ** -zipf_exponent`, shape (items,).
    item_weight: np.ndarray
    #: Each user's taste over clusters (rows sum to 1), shape (users, clusters).
    taste: np.ndarray
    zipf_exponent: float
    explore: float


@dataclass(frozen=True)
class Generated:
    """Interactions sorted by time: parallel arrays, one entry per interaction."""

    user: np.ndarray  # int64 user index
    item: np.ndarray  # int64 item index
    rating: np.ndarray  # int8, 1-5
    timestamp: np.ndarray  # int64 Unix seconds (UTC)
    world: World

    def __len__(self) -> int:
        return int(self.user.size)

    @property
    def user_ids(self) -> list[str]:
        return [user_id(u) for u in self.user.tolist()]

    @property
    def item_ids(self) -> list[str]:
        return [item_id(i) for i in self.item.tolist()]


def user_id(index: int) -> str:
    return f"u{index:06d}"


def item_id(index: int) -> str:
    return f"i{index:05d}"


def default_shape(rows: int) -> tuple[int, int]:
    """(users, items) for `rows` interactions: ~40 per user, ~100 per item, within bounds."""
    users = max(50, rows // 40)
    items = int(np.clip(rows // 100, 100, 5_000))
    return users, items


def generate_interactions(
    rows: int,
    *,
    seed: int = 7,
    users: int | None = None,
    items: int | None = None,
    clusters: int = 20,
    zipf_exponent: float = 1.0,
    explore: float = 0.2,
    taste_concentration: float = 0.1,
    min_per_user: int = 5,
    days: int = 180,
) -> Generated:
    """`rows` interactions (fewer only if a user would meet over half the items, or if
    `users * min_per_user` is more), sorted by time."""
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if not 0.0 <= explore <= 1.0:
        raise ValueError(f"explore must be in [0, 1], got {explore}")
    rng = np.random.default_rng(seed)
    d_users, d_items = default_shape(rows)
    n_users, n_items = users or d_users, items or d_items
    world = _world(rng, n_users, n_items, clusters, zipf_exponent, explore, taste_concentration)
    counts = _activity(rng, rows, n_users, n_items, min_per_user)
    user_ix, item_ix = _draw(rng, world, counts)
    rating = _ratings(rng, world, user_ix, item_ix)
    timestamp = _timestamps(rng, counts, days)
    order = np.argsort(timestamp, kind="stable")
    return Generated(
        user=user_ix[order],
        item=item_ix[order],
        rating=rating[order],
        timestamp=timestamp[order],
        world=world,
    )


def _world(
    rng: np.random.Generator,
    n_users: int,
    n_items: int,
    clusters: int,
    zipf_exponent: float,
    explore: float,
    concentration: float,
) -> World:
    sizes = rng.dirichlet(np.full(clusters, 5.0))
    item_cluster = rng.choice(clusters, size=n_items, p=sizes)
    ranks = rng.permutation(n_items) + 1
    item_weight = ranks.astype(np.float64) ** -zipf_exponent
    taste = rng.dirichlet(np.full(clusters, concentration), size=n_users)
    return World(item_cluster, item_weight, taste, zipf_exponent, explore)


def _activity(
    rng: np.random.Generator, rows: int, n_users: int, n_items: int, minimum: int
) -> np.ndarray:
    """Interactions per user: log-normal (a few heavy users), at least `minimum`, summing to
    `rows` (largest remainders round), unless a user would meet over half the catalogue."""
    raw = rng.lognormal(mean=0.0, sigma=0.9, size=n_users)
    share = raw / raw.sum() * max(rows - minimum * n_users, 0)
    counts = minimum + np.floor(share).astype(np.int64)
    short = max(rows - int(counts.sum()), 0)
    counts[np.argsort(np.floor(share) - share, kind="stable")[:short]] += 1
    capped: np.ndarray = np.minimum(counts, n_items // 2)
    return capped


def _draw(
    rng: np.random.Generator, world: World, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's items, without replacement, in the order a sequential draw meets them.

    Gumbel top-k: sorting `log p + Gumbel noise` is sampling without replacement with
    probabilities `p`, and the sorted order is the order of the draws.
    """
    n_clusters = world.taste.shape[1]
    one_hot = np.zeros((world.item_cluster.size, n_clusters))
    one_hot[np.arange(world.item_cluster.size), world.item_cluster] = 1.0
    in_cluster = one_hot * world.item_weight[:, None]
    in_cluster /= np.maximum(in_cluster.sum(axis=0, keepdims=True), 1e-300)
    global_p = world.item_weight / world.item_weight.sum()
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    for lo in range(0, counts.size, _CHUNK_USERS):
        hi = min(lo + _CHUNK_USERS, counts.size)
        p = (1.0 - world.explore) * (world.taste[lo:hi] @ in_cluster.T)
        p += world.explore * global_p
        keys = np.log(np.maximum(p, 1e-300)) + rng.gumbel(size=p.shape)
        order = np.argsort(-keys, axis=1)
        for row, u in enumerate(range(lo, hi)):
            chosen = order[row, : counts[u]]
            items.append(chosen)
            users.append(np.full(chosen.size, u, dtype=np.int64))
    return np.concatenate(users), np.concatenate(items).astype(np.int64)


def _ratings(
    rng: np.random.Generator, world: World, user_ix: np.ndarray, item_ix: np.ndarray
) -> np.ndarray:
    """1-5: about 5 for the user's favourite cluster, about 2.5 for clusters they ignore."""
    taste = world.taste[user_ix, world.item_cluster[item_ix]]
    affinity = taste / world.taste[user_ix].max(axis=1)
    raw = 2.5 + 2.5 * affinity + rng.normal(0.0, 0.8, size=user_ix.size)
    ratings: np.ndarray = np.clip(np.rint(raw), 1, 5).astype(np.int8)
    return ratings


def _timestamps(rng: np.random.Generator, counts: np.ndarray, days: int) -> np.ndarray:
    """Per user: arrival anywhere in the period, then increasing times until some later day."""
    period = days * 86_400
    start = int(EPOCH_START.timestamp())
    arrive = rng.uniform(0.0, 0.9 * period, size=counts.size)
    stay = rng.uniform(0.1, 1.0, size=counts.size) * (period - arrive)
    out: list[np.ndarray] = []
    for n, a, s in zip(counts.tolist(), arrive.tolist(), stay.tolist(), strict=True):
        out.append(start + np.rint(a + np.sort(rng.uniform(0.0, s, size=n))).astype(np.int64))
    return np.concatenate(out)


def iso_timestamps(epoch_s: np.ndarray) -> list[str]:
    """Unix seconds -> ISO 8601 UTC (`2026-01-31T12:00:00Z`)."""
    text = np.datetime_as_string(epoch_s.astype("datetime64[s]"), unit="s")
    return [t + "Z" for t in text.tolist()]


def write_csv(data: Generated, path: Path) -> int:
    """`user_id,item_id,rating,timestamp` (gzip when the name ends in `.gz`); returns rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        w.writerows(
            zip(
                data.user_ids,
                data.item_ids,
                data.rating.tolist(),
                iso_timestamps(data.timestamp),
                strict=True,
            )
        )
    return len(data)

"""Train the recommendations model: `python -m aibackend.training.recommendations` (SageMaker
training contract).

Reads the `train` channel: one or more `*.csv` / `*.csv.gz` interaction files with a header
naming `user_id` and `item_id`, optionally `rating` and `timestamp`
(`aibackend.recommend.interactions`). `aib train recommendations` generates them
(`aibackend.recommend.generator`); `aib train recommendations --data FILE` uses yours.

1. Keep the `max_items` items with the most interactions (the catalogue the graph scores).
2. Hold out each user's latest `holdout_fraction` of interactions by time.
3. Fit item embeddings on the rest: PureSVD, a truncated SVD of the binary user-item matrix
   whose columns are scaled by (users per item) ** -popularity_exponent, so that hits do not
   fill every factor; scores are scaled back by (users per item) ** score_exponent.
4. Rank the catalogue for every held-out user (seen items excluded) and score precision,
   recall, NDCG and coverage at `eval_k`, for the model and for a popularity baseline.
5. Refit on every interaction (what the service serves), and write `SM_MODEL_DIR`:
   `model.onnx` (the scoring graph, checked against numpy, with the users' histories in its
   metadata), `model.json` (metrics next to the baseline's) and `baseline.json`.

Exit codes: 0 done, 2 bad input or failed check (the message says which), 1 anything else.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aibackend.models.card import (
    MODEL_FILE,
    Baseline,
    CategoricalStats,
    ModelCard,
    NumericStats,
    TensorSpec,
    TrainingData,
    sha256_file,
)
from aibackend.recommend.artifact import ModelData, UserHistories
from aibackend.recommend.graph import INPUT, OPSET, OUTPUTS, build_graph
from aibackend.recommend.interactions import Interactions, read_interactions, split_by_time
from aibackend.recommend.metrics import RankingMetrics, ranking_metrics
from aibackend.recommend.scorer import ItemScorer
from aibackend.training.common import (
    HyperValue,
    TrainingEnv,
    TrainingError,
    categorical_stats,
    channel_files,
    code_version,
    data_fingerprint,
    log,
    numeric_stats,
    run_job,
    write_evaluation,
)

NAME = "recommendations"
CHANNEL = "train"
DATA_FILE = "interactions.csv"

DEFAULT_HYPERPARAMETERS: dict[str, HyperValue] = {
    # Item embedding size (SVD rank); capped by the numbers of users and items.
    "factors": 32,
    # Columns scaled by (users per item) ** -popularity_exponent before the SVD.
    "popularity_exponent": 0.5,
    # Scores scaled by (users per item) ** score_exponent.
    "score_exponent": 0.5,
    # Power iterations of the randomized SVD.
    "svd_iterations": 5,
    # The most interacted-with items kept; interactions with the others are dropped.
    "max_items": 20_000,
    # Length of the graph's ranked answer (the API's largest k).
    "top_k": 100,
    # Cut-off of the evaluation metrics.
    "eval_k": 10,
    # Share of each user's latest interactions (by time) held out for the metrics.
    "holdout_fraction": 0.2,
    "seed": 7,
    # Largest |onnxruntime - numpy| score difference accepted at export.
    "parity_tolerance": 1e-4,
}

#: Users whose histories the export check runs through onnxruntime (plus an empty history).
_PARITY_USERS = 256
#: Scores per numpy batch during evaluation (users x items), bounding its memory.
_EVAL_CELLS = 8_000_000


def prepare(channel_dir: Path, *, rows: int, seed: int) -> Path:
    """Generate about `rows` synthetic interactions into the channel folder; returns the file."""
    from aibackend.recommend.generator import generate_interactions, write_csv

    path = channel_dir / DATA_FILE
    write_csv(generate_interactions(rows, seed=seed), path)
    return path


# --- data ---------------------------------------------------------------------------------


def top_items(data: Interactions, max_items: int) -> Interactions:
    """The interactions with the `max_items` most interacted-with items, re-indexed: items by
    decreasing count (ties by first appearance), users in order of first appearance."""
    if max_items <= 0:
        raise TrainingError(f"max_items must be positive, got {max_items}")
    counts = np.bincount(data.item, minlength=len(data.item_ids))
    ranked = np.argsort(-counts, kind="stable")[:max_items]
    new_item = np.full(len(data.item_ids), -1, dtype=np.int64)
    new_item[ranked] = np.arange(ranked.size)
    rows = np.flatnonzero(new_item[data.item] >= 0)
    kept_users, first = np.unique(data.user[rows], return_index=True)
    kept_users = kept_users[np.argsort(first, kind="stable")]
    new_user = np.full(len(data.user_ids), -1, dtype=np.int64)
    new_user[kept_users] = np.arange(kept_users.size)
    return Interactions(
        user_ids=tuple(data.user_ids[u] for u in kept_users.tolist()),
        item_ids=tuple(data.item_ids[i] for i in ranked.tolist()),
        user=new_user[data.user[rows]],
        item=new_item[data.item[rows]],
        rating=None if data.rating is None else data.rating[rows],
        time=data.time[rows],
        has_time=data.has_time,
    )


# --- model --------------------------------------------------------------------------------


def fit(data: Interactions, rows: np.ndarray, hps: Mapping[str, HyperValue]) -> ItemScorer:
    """PureSVD item embeddings and popularity from the interactions at `rows`."""
    import scipy.sparse as sp  # type: ignore[import-untyped]  # training only, no stubs
    from sklearn.utils.extmath import randomized_svd

    shape = (len(data.user_ids), len(data.item_ids))
    x = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float64), (data.user[rows], data.item[rows])), shape=shape
    )
    x.data[:] = 1.0  # a repeated interaction counts once
    users_per_item = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
    safe = np.maximum(users_per_item, 1.0)
    col_scale = safe ** -float(hps["popularity_exponent"])
    factors = max(1, min(int(hps["factors"]), *shape))
    _, _, vt = randomized_svd(
        x @ sp.diags(col_scale),
        n_components=factors,
        n_iter=int(hps["svd_iterations"]),
        random_state=int(hps["seed"]),
    )
    v = vt.T
    return ItemScorer(
        fold=(col_scale[:, None] * v).astype(np.float32),
        embeddings=(v * (safe ** float(hps["score_exponent"]))[:, None]).astype(np.float32),
        popularity=(users_per_item / max(users_per_item.sum(), 1.0)).astype(np.float32),
        top_k=min(int(hps["top_k"]), shape[1]),
    )


def histories_of(data: Interactions, rows: np.ndarray) -> UserHistories:
    return UserHistories.from_pairs(data.user_ids, data.user[rows], data.item[rows])


# --- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    model: dict[str, float]
    popularity: dict[str, float]


def _with_coverage(m: RankingMetrics, ranked: list[np.ndarray], n_items: int) -> dict[str, float]:
    shown = np.unique(np.concatenate(ranked)) if ranked else np.empty(0)
    return {**m.as_dict(), f"coverage_at_{m.k}": shown.size / max(n_items, 1)}


def evaluate(
    scorer: ItemScorer, data: Interactions, train: np.ndarray, holdout: np.ndarray, k: int
) -> Evaluation:
    """Rank the catalogue for each user with held-out items they had not seen in training."""
    if not 1 <= k <= scorer.top_k:
        raise TrainingError(f"eval_k must be in [1, top_k={scorer.top_k}], got {k}")
    seen = histories_of(data, train)
    held = histories_of(data, holdout)
    users, relevant = [], []
    for u in range(len(data.user_ids)):
        new = np.setdiff1d(held.row(u), seen.row(u), assume_unique=True)
        if new.size:
            users.append(u)
            relevant.append(new)
    if not users:
        raise TrainingError(
            "no user has a held-out interaction with an item they had not met before; the "
            "data needs users with several interactions over time"
        )
    model_top: list[np.ndarray] = []
    pop_top: list[np.ndarray] = []
    pop_order = np.argsort(-scorer.popularity, kind="stable")
    step = max(1, _EVAL_CELLS // scorer.items)
    for lo in range(0, len(users), step):
        batch = [seen.row(u) for u in users[lo : lo + step]]
        scores, items = scorer.rank(scorer.histories(batch))
        for s, row in zip(scores, items, strict=True):
            model_top.append(row[np.isfinite(s)][:k])
        for history in batch:
            pop_top.append(_popular_unseen(pop_order, history, k))
    n = scorer.items
    return Evaluation(
        model=_with_coverage(ranking_metrics(model_top, relevant, k), model_top, n),
        popularity=_with_coverage(ranking_metrics(pop_top, relevant, k), pop_top, n),
    )


def _popular_unseen(order: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """The `k` most popular items not in `seen` (`order`: items by decreasing popularity)."""
    head = order[: k + seen.size]
    return head[~np.isin(head, seen)][:k]


# --- export -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    path: Path
    max_abs_diff: float


def export_checked(
    scorer: ItemScorer, data: ModelData, dest: Path, *, tolerance: float, seed: int
) -> Exported:
    """Write the scoring graph (with `data` in its metadata) to `dest` only if onnxruntime,
    loading it the way the service does, ranks a sample of users (and an empty history) as
    the numpy scorer does."""
    from aibackend.models.runtime import create_session

    histories = data.histories
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(histories), size=min(_PARITY_USERS, len(histories)), replace=False)
    h = scorer.histories([histories.row(int(u)) for u in sample] + [np.empty(0, np.int64)])
    # Items are compared through their scores: a near-tie may swap places in float32.
    ref_scores = scorer.rank(h)[0]
    full = scorer.scores(h)
    model = build_graph(scorer, data.to_metadata())
    with tempfile.TemporaryDirectory(prefix="aib-export-") as tmp:
        staged = Path(tmp) / dest.name
        staged.write_bytes(model.SerializeToString())
        session = create_session(staged)
        got_scores, got_items = session.run(list(OUTPUTS), {INPUT: h})
        diff = _parity(full, ref_scores, got_scores, got_items)
        if not diff <= tolerance:
            raise TrainingError(
                f"ONNX parity check failed: onnxruntime's top-{scorer.top_k} scores differ from "
                f"numpy's by up to {diff:.3g} on {len(h)} histories (tolerance {tolerance:g}); "
                "nothing was written"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(staged.read_bytes())
    return Exported(path=dest, max_abs_diff=diff)


def _parity(
    full: np.ndarray, ref_scores: np.ndarray, got_scores: np.ndarray, got_items: np.ndarray
) -> float:
    """Largest difference between the graph's top scores and numpy's, and between the scores
    the graph reports and numpy's scores of the items it picked (inf: masked items differ)."""
    picked = np.take_along_axis(full, got_items.astype(np.int64), axis=1)
    worst = 0.0
    for a, b in ((got_scores, ref_scores), (got_scores, picked)):
        finite = np.isfinite(a)
        if not np.array_equal(finite, np.isfinite(b)):
            return float("inf")
        if finite.any():
            worst = max(worst, float(np.max(np.abs(a[finite] - b[finite]))))
    return worst


# --- the run ------------------------------------------------------------------------------


def _fmt(m: Mapping[str, float], k: int) -> str:
    return " ".join(
        f"{name}={m[f'{name}_at_{k}']:.4f}" for name in ("ndcg", "precision", "recall", "coverage")
    )


def top_scores(scorer: ItemScorer, histories: UserHistories) -> np.ndarray:
    """The best score each known user gets (users who have seen every item left out)."""
    step = max(1, _EVAL_CELLS // scorer.items)
    best = []
    for lo in range(0, len(histories), step):
        rows = [histories.row(u) for u in range(lo, min(lo + step, len(histories)))]
        best.append(scorer.scores(scorer.histories(rows)).max(axis=1))
    out = np.concatenate(best).astype(np.float64)
    return out[np.isfinite(out)]


def _baseline(data: Interactions, scorer: ItemScorer, histories: UserHistories) -> Baseline:
    """Item shares (what drift on requested items compares against), interactions per user,
    ratings when given, and the served model's best score for each known user."""
    lengths = np.bincount(data.user, minlength=len(data.user_ids)).astype(np.float64)
    features: dict[str, NumericStats | CategoricalStats] = {
        "item_id": categorical_stats(data.item, data.item_ids),
        "history_length": numeric_stats(lengths),
    }
    if data.rating is not None:
        features["rating"] = numeric_stats(data.rating)
    prediction = numeric_stats(top_scores(scorer, histories))
    return Baseline(rows=len(data), features=features, prediction=prediction)


def train(env: TrainingEnv, hps: Mapping[str, HyperValue]) -> ModelCard:
    """One training run: read, split, fit, evaluate, refit, export; returns the written card."""
    import sklearn

    t0 = time.monotonic()
    files = channel_files(env.channel(CHANNEL))
    log(f"reading {', '.join(p.name for p in files)} from {files[0].parent}")
    raw = read_interactions(files)
    data = top_items(raw, int(hps["max_items"]))
    dropped = len(raw) - len(data)
    log(
        f"{len(raw)} interactions, {len(raw.user_ids)} users, {len(raw.item_ids)} items"
        + (
            f"; kept the top {len(data.item_ids)} items ({dropped} interactions dropped)"
            if dropped
            else ""
        )
        + ("" if raw.has_time else "; no timestamp column: rows count as in time order")
    )
    if len(data.item_ids) < 2:
        raise TrainingError("the data has fewer than two items; there is nothing to rank")
    split = split_by_time(data, float(hps["holdout_fraction"]))
    k = int(hps["eval_k"])

    t = time.monotonic()
    trial = fit(data, split.train, hps)
    result = evaluate(trial, data, split.train, split.holdout, k)
    log(
        f"fit on {split.train.size} interactions ({trial.factors} factors) and ranked "
        f"{int(result.model['users'])} users' holdout in {time.monotonic() - t:.1f}s"
    )
    log(f"model:      {_fmt(result.model, k)}")
    log(f"popularity: {_fmt(result.popularity, k)}")
    lift = result.model[f"ndcg_at_{k}"] / max(result.popularity[f"ndcg_at_{k}"], 1e-12)
    log(f"NDCG@{k} lift over popularity: {lift:.2f}x")

    everything = np.arange(len(data))
    final = fit(data, everything, hps)
    histories = histories_of(data, everything)
    env.model_dir.mkdir(parents=True, exist_ok=True)
    exported = export_checked(
        final,
        ModelData(item_ids=data.item_ids, histories=histories),
        env.model_dir / MODEL_FILE,
        tolerance=float(hps["parity_tolerance"]),
        seed=int(hps["seed"]),
    )
    log(
        f"refit on all {len(data)} interactions; exported {MODEL_FILE} (opset {OPSET}, "
        f"{histories.interactions} user-item pairs of {len(histories)} users in its metadata); "
        f"parity with numpy: max abs diff {exported.max_abs_diff:.2e}"
    )
    _baseline(data, final, histories).write(env.model_dir)
    n_items = len(data.item_ids)
    card = ModelCard(
        name=NAME,
        version=0,
        task="ranking",
        created_at=datetime.now(UTC),
        sha256=sha256_file(exported.path),
        # The input has one column per catalogue item: the item ids are in model.onnx's
        # metadata (aibackend.recommend.artifact), not here, so a large catalogue does not
        # outgrow the registry's record of the card.
        features=(),
        inputs=(TensorSpec(name=INPUT, dtype="float32", shape=("batch", n_items)),),
        outputs=(
            TensorSpec(name=OUTPUTS[0], dtype="float32", shape=("batch", final.top_k)),
            TensorSpec(name=OUTPUTS[1], dtype="int64", shape=("batch", final.top_k)),
        ),
        metrics=result.model,
        baselines={"popularity": result.popularity},
        training_data=TrainingData(
            fingerprint=data_fingerprint(files),
            rows=len(raw),
            source=", ".join(p.name for p in files),
        ),
        code_version=code_version(),
        hyperparameters=dict(hps),
        algorithm=(
            f"PureSVD item embeddings: scikit-learn {sklearn.__version__} randomized_svd, "
            f"{final.factors} factors, of the binary user-item matrix with columns scaled by "
            f"(users per item)^-{hps['popularity_exponent']}; scores scaled by (users per "
            f"item)^{hps['score_exponent']}; ONNX graph built with onnx.helper, opset {OPSET}"
        ),
        description=(
            f"Ranks {n_items} catalogue items for a history of items (input: one column per "
            "item, 1 = interacted; the item ids and the training users' histories are in "
            "model.onnx's metadata). Seen items are excluded; an empty history gets the items "
            "by popularity. Metrics: each user's latest interactions by time held out, the "
            "model fit on the rest; the served model is refit on every interaction."
        ),
    )
    card.write(env.model_dir)
    report = {
        "metrics": result.model,
        "baselines": card.baselines,
        "ndcg_lift": lift,
        "parity_max_abs_diff": exported.max_abs_diff,
    }
    write_evaluation(env, report)
    log(f"wrote {env.model_dir} in {time.monotonic() - t0:.1f}s")
    return card


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one training job; returns the process exit code."""
    return run_job(__doc__, DEFAULT_HYPERPARAMETERS, train, argv, env)


if __name__ == "__main__":
    sys.exit(main())

"""Train the fraud model: `python -m aibackend.training.fraud` (SageMaker training contract).

Reads the `train` channel (`transactions.csv[.gz]`: a header row, one transaction per line, as
`aibackend.fraud.generator.write_csv` writes it), builds features with the one shared definition
(`aibackend.fraud.features.matrix`), holds out the latest 20% by time, trains a
HistGradientBoostingClassifier and a logistic-regression baseline on the same features, and
writes a model version folder to `SM_MODEL_DIR`: `model.onnx` (checked against scikit-learn),
`model.json` and `baseline.json`.

Exit codes: 0 done, 2 bad input or failed check (the message says which), 1 anything else.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.fraud.features import FEATURES, RAW_COLUMNS, matrix
from aibackend.models.card import MODEL_FILE, ModelCard, TrainingData, sha256_file
from aibackend.training.common import (
    HyperValue,
    TrainingEnv,
    TrainingError,
    binary_metrics,
    channel_files,
    code_version,
    data_fingerprint,
    export_checked,
    feature_baseline,
    log,
    read_csv_columns,
    run_job,
    write_baseline_profile,
    write_evaluation,
)

NAME = "fraud"
CHANNEL = "train"
DATA_FILE = "transactions.csv"
LABEL = "is_fraud"

DEFAULT_HYPERPARAMETERS: dict[str, HyperValue] = {
    # Gradient-boosted trees (scikit-learn HistGradientBoostingClassifier).
    "learning_rate": 0.1,
    "max_iter": 300,
    "max_leaf_nodes": 31,
    "max_depth": 0,  # 0: no limit (the leaf count bounds the trees)
    "min_samples_leaf": 40,
    "l2_regularization": 0.0,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 20,
    # Logistic-regression baseline: inverse regularization strength.
    "baseline_c": 1.0,
    # Share of the latest transactions (by time) held out for the metrics.
    "holdout_fraction": 0.2,
    "seed": 7,
    "parity_tolerance": 1e-4,
    # 0: the highest opset both onnxruntime here and on Lambda load.
    "target_opset": 0,
}

#: Columns the channel must have. `hour` is derived from `timestamp` the way the service does
#: (`Transaction.timestamp.hour`, the merchant's local time).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "timestamp",
    *(c for c in RAW_COLUMNS if c != "hour"),
    LABEL,
)
_FLOATS = ("amount", "avg_amount_30d")
_INTS = ("card_age_days", "txn_count_1h", "txn_count_24h")
_BOOLS = ("card_present", "country_mismatch", LABEL)
_TRUE = frozenset({"1", "true", "t", "yes"})
_FALSE = frozenset({"0", "false", "f", "no"})


def prepare(channel_dir: Path, *, rows: int, seed: int) -> Path:
    """Generate `rows` synthetic transactions into the channel folder; returns the file."""
    from aibackend.fraud.generator import generate_transactions, write_csv

    path = channel_dir / DATA_FILE
    write_csv(generate_transactions(rows, seed=seed), path)
    return path


def _floats(name: str, values: Sequence[str]) -> np.ndarray:
    try:
        return np.array([float(v) if v else np.nan for v in values], dtype=np.float64)
    except ValueError as e:
        raise TrainingError(f"column {name!r}: {e}") from None


def _bools(name: str, values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=bool)
    for i, v in enumerate(values):
        low = v.strip().lower()
        if low in _TRUE:
            out[i] = True
        elif low in _FALSE:
            out[i] = False
        else:
            raise TrainingError(f"column {name!r}, row {i + 1}: {v!r} is not a boolean (0/1)")
    return out


def _times(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hour in the timestamp's own offset, UTC epoch seconds) of ISO 8601 timestamps."""
    hours = np.empty(len(values), dtype=np.int64)
    epoch = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            ts = datetime.fromisoformat(v)
        except ValueError:
            raise TrainingError(
                f"column 'timestamp', row {i + 1}: {v!r} is not an ISO 8601 timestamp"
            ) from None
        hours[i] = ts.hour
        epoch[i] = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    return hours, epoch


def load_channel(files: Sequence[Path]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(raw columns for `features.matrix`, labels, UTC epoch seconds) from the channel files."""
    raw = read_csv_columns(files, REQUIRED_COLUMNS)
    cols: dict[str, Any] = {}
    for name in _FLOATS:
        cols[name] = _floats(name, raw[name])
    for name in _INTS:
        cols[name] = _floats(name, raw[name])
        if np.isnan(cols[name]).any():
            raise TrainingError(f"column {name!r} has empty values; it needs a number on every row")
    for name in _BOOLS:
        cols[name] = _bools(name, raw[name])
    cols["currency"] = raw["currency"]
    cols["merchant_category"] = raw["merchant_category"]
    cols["hour"], epoch = _times(raw["timestamp"])
    labels = cols.pop(LABEL).astype(np.int8)
    return cols, labels, epoch


def time_split(epoch: np.ndarray, holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, holdout): the latest `holdout_fraction` of rows by time are held out."""
    if not 0.0 < holdout_fraction < 1.0:
        raise TrainingError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    order = np.argsort(epoch, kind="stable")
    cut = round(len(order) * (1.0 - holdout_fraction))
    return order[:cut], order[cut:]


def _gbt(hps: Mapping[str, HyperValue]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    depth = int(hps["max_depth"])
    return HistGradientBoostingClassifier(
        learning_rate=float(hps["learning_rate"]),
        max_iter=int(hps["max_iter"]),
        max_leaf_nodes=int(hps["max_leaf_nodes"]),
        max_depth=depth if depth > 0 else None,
        min_samples_leaf=int(hps["min_samples_leaf"]),
        l2_regularization=float(hps["l2_regularization"]),
        early_stopping=bool(hps["early_stopping"]),
        validation_fraction=float(hps["validation_fraction"]),
        n_iter_no_change=int(hps["n_iter_no_change"]),
        # Categorical codes are split on as ordered numbers: skl2onnx cannot convert native
        # categorical splits (the parity check would catch it).
        categorical_features=None,
        random_state=int(hps["seed"]),
    )


def _baseline_model(hps: Mapping[str, HyperValue]) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=float(hps["baseline_c"]), max_iter=2000),
    )


def _fmt(metrics: Mapping[str, float]) -> str:
    return f"roc_auc={metrics['roc_auc']:.4f} pr_auc={metrics['pr_auc']:.4f}"


def train(env: TrainingEnv, hps: Mapping[str, HyperValue]) -> ModelCard:
    """One training run: read, split, fit, evaluate, export; returns the written card."""
    import sklearn

    t0 = time.monotonic()
    files = channel_files(env.channel(CHANNEL))
    log(f"reading {', '.join(p.name for p in files)} from {files[0].parent}")
    cols, y, epoch = load_channel(files)
    n = len(y)
    if n == 0:
        raise TrainingError(f"{files[0].parent}: the training data has no rows")
    x = matrix(cols)
    train_ix, hold_ix = time_split(epoch, float(hps["holdout_fraction"]))
    x_tr, y_tr, x_ho, y_ho = x[train_ix], y[train_ix], x[hold_ix], y[hold_ix]
    for part, labels in (("training", y_tr), ("holdout", y_ho)):
        if len(np.unique(labels)) < 2:
            raise TrainingError(
                f"the {part} split ({len(labels)} rows) has only one class; "
                "the data needs fraud and legitimate transactions throughout"
            )
    log(
        f"{n} rows, {int(y.sum())} fraud ({y.mean():.2%}); train {len(y_tr)}, "
        f"holdout {len(y_ho)} (latest {float(hps['holdout_fraction']):.0%} by time)"
    )

    t = time.monotonic()
    gbt = _gbt(hps).fit(x_tr, y_tr)
    proba = gbt.predict_proba(x_ho)
    metrics = binary_metrics(y_ho, proba[:, 1])
    log(f"gbt: {gbt.n_iter_} iterations in {time.monotonic() - t:.1f}s; holdout {_fmt(metrics)}")

    t = time.monotonic()
    lr = _baseline_model(hps).fit(x_tr, y_tr)
    lr_metrics = binary_metrics(y_ho, lr.predict_proba(x_ho)[:, 1])
    log(f"logistic_regression: {time.monotonic() - t:.1f}s; holdout {_fmt(lr_metrics)}")

    env.model_dir.mkdir(parents=True, exist_ok=True)
    exported = export_checked(
        gbt,
        x_ho,
        proba,
        env.model_dir / MODEL_FILE,
        tolerance=float(hps["parity_tolerance"]),
        opset=int(hps["target_opset"]) or None,
    )
    log(
        f"exported {MODEL_FILE} (opset {exported.opset}, basic optimizations); parity with "
        f"scikit-learn: max abs diff {exported.max_abs_diff:.2e} on {len(y_ho)} rows"
    )

    baseline = feature_baseline(x_tr, FEATURES, prediction=exported.probabilities[:, 1])
    baseline.write(env.model_dir)
    write_baseline_profile(env.model_dir, x_tr, FEATURES, scores=exported.probabilities[:, 1])
    card = ModelCard(
        name=NAME,
        version=0,
        task="binary_classification",
        created_at=datetime.now(UTC),
        sha256=sha256_file(exported.path),
        features=FEATURES,
        inputs=exported.inputs,
        outputs=exported.outputs,
        classes=("legit", "fraud"),
        metrics=metrics,
        baselines={"logistic_regression": lr_metrics},
        training_data=TrainingData(
            fingerprint=data_fingerprint(files),
            rows=n,
            positives=int(y.sum()),
            source=", ".join(p.name for p in files),
        ),
        code_version=code_version(),
        hyperparameters=dict(hps),
        algorithm=(
            f"scikit-learn {sklearn.__version__} HistGradientBoostingClassifier "
            f"({gbt.n_iter_} iterations), exported with {exported.tool_versions}, "
            f"opset {exported.opset}"
        ),
        description=(
            "Probability that a card transaction is fraud, from its amount, the card's "
            "30-day average, hour, card age, card presence, country mismatch and velocity. "
            "Metrics are on the latest transactions by time, never seen in training."
        ),
    )
    card.write(env.model_dir)
    report = {
        "metrics": metrics,
        "baselines": card.baselines,
        "iterations": int(gbt.n_iter_),
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

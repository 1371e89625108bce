"""Training entry point of the IoT anomaly models: one isolation forest per device type
(`iot_thermostat`, `iot_vibration`, `iot_pressure`), run the SageMaker way:

    SM_MODEL_DIR=... SM_CHANNEL_TRAIN=... python -m aibackend.training.iot

The channel holds one CSV of readings of one device type (`device_type`, `device_id`, `t_s`,
`value`, `is_anomaly`, `split`): `train` devices read normally, `holdout` devices have
anomalies (spike, stuck, drift) injected and labelled. The forest is fitted on the window
features (`aibackend.iot.window`, as served) of the `train` readings only: it learns normal
behaviour, no labels. The labelled holdout measures it (ROC AUC, average precision), and the
decision threshold is the `1 - target_fpr` quantile of the scores of normal training
readings; the card's metrics carry it (`threshold`) with the holdout's precision and recall
at it. The ONNX graph's last output is the forest's `decision_function` (negative:
anomalous); the served score is its negation.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.iot.devices import ANOMALIES, DEVICE_TYPES, Device, device_id
from aibackend.iot.window import FEATURES, series_features
from aibackend.models.card import MODEL_FILE, Feature, ModelCard, TrainingData, sha256_file
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
    write_evaluation,
)

CHANNEL = "train"
DATA_FILE = "readings.csv"
COLUMNS = ("device_type", "device_id", "t_s", "value", "is_anomaly", "split")
READINGS_PER_DEVICE = 300
INTERVAL_S = 10.0
CARD_FEATURES = tuple(Feature(name=f, kind="numeric") for f in FEATURES)

DEFAULT_HYPERPARAMETERS: dict[str, HyperValue] = {
    "n_estimators": 100,
    "max_samples": 256,
    # Share of normal readings flagged: sets the threshold.
    "target_fpr": 0.002,
    "seed": 7,
    "parity_tolerance": 1e-4,
}


def model_name(device_type: str) -> str:
    return f"iot_{device_type}"


def prepare(channel_dir: Path, *, device_type: str, rows: int, seed: int) -> Path:
    """About `rows` readings of `device_type`: 3/4 of the devices normal (`train`), 1/4 with
    anomalies starting at 1 reading in 40 (`holdout`)."""
    if device_type not in DEVICE_TYPES:
        raise TrainingError(f"unknown device type {device_type!r}; known: {sorted(DEVICE_TYPES)}")
    rng = np.random.default_rng(seed)
    devices = max(8, rows // READINGS_PER_DEVICE)
    path = channel_dir / DATA_FILE
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for d in range(devices):
            split = "holdout" if d % 4 == 3 else "train"
            out.writerows(_device_rows(device_type, d, split, rng))
    return path


def _device_rows(
    device_type: str, index: int, split: str, rng: np.random.Generator
) -> list[tuple[Any, ...]]:
    t = DEVICE_TYPES[device_type]
    device = Device(
        device_id(device_type, index),
        t,
        offset=float(rng.uniform(-1, 1)) * t.scale,
        phase=float(rng.uniform(0, 2 * np.pi)),
    )
    start = float(rng.uniform(0, t.period_s))
    rows = []
    for i in range(READINGS_PER_DEVICE):
        t_s = start + INTERVAL_S * i
        if split == "holdout" and device.anomaly is None and i > 20 and rng.random() < 1 / 40:
            device.start_anomaly(
                ANOMALIES[int(rng.integers(len(ANOMALIES)))],
                t_s,
                int(rng.integers(3, 11)),
                device.normal(t_s, rng),
            )
        anomalous = device.anomaly is not None
        rows.append(
            (device_type, device.id, round(t_s, 3), device.read(t_s, rng), int(anomalous), split)
        )
    return rows


def load(files: Sequence[Path]) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(device type, features, labels, is-holdout) of every reading, windows per device."""
    cols = read_csv_columns(files, COLUMNS)
    types = set(cols["device_type"])
    if len(types) != 1 or next(iter(types)) not in DEVICE_TYPES:
        raise TrainingError(
            f"the channel must hold readings of one known device type, got {sorted(types)}; "
            f"known: {sorted(DEVICE_TYPES)}"
        )
    device_type = next(iter(types))
    ids = np.asarray(cols["device_id"])
    t_s = np.asarray(cols["t_s"], dtype=np.float64)
    values = np.asarray(cols["value"], dtype=np.float64)
    labels = np.asarray(cols["is_anomaly"], dtype=np.int64)
    holdout = np.asarray(cols["split"]) == "holdout"
    x = np.zeros((len(ids), len(FEATURES)), dtype=np.float32)
    for device in np.unique(ids):
        ix = np.flatnonzero(ids == device)
        ix = ix[np.argsort(t_s[ix], kind="stable")]
        x[ix] = series_features(device_type, t_s[ix], values[ix])
    return device_type, x, labels, holdout


def train(env: TrainingEnv, hps: Mapping[str, HyperValue]) -> ModelCard:
    import sklearn
    from sklearn.ensemble import IsolationForest

    t0 = time.monotonic()
    files = channel_files(env.channel(CHANNEL))
    device_type, x, y, holdout = load(files)
    normal = ~holdout & (y == 0)
    if normal.sum() < 500 or y[holdout].sum() == 0 or (y[holdout] == 0).sum() == 0:
        raise TrainingError(
            f"need at least 500 normal training readings and both classes in the holdout; got "
            f"{int(normal.sum())} normal, holdout {int(y[holdout].sum())} anomalous of "
            f"{int(holdout.sum())}: generate more rows"
        )
    forest = IsolationForest(
        n_estimators=int(hps["n_estimators"]),
        max_samples=min(int(hps["max_samples"]), int(normal.sum())),
        random_state=int(hps["seed"]),
    ).fit(x[normal])
    score_train = -forest.decision_function(x[normal])
    threshold = float(np.quantile(score_train, 1 - float(hps["target_fpr"])))
    score_ho = -forest.decision_function(x[holdout])
    metrics = {
        **binary_metrics(y[holdout], score_ho),
        **_at_threshold(y[holdout], score_ho, threshold),
    }
    log(f"{model_name(device_type)}: holdout {metrics}")
    env.model_dir.mkdir(parents=True, exist_ok=True)
    x_check = x[holdout]
    exported = export_checked(
        forest,
        x_check,
        forest.decision_function(x_check).reshape(-1, 1),
        env.model_dir / MODEL_FILE,
        tolerance=float(hps["parity_tolerance"]),
    )
    feature_baseline(x[normal], CARD_FEATURES).write(env.model_dir)
    card = ModelCard(
        name=model_name(device_type),
        task="binary_classification",
        created_at=datetime.now(UTC),
        sha256=sha256_file(exported.path),
        features=CARD_FEATURES,
        inputs=exported.inputs,
        outputs=exported.outputs,
        classes=("normal", "anomaly"),
        metrics=metrics,
        training_data=TrainingData(
            fingerprint=data_fingerprint(files),
            rows=len(y),
            positives=int(y.sum()),
            source=", ".join(p.name for p in files),
        ),
        code_version=code_version(),
        hyperparameters=dict(hps),
        algorithm=(
            f"scikit-learn {sklearn.__version__} IsolationForest ({int(hps['n_estimators'])} "
            f"trees), exported with {exported.tool_versions}, opset {exported.opset}"
        ),
        description=(
            f"Anomaly score of a {device_type} reading from its device's rolling window "
            "(aibackend.iot.window); anomalous at score >= metrics.threshold. Metrics on "
            "held-out devices with injected spikes, stuck values and drifts."
        ),
    )
    card.write(env.model_dir)
    write_evaluation(env, {"metrics": metrics, "parity_max_abs_diff": exported.max_abs_diff})
    log(f"wrote {env.model_dir} in {time.monotonic() - t0:.1f}s")
    return card


def _at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = score >= threshold
    tp = int(np.count_nonzero(flagged & (y == 1)))
    return {
        "threshold": threshold,
        "recall_at_threshold": tp / max(1, int(np.count_nonzero(y == 1))),
        "precision_at_threshold": tp / max(1, int(np.count_nonzero(flagged))),
        "false_positive_rate": float(np.count_nonzero(flagged & (y == 0)))
        / max(1, int(np.count_nonzero(y == 0))),
    }


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    return run_job(__doc__, DEFAULT_HYPERPARAMETERS, train, argv, env)


if __name__ == "__main__":
    sys.exit(main())

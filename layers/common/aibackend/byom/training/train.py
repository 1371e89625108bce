"""Train a model from any CSV: `python -m aibackend.byom.training.train` (SageMaker contract).

Reads the `train` channel (one or more CSV files with one header), decides the task and each
column's role (`columns.plan_dataset`; the summary is logged and kept in the model card),
holds out `holdout_fraction` of the rows at random (stratified for classification), and fits a
scikit-learn Pipeline: a ColumnTransformer (median imputation of numbers, most-frequent of
booleans, a "(missing)" category and one-hot encoding of the kept categories) then
HistGradientBoosting(Classifier|Regressor). It is evaluated next to a baseline fitted on the
same rows (majority class with class priors, or the mean), exported to ONNX with the
preprocessing inside the graph (one input per feature), and checked against scikit-learn on
the holdout *through the serving code* (`byom.contract`), so what is served is what was
measured. Writes model.onnx, model.json and baseline.json to `SM_MODEL_DIR`, and
evaluation.json (metrics, the column report) to `SM_OUTPUT_DATA_DIR`.

Exit codes: 0 done, 2 bad input or failed check (the message says which), 1 anything else.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.byom.contract import Contract, bind, tensor_spec
from aibackend.byom.training.columns import MISSING_CATEGORY, FeatureColumn, Plan, plan_dataset
from aibackend.byom.training.csvfile import concat, read_table
from aibackend.models.card import MODEL_FILE, Feature, ModelCard, TrainingData, sha256_file
from aibackend.training.common import (
    MAX_OPSET,
    ML_OPSET,
    HyperValue,
    TrainingEnv,
    TrainingError,
    channel_files,
    code_version,
    data_fingerprint,
    feature_baseline,
    log,
    onnxruntime_max_opset,
    optimize_offline,
    run_job,
    write_evaluation,
)

CHANNEL = "train"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Below this many training rows, scikit-learn's OpenMP threads cost more than they save
#: (measured: 0.2 s on one thread vs 4-30 s on two busy cores for 3,000 rows).
SMALL_DATA_ROWS = 20_000
#: Training rows from which early stopping is used (when `early_stopping` is on): fewer leave
#: too small a validation split.
EARLY_STOPPING_ROWS = 1_000

DEFAULT_HYPERPARAMETERS: dict[str, HyperValue] = {
    # The registry name of the model, and the CSV column to predict (both required).
    "name": "",
    "target": "",
    # auto | classification | regression (auto: see columns.py).
    "task": "auto",
    # Categorical columns: the most frequent values kept; rarer ones count as unseen.
    "max_categories": 30,
    "min_category_rows": 5,
    # Share of the rows held out (at random, stratified for classification) for the metrics.
    "holdout_fraction": 0.2,
    "seed": 7,
    # HistGradientBoosting. Early stopping (on a validation split of the training rows) from
    # EARLY_STOPPING_ROWS training rows: on small noisy tables it beat a fixed count.
    "learning_rate": 0.1,
    "max_iter": 100,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 20,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
    # Largest |onnxruntime - scikit-learn| allowed on the holdout (relative for regression).
    "parity_tolerance": 1e-4,
    # 0: the highest opset both onnxruntime here and on Lambda load.
    "target_opset": 0,
}


def _required(hps: Mapping[str, HyperValue], key: str, what: str) -> str:
    value = str(hps[key]).strip()
    if not value:
        raise TrainingError(f"hyperparameter {key!r} is required: {what}")
    return value


def input_names(features: Sequence[FeatureColumn]) -> list[str]:
    """Graph input names: the feature names made identifiers (skl2onnx renames others)."""
    names: list[str] = []
    for f in features:
        base = re.sub(r"[^0-9A-Za-z_]", "_", f.name).strip("_") or "feature"
        base = f"f_{base}" if base[0].isdigit() else base
        name, i = base, 2
        while name in names:
            name, i = f"{base}_{i}", i + 1
        names.append(name)
    return names


def _design(plan: Plan) -> np.ndarray:
    """The feature columns side by side (object array): floats and strings, as scikit-learn's
    ColumnTransformer takes them by position."""
    x = np.empty((plan.rows, len(plan.features)), dtype=object)
    for j, f in enumerate(plan.features):
        x[:, j] = f.values
    return x


def request_columns(plan: Plan, rows: np.ndarray) -> list[list[Any]]:
    """The given rows as a client would send them: one value list per feature, None missing."""
    out: list[list[Any]] = []
    for f in plan.features:
        v = f.values[rows]
        if f.kind == "categorical":
            out.append([s or None for s in v.tolist()])
        elif f.kind == "boolean":
            out.append([None if np.isnan(b) else bool(b) for b in v.tolist()])
        else:
            out.append([None if np.isnan(n) else n for n in v.tolist()])
    return out


def _pipeline(plan: Plan, hps: Mapping[str, HyperValue], rows: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    def columns(kind: str) -> list[int]:
        return [j for j, f in enumerate(plan.features) if f.kind == kind]

    categorical = [f for f in plan.features if f.kind == "categorical"]
    vocabulary = [
        sorted({*f.categories, *([MISSING_CATEGORY] if f.missing else [])}) for f in categorical
    ]
    steps: list[tuple[str, Any, list[int]]] = [
        ("numeric", SimpleImputer(strategy="median"), columns("numeric")),
        ("boolean", SimpleImputer(strategy="most_frequent"), columns("boolean")),
        (
            "categorical",
            Pipeline(
                [
                    (
                        "impute",
                        SimpleImputer(
                            strategy="constant", missing_values="", fill_value=MISSING_CATEGORY
                        ),
                    ),
                    # Values outside the kept vocabulary encode as all zeros: "unseen".
                    (
                        "onehot",
                        OneHotEncoder(
                            categories=vocabulary, handle_unknown="ignore", sparse_output=False
                        ),
                    ),
                ]
            ),
            columns("categorical"),
        ),
    ]
    prep = ColumnTransformer([s for s in steps if s[2]], sparse_threshold=0)
    common = {
        "learning_rate": float(hps["learning_rate"]),
        "max_iter": int(hps["max_iter"]),
        "max_leaf_nodes": int(hps["max_leaf_nodes"]),
        "min_samples_leaf": int(hps["min_samples_leaf"]),
        "l2_regularization": float(hps["l2_regularization"]),
        "early_stopping": bool(hps["early_stopping"]) and rows >= EARLY_STOPPING_ROWS,
        "validation_fraction": float(hps["validation_fraction"]),
        "n_iter_no_change": int(hps["n_iter_no_change"]),
        "random_state": int(hps["seed"]),
    }
    model = (
        HistGradientBoostingRegressor(**common)
        if plan.target.task == "regression"
        else HistGradientBoostingClassifier(**common)
    )
    return Pipeline([("prep", prep), ("model", model)])


def _baseline_model(plan: Plan) -> Any:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    if plan.target.task == "regression":
        return DummyRegressor(strategy="mean")
    return DummyClassifier(strategy="prior")


@contextmanager
def _threads(rows: int) -> Iterator[None]:
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=1 if rows < SMALL_DATA_ROWS else None):
        yield


def classification_metrics(
    y: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """ROC AUC, accuracy and F1 (the second class positive; macro for more classes)."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    out = {"accuracy": float(accuracy_score(y, predicted)), "rows": float(len(y))}
    if len(classes) == 2:
        out["f1"] = float(f1_score(y, predicted, pos_label=classes[1], zero_division=0))
        out["roc_auc"] = float(roc_auc_score(y == classes[1], proba[:, 1]))
    else:
        out["f1_macro"] = float(f1_score(y, predicted, average="macro", zero_division=0))
        # A class absent from the holdout leaves the AUC undefined: then it is not reported.
        with suppress(ValueError):
            out["roc_auc_ovr"] = float(
                roc_auc_score(y, proba, multi_class="ovr", labels=list(classes))
            )
    return out


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² of one scored holdout."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "rmse": float(np.sqrt(mean_squared_error(y, predicted))),
        "mae": float(mean_absolute_error(y, predicted)),
        "r2": float(r2_score(y, predicted)),
        "rows": float(len(y)),
    }


@dataclass(frozen=True)
class Fitted:
    pipeline: Any
    expected: np.ndarray
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]


def _fit(
    plan: Plan, x: np.ndarray, train: np.ndarray, hold: np.ndarray, hps: Mapping[str, HyperValue]
) -> Fitted:
    y = plan.target.y
    pipeline = _pipeline(plan, hps, len(train))
    baseline = _baseline_model(plan)
    t = time.monotonic()
    with _threads(len(train)):
        pipeline.fit(x[train], y[train])
        baseline.fit(x[train], y[train])
    model = pipeline.named_steps["model"]
    log(f"fitted {type(model).__name__}: {model.n_iter_} iterations in {time.monotonic() - t:.1f}s")
    if plan.target.task == "regression":
        expected = pipeline.predict(x[hold])
        metrics = regression_metrics(y[hold], expected)
        baselines = {"mean": regression_metrics(y[hold], baseline.predict(x[hold]))}
    else:
        if tuple(model.classes_) != plan.target.classes:  # the card's order is the graph's
            raise TrainingError(
                f"scikit-learn ordered the classes {list(model.classes_)}, the plan "
                f"{list(plan.target.classes)}; please report this"
            )
        expected = pipeline.predict_proba(x[hold])
        classes = plan.target.classes
        metrics = classification_metrics(y[hold], expected, classes)
        baselines = {
            "majority_class": classification_metrics(
                y[hold], baseline.predict_proba(x[hold]), classes
            )
        }
    for label, m in (("model", metrics), *baselines.items()):
        log(f"holdout {label}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "rows"))
    return Fitted(pipeline, np.asarray(expected, dtype=np.float64), metrics, baselines)


def _features(plan: Plan) -> tuple[Feature, ...]:
    return tuple(Feature(name=f.name, kind=f.kind, categories=f.categories) for f in plan.features)


def export_opset(hps: Mapping[str, HyperValue]) -> int:
    """`target_opset`, else the highest opset skl2onnx writes and onnxruntime here loads."""
    from skl2onnx import __max_supported_opset__

    return int(hps["target_opset"]) or onnxruntime_max_opset(
        min(MAX_OPSET, __max_supported_opset__)
    )


def _convert(pipeline: Any, plan: Plan, names: Sequence[str], opset: int) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial = [
        (n, StringTensorType([None, 1]) if f.kind == "categorical" else FloatTensorType([None, 1]))
        for n, f in zip(names, plan.features, strict=True)
    ]
    model = pipeline.named_steps["model"]
    options = None if plan.target.task == "regression" else {id(model): {"zipmap": False}}
    onx = convert_sklearn(
        pipeline,
        initial_types=initial,
        options=options,
        target_opset={"": opset, "ai.onnx.ml": ML_OPSET},
    )
    return bytes(onx.SerializeToString())


@dataclass(frozen=True)
class Checked:
    """The card of the exported graph, and what serving it returned on the holdout."""

    card: ModelCard
    served: np.ndarray
    max_diff: float


def _check(
    contract: Contract, session: Any, plan: Plan, hold: np.ndarray, fitted: Fitted, tolerance: float
) -> tuple[np.ndarray, float]:
    """Serve the holdout through `contract` (as the service does) and compare with sklearn."""
    columns = request_columns(plan, hold)
    served = contract.read(session.run([contract.output], contract.feed(columns))[0], len(hold))
    expected = fitted.expected
    if served.shape != expected.shape:
        raise TrainingError(f"ONNX gives shape {served.shape}, scikit-learn {expected.shape}")
    diff = float(np.max(np.abs(served - expected))) if expected.size else 0.0
    scale = 1.0 if contract.is_classifier else max(1.0, float(np.max(np.abs(expected))))
    if not diff <= tolerance * scale:
        raise TrainingError(
            f"ONNX parity check failed: max |served - scikit-learn| = {diff:.3g} on {len(hold)} "
            f"holdout rows (tolerance {tolerance * scale:.3g}); the converter does not reproduce "
            "this pipeline; nothing was written"
        )
    return served, diff


def export_checked(
    plan: Plan,
    fitted: Fitted,
    hold: np.ndarray,
    card_fields: Mapping[str, Any],
    dest: Path,
    *,
    opset: int,
    tolerance: float,
) -> Checked:
    """Convert, optimize (onnxruntime's basic level), bind to its card, check parity on the
    holdout through the serving contract; write `dest` only if it passes."""
    from aibackend.models.runtime import create_session

    names = input_names(plan.features)
    raw = _convert(fitted.pipeline, plan, names, opset)
    with tempfile.TemporaryDirectory(prefix="aib-byom-") as tmp:
        staged = optimize_offline(raw, Path(tmp) / MODEL_FILE)
        session = create_session(staged)
        got = [i.name for i in session.get_inputs()]
        if got != names:
            raise TrainingError(f"the exported graph's inputs are {got}, expected {names}")
        card = ModelCard(
            **card_fields,
            sha256=sha256_file(staged),
            features=_features(plan),
            inputs=tuple(tensor_spec(a) for a in session.get_inputs()),
            outputs=tuple(tensor_spec(a) for a in session.get_outputs()),
        )
        contract = bind(card, session.get_inputs(), session.get_outputs(), where="exported graph")
        served, diff = _check(contract, session, plan, hold, fitted, tolerance)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(staged.read_bytes())
    return Checked(card=card, served=served, max_diff=diff)


def _baseline_matrix(plan: Plan, rows: np.ndarray) -> np.ndarray:
    """Numbers as they are, categoricals as codes (kept index, -1 unseen, NaN missing)."""
    x = np.empty((len(rows), len(plan.features)), dtype=np.float64)
    for j, f in enumerate(plan.features):
        v = f.values[rows]
        if f.kind == "categorical":
            index = {c: float(i) for i, c in enumerate(f.categories)}
            x[:, j] = [np.nan if s == "" else index.get(s, -1.0) for s in v.tolist()]
        else:
            x[:, j] = v.astype(np.float64)
    return x


def _split(plan: Plan, hps: Mapping[str, HyperValue]) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, holdout): random, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    fraction = float(hps["holdout_fraction"])
    if not 0.0 < fraction < 1.0:
        raise TrainingError(f"holdout_fraction must be in (0, 1), got {fraction}")
    stratify = None if plan.target.task == "regression" else plan.target.y
    train, hold = train_test_split(
        np.arange(plan.rows),
        test_size=fraction,
        stratify=stratify,
        random_state=int(hps["seed"]),
    )
    return np.sort(train), np.sort(hold)


def _description(plan: Plan, fraction: float) -> str:
    t = plan.target
    what = (
        f"the value of {t.name!r}"
        if t.task == "regression"
        else f"{t.name!r} ({', '.join(t.classes)})"
    )
    ignored = "; ".join(f"{c.name}: {c.reason}" for c in plan.ignored)
    held = "stratified by class" if t.task != "regression" else "at random"
    return (
        f"Predicts {what} from {', '.join(f.name for f in plan.features)}; trained by "
        f"`aib model train` on {plan.source}. Metrics are on {fraction:.0%} of the rows held out "
        f"{held}. "
        + (f"Ignored columns: {ignored}. " if ignored else "")
        + "Missing values are imputed inside the graph; categories not among a feature's "
        "`categories` count as one unseen category."
    ).strip()


def _read_plan(env: TrainingEnv, hps: Mapping[str, HyperValue]) -> tuple[list[Path], Plan]:
    """The channel's files and what training will do with their columns (both logged)."""
    target = _required(hps, "target", "the CSV column to predict")
    choice = str(hps["task"])
    if choice not in ("auto", "classification", "regression"):
        raise TrainingError(f"task {choice!r}: use auto, classification or regression")
    files = channel_files(env.channel(CHANNEL))
    table = concat([read_table(p) for p in files])
    log(
        f"read {table.source}: {table.rows:,} rows, {len(table.header)} columns "
        f"({table.encoding}, {table.delimiter!r}-delimited)"
    )
    for note in table.notes:
        log(f"  {note}")
    plan = plan_dataset(
        table,
        target,
        choice,  # type: ignore[arg-type]  # checked above
        max_categories=int(hps["max_categories"]),
        min_category_rows=int(hps["min_category_rows"]),
    )
    for line in plan.summary():
        log(line)
    return files, plan


def _card_fields(
    name: str,
    plan: Plan,
    fitted: Fitted,
    files: Sequence[Path],
    hps: Mapping[str, HyperValue],
    opset: int,
) -> dict[str, Any]:
    """Everything of model.json but what the exported graph itself gives."""
    import sklearn

    t = plan.target
    model = fitted.pipeline.named_steps["model"]
    return {
        "name": name,
        "task": t.task,
        "created_at": datetime.now(UTC),
        "classes": t.classes,
        "metrics": fitted.metrics,
        "baselines": fitted.baselines,
        "training_data": TrainingData(
            fingerprint=data_fingerprint(files),
            rows=plan.rows,
            source=plan.source,
            positives=int((t.y == t.classes[1]).sum()) if len(t.classes) == 2 else None,
        ),
        "code_version": code_version(),
        "hyperparameters": dict(hps),
        "algorithm": (
            f"scikit-learn {sklearn.__version__} Pipeline: ColumnTransformer (imputation, "
            f"one-hot encoding) + {type(model).__name__} ({model.n_iter_} iterations), "
            f"exported with skl2onnx, opset {opset}"
        ),
        "description": _description(plan, float(hps["holdout_fraction"])),
    }


def train(env: TrainingEnv, hps: Mapping[str, HyperValue]) -> ModelCard:
    """One training run: read, plan, split, fit, evaluate, export, check; returns the card."""
    t0 = time.monotonic()
    name = _required(hps, "name", "the model's registry name")
    if not _NAME.match(name):
        raise TrainingError(f"name {name!r}: use lowercase letters, digits and _ (e.g. churn)")
    files, plan = _read_plan(env, hps)
    train_rows, hold = _split(plan, hps)
    log(f"train {len(train_rows):,} rows, holdout {len(hold):,}")
    fitted = _fit(plan, _design(plan), train_rows, hold, hps)
    opset = export_opset(hps)
    checked = export_checked(
        plan,
        fitted,
        hold,
        _card_fields(name, plan, fitted, files, hps, opset),
        env.model_dir / MODEL_FILE,
        opset=opset,
        tolerance=float(hps["parity_tolerance"]),
    )
    log(
        f"exported {MODEL_FILE} (opset {opset}, preprocessing in the graph); served on the "
        f"holdout it matches scikit-learn within {checked.max_diff:.2e}"
    )
    t = plan.target
    prediction = None
    if t.task == "regression":
        prediction = checked.served
    elif len(t.classes) == 2:
        prediction = checked.served[:, 1]
    features = checked.card.features
    feature_baseline(_baseline_matrix(plan, train_rows), features, prediction).write(env.model_dir)
    checked.card.write(env.model_dir)
    _write_report(env, plan, checked)
    log(f"wrote {env.model_dir} in {time.monotonic() - t0:.1f}s")
    return checked.card


def _write_report(env: TrainingEnv, plan: Plan, checked: Checked) -> None:
    if env.output_data_dir is None:
        return
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "metrics": checked.card.metrics,
        "baselines": checked.card.baselines,
        "parity_max_abs_diff": checked.max_diff,
        "columns": {
            "target": {"name": plan.target.name, "task": plan.target.task},
            "features": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "missing": f.missing,
                    "categories": list(f.categories),
                    "notes": list(f.notes),
                }
                for f in plan.features
            ],
            "ignored": [{"name": c.name, "reason": c.reason} for c in plan.ignored],
            "notes": list(plan.target.notes),
        },
    }
    write_evaluation(env, report)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one training job; returns the process exit code."""
    return run_job(__doc__, DEFAULT_HYPERPARAMETERS, train, argv, env)


if __name__ == "__main__":
    sys.exit(main())

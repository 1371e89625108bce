"""Parts every training entry point shares: the SageMaker contract, export, checks, baselines.

Entry points follow the SageMaker training-container contract, so the same code runs as a
SageMaker training job and, locally, as a subprocess (`aibackend.training.local`):

- `SM_MODEL_DIR`: the folder the model version is written to (`/opt/ml/model`);
- `SM_CHANNEL_<NAME>`: one folder per input channel (`/opt/ml/input/data/<name>`);
- `SM_HPS`: hyperparameters as JSON; they also arrive as `--name value` arguments;
- `SM_OUTPUT_DATA_DIR`: optional extra output (evaluation reports);
- `SM_OUTPUT_DIR`: where a `failure` file explains a failed job.

scikit-learn, skl2onnx and onnx are imported inside the functions that need them: this module
is importable where only numpy and onnxruntime are installed.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.errors import AibError
from aibackend.models.card import (
    Baseline,
    CategoricalStats,
    Feature,
    NumericStats,
    TensorSpec,
    sha256_file,
)
from aibackend.training.iforest import CONVERTER as IFOREST_CONVERTER
from aibackend.training.iforest import isolation_forest_onnx

HyperValue = str | int | float | bool

#: Highest default-domain opset exported: what onnxruntime 1.18 (the oldest the serving layer
#: allows) loads, so a model trained here also loads on the Lambda's onnxruntime.
MAX_OPSET = 21
#: `ai.onnx.ml` opset: v3 holds TreeEnsembleClassifier/Regressor, which every onnxruntime runs.
ML_OPSET = 3
#: Categorical value names for codes outside the vocabulary.
UNKNOWN_CATEGORY = "<unknown>"
#: Hyperparameters SageMaker itself adds (script mode); not the model's.
_SAGEMAKER_KEYS = ("sagemaker_", "model_dir")


class TrainingError(AibError):
    """Training cannot go on (bad input, failed check); the message says what to fix."""

    title = "Training failed"


#: Lines of a failed training process's output quoted in its error.
TAIL_LINES = 25


def sagemaker_env(run_dir: Path, hyperparameters: Mapping[str, HyperValue]) -> dict[str, str]:
    """The SageMaker training-container contract (`SM_*`), pointed at a local run folder laid
    out like /opt/ml: `model/`, `input/data/train/`, `output/`."""
    return {
        "SM_MODEL_DIR": str(run_dir / "model"),
        "SM_CHANNEL_TRAIN": str(run_dir / "input" / "data" / "train"),
        "SM_CHANNELS": json.dumps(["train"]),
        "SM_OUTPUT_DIR": str(run_dir / "output"),
        "SM_OUTPUT_DATA_DIR": str(run_dir / "output" / "data"),
        "SM_HPS": json.dumps(dict(hyperparameters)),
    }


def stream_process(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    echo: Callable[[str], None],
    log_file: Path | None = None,
) -> tuple[int, list[str]]:
    """Run `command` (stderr into stdout), handing each output line to `echo` as it comes and
    to `log_file` when given; returns the exit code and the last `TAIL_LINES` lines."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log_file.open("w", encoding="utf-8")) if log_file else None
        proc = stack.enter_context(
            subprocess.Popen(
                list(command),
                cwd=cwd,
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        )
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            if out is not None:
                out.write(line)
            line = line.rstrip("\n")
            tail.append(line)
            echo(line)
        return proc.wait(), list(tail)


def log(message: str) -> None:
    """One progress line on stdout (SageMaker streams it to CloudWatch; `train_local` echoes it)."""
    print(message, flush=True)


# --- the SageMaker contract -------------------------------------------------------------


@dataclass(frozen=True)
class TrainingEnv:
    """Folders of one training run, from the SageMaker environment variables."""

    model_dir: Path
    channels: dict[str, Path]
    output_data_dir: Path | None = None
    output_dir: Path | None = None

    def channel(self, name: str) -> Path:
        """The folder of input channel `name`, which must exist."""
        var = f"SM_CHANNEL_{name.upper()}"
        folder = self.channels.get(name)
        if folder is None:
            raise TrainingError(f"no input channel {name!r}: set {var} to the folder holding it")
        if not folder.is_dir():
            raise TrainingError(f"input channel {name!r}: {var}={folder} is not a folder")
        return folder


def training_env(env: Mapping[str, str] | None = None) -> TrainingEnv:
    """Read the SageMaker variables (defaults: the `/opt/ml` layout of a training container)."""
    env = os.environ if env is None else env
    channels = {
        key.removeprefix("SM_CHANNEL_").lower(): Path(value)
        for key, value in env.items()
        if key.startswith("SM_CHANNEL_") and value
    }
    if not channels and "SM_CHANNELS" not in env:
        channels = {"train": Path("/opt/ml/input/data/train")}
    out_data = env.get("SM_OUTPUT_DATA_DIR")
    out = env.get("SM_OUTPUT_DIR")
    return TrainingEnv(
        model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
        channels=channels,
        output_data_dir=Path(out_data) if out_data else None,
        output_dir=Path(out) if out else None,
    )


def _coerce(name: str, value: Any, default: HyperValue, source: str) -> HyperValue:
    text = str(value).strip()
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            number = float(text)
            if not number.is_integer():
                raise ValueError(text)
            return int(number)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        expected = {bool: "true or false", int: "an integer", float: "a number"}[type(default)]
        raise TrainingError(
            f"hyperparameter {name!r} from {source}: expected {expected}, got {value!r}"
        ) from None
    return text


def load_hyperparameters(
    defaults: Mapping[str, HyperValue],
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, HyperValue]:
    """Defaults, overridden by `SM_HPS` (JSON), overridden by `--name value` arguments.

    Values take the type of their default (SageMaker passes them as strings). Unknown names
    are an error, except the `sagemaker_*` ones SageMaker adds itself.
    """
    env = os.environ if env is None else env
    argv = sys.argv[1:] if argv is None else argv
    given: list[tuple[str, Any, str]] = []
    raw = env.get("SM_HPS", "")
    if raw.strip():
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TrainingError(f"SM_HPS is not JSON ({e}): {raw[:200]!r}") from e
        if not isinstance(parsed, dict):
            raise TrainingError(f"SM_HPS must be a JSON object, got {type(parsed).__name__}")
        given += [(str(k), v, "SM_HPS") for k, v in parsed.items()]
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or len(token) == 2:
            raise TrainingError(
                f"unexpected argument {token!r}; pass hyperparameters as --name value"
            )
        name, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise TrainingError(f"argument {token!r} has no value; pass --{name} VALUE")
            value = args[i + 1]
            i += 1
        given.append((name.replace("-", "_"), value, "the command line"))
        i += 1
    hps = dict(defaults)
    for name, value, source in given:
        if name.startswith(_SAGEMAKER_KEYS):
            continue
        if name not in defaults:
            raise TrainingError(
                f"unknown hyperparameter {name!r} (from {source}); known: {', '.join(defaults)}"
            )
        hps[name] = _coerce(name, value, defaults[name], source)
    return hps


# --- input data -------------------------------------------------------------------------

DATA_SUFFIXES = (".csv", ".csv.gz")


def channel_files(folder: Path) -> list[Path]:
    """The CSV files of a channel (`*.csv`, `*.csv.gz`), sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))
    if not files:
        raise TrainingError(
            f"{folder}: no training data; the channel needs one or more "
            f"{' / '.join('*' + s for s in DATA_SUFFIXES)} files with a header row"
        )
    return files


def read_csv_columns(files: Sequence[Path], required: Sequence[str]) -> dict[str, list[str]]:
    """The `required` columns of CSV files (same header in each) as lists of strings."""
    cols: dict[str, list[str]] = {name: [] for name in required}
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise TrainingError(f"{path}: empty file, expected a header row")
            missing = [c for c in required if c not in header]
            if missing:
                raise TrainingError(
                    f"{path}: missing column(s) {', '.join(missing)}; "
                    f"required: {', '.join(required)}"
                )
            rows = list(reader)
        width = len(header)
        bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
        if bad is not None:
            raise TrainingError(
                f"{path}: line {bad + 2} has {len(rows[bad])} fields, the header has {width}"
            )
        for name in required:
            j = header.index(name)
            cols[name].extend(r[j] for r in rows)
    return cols


def data_fingerprint(files: Sequence[Path]) -> str:
    """sha256 of the training data: the file's own sha256 for one file, else of the list."""
    if len(files) == 1:
        return sha256_file(files[0])
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return h.hexdigest()


def code_version(env: Mapping[str, str] | None = None) -> str:
    """`AIB_CODE_VERSION`, else the git commit this code runs from, else "unknown"."""
    env = os.environ if env is None else env
    if env.get("AIB_CODE_VERSION"):
        return env["AIB_CODE_VERSION"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


# --- metrics and baselines --------------------------------------------------------------


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), positives and rows of one scored holdout."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "positives": float(np.count_nonzero(y)),
        "rows": float(len(y)),
    }


def numeric_stats(values: np.ndarray) -> NumericStats:
    """count/mean/std/min/max and the deciles p0, p10, ..., p100 of the non-NaN values."""
    v = np.asarray(values, dtype=np.float64)
    ok = v[~np.isnan(v)]
    nulls = int(v.size - ok.size)
    if ok.size == 0:
        return NumericStats(
            count=0, nulls=nulls, mean=0.0, std=0.0, min=0.0, max=0.0, quantiles=(0.0,) * 11
        )
    q = np.quantile(ok, np.linspace(0.0, 1.0, 11))
    return NumericStats(
        count=int(ok.size),
        nulls=nulls,
        mean=float(ok.mean()),
        std=float(ok.std()),
        min=float(ok.min()),
        max=float(ok.max()),
        quantiles=tuple(float(x) for x in q),
    )


def categorical_stats(codes: np.ndarray, categories: Sequence[str]) -> CategoricalStats:
    """Share of each category (every category listed, 0 when absent); unknown codes pooled."""
    c = np.asarray(codes)
    nulls = int(np.isnan(c).sum()) if c.dtype.kind == "f" else 0
    c = c[~np.isnan(c)].astype(np.int64) if c.dtype.kind == "f" else c.astype(np.int64)
    n = max(int(c.size), 1)
    known = (c >= 0) & (c < len(categories))
    counts = np.bincount(c[known], minlength=len(categories))
    freq = {name: float(counts[i]) / n for i, name in enumerate(categories)}
    unknown = int(c.size - np.count_nonzero(known))
    if unknown:
        freq[UNKNOWN_CATEGORY] = unknown / n
    return CategoricalStats(count=int(c.size), nulls=nulls, frequencies=freq)


def feature_baseline(
    x: np.ndarray, features: Sequence[Feature], prediction: np.ndarray | None = None
) -> Baseline:
    """Per-feature statistics of a model-input matrix (columns in `features` order)."""
    if x.ndim != 2 or x.shape[1] != len(features):
        raise ValueError(f"expected a (n, {len(features)}) matrix, got {x.shape}")
    stats: dict[str, NumericStats | CategoricalStats] = {}
    for j, f in enumerate(features):
        if f.kind == "categorical":
            stats[f.name] = categorical_stats(x[:, j], f.categories)
        else:
            stats[f.name] = numeric_stats(x[:, j])
    return Baseline(
        rows=int(x.shape[0]),
        features=stats,
        prediction=None if prediction is None else numeric_stats(prediction),
    )


def write_baseline_profile(
    model_dir: Path,
    x: np.ndarray,
    features: Sequence[Feature],
    scores: np.ndarray | None = None,
) -> Path:
    """`profile.bin`: the same training matrix as `baseline.json`, as a mergeable profile the
    drift monitor compares live windows with (`aibackend.monitoring.profiles.profile_matrix`).

    `scores`, as `baseline.json`'s prediction, are the holdout's (any length): a boosted
    model's in-sample scores are sharper than the ones it produces on unseen traffic."""
    from aibackend.models.card import PROFILE_FILE
    from aibackend.monitoring.profiles import NumericColumn, delta_id_for, profile_matrix

    profile = profile_matrix(x, features, delta_id=delta_id_for("training"))
    if scores is not None:
        profile.score = NumericColumn(profile.schema.k)
        profile.score.update(np.asarray(scores, dtype=np.float64))
    path = model_dir / PROFILE_FILE
    path.write_bytes(profile.to_bytes())
    return path


# --- ONNX export ------------------------------------------------------------------------


def onnxruntime_max_opset(upper: int = MAX_OPSET) -> int:
    """The highest default-domain opset <= `upper` the installed onnxruntime loads."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    for opset in range(min(upper, onnx.defs.onnx_opset_version()), 6, -1):
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = min(model.ir_version, 10)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime's errors are untyped: try a lower opset
            continue
        return opset
    raise TrainingError(f"onnxruntime {ort.__version__} loads no opset between 7 and {upper}")


@dataclass(frozen=True)
class Exported:
    """A model written as an optimized ONNX graph, checked against its scikit-learn twin."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    max_abs_diff: float
    probabilities: np.ndarray
    #: What wrote the graph: skl2onnx, or `IFOREST_CONVERTER` for isolation forests.
    converter: str = "skl2onnx"

    @property
    def tool_versions(self) -> str:
        import onnxruntime as ort
        import skl2onnx

        if self.converter == "skl2onnx":
            return f"skl2onnx {skl2onnx.__version__}, onnxruntime {ort.__version__}"
        return f"{self.converter}, onnxruntime {ort.__version__}"


def to_onnx_bytes(
    model: Any, n_features: int, *, input_name: str = "features", opset: int | None = None
) -> tuple[bytes, int]:
    """A fitted scikit-learn model as ONNX: one float input `input_name` of shape [None, n].

    Classifiers return probabilities as one tensor (no ZipMap). An `IsolationForest` is written
    by `aibackend.training.iforest` as one tree ensemble instead of skl2onnx's graph of one
    ensemble per tree (same outputs, about 70 times faster for one row). Returns (bytes,
    opset used).
    """
    from skl2onnx import __max_supported_opset__, convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    opset = opset or onnxruntime_max_opset(min(MAX_OPSET, __max_supported_opset__))
    if converter_of(model) == IFOREST_CONVERTER:
        raw = isolation_forest_onnx(
            model, n_features, input_name=input_name, opset=opset, ml_opset=ML_OPSET
        )
        return raw, opset
    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    onx = convert_sklearn(
        model,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        options=options,
        target_opset={"": opset, "ai.onnx.ml": ML_OPSET},
    )
    return onx.SerializeToString(), opset


def converter_of(model: Any) -> str:
    """What `to_onnx_bytes` writes `model`'s graph with."""
    from sklearn.ensemble import IsolationForest

    return IFOREST_CONVERTER if isinstance(model, IsolationForest) else "skl2onnx"


def optimize_offline(model_bytes: bytes, dest: Path) -> Path:
    """Write the graph after onnxruntime's BASIC optimizations (portable: x86 -> arm64)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dest)
    ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
    if not dest.is_file():
        raise TrainingError(f"onnxruntime did not write the optimized graph to {dest}")
    return dest


def _spec(arg: Any) -> TensorSpec:
    dtype = str(arg.type).removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
    shape = tuple(d if isinstance(d, int | str) or d is None else str(d) for d in arg.shape)
    return TensorSpec(name=arg.name, dtype=dtype, shape=shape)


def export_checked(
    model: Any,
    x_check: np.ndarray,
    expected: np.ndarray,
    dest: Path,
    *,
    tolerance: float = 1e-4,
    input_name: str = "features",
    opset: int | None = None,
) -> Exported:
    """Export, optimize offline and write `dest` only if the graph matches scikit-learn.

    The graph is loaded the way functions serve it (`models.runtime.create_session`) and run
    on `x_check`; its last output (probabilities, or the prediction) must be within
    `tolerance` of `expected` everywhere, else `TrainingError` and nothing is written.
    """
    import tempfile

    from aibackend.models.runtime import create_session

    raw, used = to_onnx_bytes(model, x_check.shape[1], input_name=input_name, opset=opset)
    with tempfile.TemporaryDirectory(prefix="aib-export-") as tmp:
        staged = optimize_offline(raw, Path(tmp) / dest.name)
        session = create_session(staged)
        names = [o.name for o in session.get_outputs()]
        got = session.run(names, {input_name: x_check.astype(np.float32, copy=False)})[-1]
        got = np.asarray(got, dtype=np.float64)
        exp = np.asarray(expected, dtype=np.float64)
        if got.shape != exp.shape:
            raise TrainingError(
                f"ONNX output {names[-1]!r} has shape {got.shape}, scikit-learn gives {exp.shape}"
            )
        diff = float(np.max(np.abs(got - exp))) if exp.size else 0.0
        if not diff < tolerance:
            raise TrainingError(
                f"ONNX parity check failed: max |onnxruntime - scikit-learn| = {diff:.3g} on "
                f"{len(x_check)} rows (tolerance {tolerance:g}); the converter does not "
                "reproduce this model (e.g. native categorical splits); nothing was written"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(staged.read_bytes())
        inputs = tuple(_spec(a) for a in session.get_inputs())
        outputs = tuple(_spec(a) for a in session.get_outputs())
    return Exported(
        path=dest,
        inputs=inputs,
        outputs=outputs,
        opset=used,
        max_abs_diff=diff,
        probabilities=got,
        converter=converter_of(model),
    )


def write_failure(env: TrainingEnv, message: str) -> None:
    """SageMaker shows `<SM_OUTPUT_DIR>/failure` as the job's failure reason."""
    if env.output_dir is None:
        return
    try:
        env.output_dir.mkdir(parents=True, exist_ok=True)
        (env.output_dir / "failure").write_text(message[:1024] + "\n", encoding="utf-8")
    except OSError:
        pass  # the message still goes to stderr


def write_evaluation(env: TrainingEnv, report: Mapping[str, Any]) -> None:
    """`<SM_OUTPUT_DATA_DIR>/evaluation.json`: what a run measured, beyond the model card."""
    if env.output_data_dir is None:
        return
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    (env.output_data_dir / "evaluation.json").write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"
    )


def run_job(
    doc: str | None,
    defaults: Mapping[str, HyperValue],
    train: Callable[[TrainingEnv, Mapping[str, HyperValue]], object],
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """An entry point's `main`: `--help` lists the hyperparameters; otherwise read the
    environment and hyperparameters (SM_HPS or `--name value`), run `train`, and on failure
    print the reason and write SageMaker's failure file. Returns the process exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if {"-h", "--help"} & set(args):
        print(doc or "")
        print("Hyperparameters (SM_HPS or --name value) and their defaults:")
        for name, value in defaults.items():
            print(f"  --{name} {json.dumps(value)}")
        return 0
    tenv = training_env(env)
    try:
        hps = load_hyperparameters(defaults, args, env)
        log(f"hyperparameters: {json.dumps(hps, sort_keys=True)}")
        train(tenv, hps)
    except AibError as e:  # TrainingError, or a graph onnxruntime cannot load
        print(f"training failed: {e}", file=sys.stderr, flush=True)
        write_failure(tenv, str(e))
        return 2
    return 0

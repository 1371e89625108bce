"""Train the sentiment model: `python -m aibackend.training.sentiment` (SageMaker contract).

Reads the `train` channel: every `*.csv[.gz]` but `holdout.csv` is training data (columns
`text`, `label` = negative | positive, optionally `source`: rows whose source is `handwritten`
weigh `handwritten_weight` times the others); `holdout.csv` holds sentences never trained on
(without it, the project's hand-written holdout is used). `prepare` copies the project's corpus
(`data/sentiment/corpus/`) as `train.csv` and its holdout (`data/sentiment/holdout/`) there.

Fits TF-IDF (word 1- to `ngram_max`-grams) + logistic regression as one scikit-learn Pipeline,
scores it on the holdout next to two baselines (the training set's majority class, and a
word lexicon with negation and contrast handling), and writes a model version to
`SM_MODEL_DIR`: `model.onnx` (the whole pipeline, raw strings in, checked against
scikit-learn on every training and holdout sentence), `model.json` and `baseline.json`.

Exit codes: 0 done, 2 bad input or failed check (the message says which), 1 anything else.
"""

from __future__ import annotations

import csv
import gzip
import random
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.models.card import Baseline, ModelCard, TrainingData, sha256_file
from aibackend.models.runtime import create_session
from aibackend.sentiment.model import LABELS, PROBABILITIES
from aibackend.training.common import (
    MAX_OPSET,
    ML_OPSET,
    Exported,
    HyperValue,
    TrainingEnv,
    TrainingError,
    _spec,
    channel_files,
    code_version,
    data_fingerprint,
    log,
    numeric_stats,
    onnxruntime_max_opset,
    optimize_offline,
    read_csv_columns,
    run_job,
    write_evaluation,
)

NAME = "sentiment"
CHANNEL = "train"
TRAIN_FILE = "train.csv"
HOLDOUT_FILE = "holdout.csv"
INPUT_NAME = "text"
DATA_DIR = Path(__file__).resolve().parent / "data" / "sentiment"
CORPUS_FILES = (DATA_DIR / "corpus" / "generated.csv", DATA_DIR / "corpus" / "handwritten.csv")
HOLDOUT_SOURCE = DATA_DIR / "holdout" / "holdout.csv"
LEXICON_FILE = DATA_DIR / "lexicon" / "lexicon.csv"

#: Tokens: runs of ASCII letters and digits, after lowercasing. The same expression is the
#: ONNX Tokenizer's `tokenexp` (re2): scikit-learn's default `(?u)\b\w\w+\b` matches Unicode
#: letters in Python but ASCII only in re2, and drops 1-letter tokens ("don't" -> "don", "t",
#: where "t" carries the negation), so both sides use this one explicitly.
TOKEN_PATTERN = r"[a-z0-9]+"
#: Locale of the ONNX StringNormalizer that lowercases: without it onnxruntime uses the
#: process locale, which may be "C" and lowercase only ASCII.
ONNX_LOCALE = "C.UTF-8"

DEFAULT_HYPERPARAMETERS: dict[str, HyperValue] = {
    # Chosen by 5-fold cross-validation on the hand-written training sentences (the generated
    # ones always in training); the holdout played no part. Larger n-grams, other C values and
    # min_df 1 scored within a point of these.
    "c": 3.0,
    "ngram_max": 2,
    "min_df": 2,
    "handwritten_weight": 3.0,
    "max_iter": 2000,
    # ONNX must reproduce scikit-learn's probabilities on every training and holdout sentence.
    "parity_tolerance": 1e-5,
    # Refuse to write a model that does not beat both baselines on the holdout accuracy.
    "require_beat_baselines": True,
    # 0: the highest opset both onnxruntime here and on Lambda load.
    "target_opset": 0,
}


# --- data --------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """The form sentences are compared in: lowercase ASCII words and digits, single spaces."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def prepare(channel_dir: Path, *, rows: int, seed: int) -> Path:
    """Copy the corpus (all of it, or a seeded sample of `rows`) and the holdout into the
    channel folder as `train.csv` (with a `source` column) and `holdout.csv`."""
    corpus = [
        {"text": r["text"], "label": r["label"], "source": path.stem}
        for path in CORPUS_FILES
        for r in _read_rows(path)
    ]
    if rows > len(corpus):
        raise TrainingError(
            f"the sentiment corpus has {len(corpus)} sentences; ask for at most that many rows"
        )
    if rows < len(corpus):
        keep = sorted(random.Random(seed).sample(range(len(corpus)), rows))
        corpus = [corpus[i] for i in keep]
    train = channel_dir / TRAIN_FILE
    with train.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "source"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(corpus)
    (channel_dir / HOLDOUT_FILE).write_bytes(HOLDOUT_SOURCE.read_bytes())
    return train


@dataclass(frozen=True)
class Sentences:
    """Texts with their labels (1 = positive) and training weights."""

    texts: list[str]
    y: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def _header(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def read_sentences(files: Sequence[Path], handwritten_weight: float = 1.0) -> Sentences:
    """`text` and `label` columns (and `source` where present) of CSV files, checked."""
    texts: list[str] = []
    labels: list[int] = []
    weights: list[float] = []
    for path in files:
        columns = ["text", "label"] + (["source"] if "source" in _header(path) else [])
        cols = read_csv_columns([path], columns)
        for i, (text, label) in enumerate(zip(cols["text"], cols["label"], strict=True)):
            if label not in LABELS:
                raise TrainingError(
                    f"{path.name}, line {i + 2}: label {label!r} is not one of {', '.join(LABELS)}"
                )
            if not text.strip():
                raise TrainingError(f"{path.name}, line {i + 2}: empty text")
            labels.append(LABELS.index(label))
        texts += cols["text"]
        sources = cols.get("source", [""] * len(cols["text"]))
        weights += [handwritten_weight if s == "handwritten" else 1.0 for s in sources]
    if not texts:
        raise TrainingError(f"{', '.join(p.name for p in files)}: no sentences")
    return Sentences(
        texts=texts,
        y=np.array(labels, dtype=np.int64),
        weights=np.array(weights, dtype=np.float64),
    )


def channel_data(channel: Path) -> tuple[list[Path], Path]:
    """(training files, holdout file): every CSV of the channel but `holdout.csv` trains; the
    holdout is the channel's `holdout.csv`, else the project's hand-written one."""
    files = channel_files(channel)
    train = [p for p in files if p.name != HOLDOUT_FILE]
    if not train:
        raise TrainingError(
            f"{channel}: no training data besides {HOLDOUT_FILE}; add a CSV with columns "
            "text, label (negative or positive) and optionally source"
        )
    holdout = channel / HOLDOUT_FILE
    return train, holdout if holdout.is_file() else HOLDOUT_SOURCE


def check_disjoint(train: Sequence[str], holdout: Sequence[str]) -> None:
    """Refuse a holdout that shares sentences (normalized) with the training data."""
    seen = {normalize(t) for t in train}
    shared = [t for t in holdout if normalize(t) in seen]
    if shared:
        raise TrainingError(
            f"{len(shared)} holdout sentence(s) also appear in the training data (e.g. "
            f"{shared[0]!r}); holdout metrics would be inflated, remove them from one side"
        )


# --- baselines ---------------------------------------------------------------------------

#: Words that flip the polarity of the next `NEGATION_SCOPE` words (and any "...n't").
NEGATORS = frozenset(
    {
        "not",
        "no",
        "never",
        "none",
        "nothing",
        "nobody",
        "neither",
        "nor",
        "without",
        "hardly",
        "barely",
        "cannot",
        "cant",
        "dont",
        "doesnt",
        "didnt",
        "isnt",
        "wasnt",
        "wont",
        "wouldnt",
    }
)
NEGATION_SCOPE = 3
#: Words after which the clause carries the verdict: its words count 1.5 times, those
#: before 0.5 times (as VADER does for "but").
CONTRASTS = frozenset({"but", "however", "yet"})
_LEXICON_TOKENS = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.,;:!?]")


@dataclass(frozen=True)
class Lexicon:
    """Sum of word weights, negation flipping a word's sign, contrast shifting the weight."""

    weights: Mapping[str, float]

    @classmethod
    def read(cls, path: Path = LEXICON_FILE) -> Lexicon:
        rows = _read_rows(path)
        try:
            return cls({r["word"]: float(r["weight"]) for r in rows})
        except (KeyError, ValueError) as e:
            raise TrainingError(f"{path}: needs columns word, weight (a number): {e}") from e

    def score(self, text: str) -> float:
        """> 0 positive, < 0 negative, 0 when no lexicon word occurs (or they cancel)."""
        tokens = _LEXICON_TOKENS.findall(text.lower().replace("\u2019", "'"))
        clauses: list[list[str]] = [[]]
        for token in tokens:
            if token in CONTRASTS:
                clauses.append([])
            else:
                clauses[-1].append(token)
        total = 0.0
        for i, clause in enumerate(clauses):
            weight = 1.0 if len(clauses) == 1 else 1.5 if i == len(clauses) - 1 else 0.5
            total += weight * self._clause_score(clause)
        return total

    def _clause_score(self, tokens: Sequence[str]) -> float:
        total, negated = 0.0, 0
        for token in tokens:
            if not token[0].isalnum():  # punctuation ends a negation's scope
                negated = 0
            elif token in NEGATORS or token.endswith("n't"):
                negated = NEGATION_SCOPE
            else:
                value = self.weights.get(token, 0.0)
                total += -value if negated else value
                negated = max(negated - 1, 0)
        return total


def lexicon_scores(lexicon: Lexicon, texts: Sequence[str]) -> np.ndarray:
    return np.array([lexicon.score(t) for t in texts], dtype=np.float64)


def classification_metrics(
    y: np.ndarray, predicted: np.ndarray, score: np.ndarray
) -> dict[str, float]:
    """Accuracy, macro F1, ROC AUC of `score` (positive class), rows and positives."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro", labels=[0, 1])),
        "roc_auc": float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan"),
        "rows": float(len(y)),
        "positives": float(np.count_nonzero(y)),
    }


def baselines(
    train: Sentences, holdout: Sentences, lexicon: Lexicon
) -> dict[str, dict[str, float]]:
    """Holdout metrics of the majority class and of the lexicon (ties -> the majority)."""
    majority = int(np.bincount(train.y, minlength=2).argmax())
    constant = np.full(len(holdout), majority)
    scores = lexicon_scores(lexicon, holdout.texts)
    by_lexicon = np.where(scores > 0, 1, np.where(scores < 0, 0, majority))
    return {
        "majority_class": classification_metrics(holdout.y, constant, constant.astype(float)),
        "lexicon": classification_metrics(holdout.y, by_lexicon, scores),
    }


# --- model and export --------------------------------------------------------------------


def build_pipeline(hps: Mapping[str, HyperValue]) -> Any:
    """TF-IDF + logistic regression, with only options skl2onnx converts exactly."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    lowercase=True,
                    token_pattern=TOKEN_PATTERN,
                    ngram_range=(1, int(hps["ngram_max"])),
                    min_df=int(hps["min_df"]),
                    # skl2onnx's conversion of sublinear_tf differs from scikit-learn's
                    # (probabilities off by ~1e-2 for repeated words): keep raw counts.
                    sublinear_tf=False,
                ),
            ),
            ("lr", LogisticRegression(C=float(hps["c"]), max_iter=int(hps["max_iter"]))),
        ]
    )


def fit(pipeline: Any, train: Sentences) -> Any:
    pipeline.fit(train.texts, train.y, lr__sample_weight=train.weights)
    return pipeline


def to_onnx_bytes(pipeline: Any, opset: int | None = None) -> tuple[bytes, int]:
    """The fitted pipeline as ONNX: string input `text` [N, 1] -> `label`, `probabilities`."""
    from skl2onnx import __max_supported_opset__, convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    opset = opset or onnxruntime_max_opset(min(MAX_OPSET, __max_supported_opset__))
    options = {
        id(pipeline.named_steps["tfidf"]): {"tokenexp": TOKEN_PATTERN, "locale": ONNX_LOCALE},
        id(pipeline.named_steps["lr"]): {"zipmap": False},
    }
    onx = convert_sklearn(
        pipeline,
        initial_types=[(INPUT_NAME, StringTensorType([None, 1]))],
        options=options,
        target_opset={"": opset, "ai.onnx.ml": ML_OPSET},
    )
    return onx.SerializeToString(), opset


def run_graph(session: Any, texts: Sequence[str]) -> np.ndarray:
    batch = np.array(list(texts), dtype=object).reshape(-1, 1)
    (probs,) = session.run([PROBABILITIES], {INPUT_NAME: batch})
    return np.asarray(probs, dtype=np.float64)


def export_checked(
    pipeline: Any,
    texts: Sequence[str],
    dest: Path,
    *,
    tolerance: float,
    opset: int | None = None,
) -> Exported:
    """Export, optimize offline and write `dest` only if onnxruntime reproduces scikit-learn's
    probabilities on `texts` within `tolerance`, loaded the way the service loads it."""
    raw, used = to_onnx_bytes(pipeline, opset)
    expected = pipeline.predict_proba(list(texts))
    with tempfile.TemporaryDirectory(prefix="aib-export-") as tmp:
        staged = optimize_offline(raw, Path(tmp) / dest.name)
        session = create_session(staged)
        got = run_graph(session, texts)
        diff = float(np.max(np.abs(got - expected))) if len(texts) else 0.0
        if got.shape != expected.shape or not diff < tolerance:
            worst = (
                int(np.abs(got - expected).max(axis=1).argmax())
                if got.shape == expected.shape
                else 0
            )
            raise TrainingError(
                f"ONNX parity check failed: max |onnxruntime - scikit-learn| = {diff:.3g} on "
                f"{len(texts)} sentences (tolerance {tolerance:g}), worst on "
                f"{texts[worst]!r}; the graph tokenizes or lowercases differently; nothing "
                "was written"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(staged.read_bytes())
        inputs = tuple(_spec(a) for a in session.get_inputs())
        outputs = tuple(_spec(a) for a in session.get_outputs())
    return Exported(
        path=dest, inputs=inputs, outputs=outputs, opset=used, max_abs_diff=diff, probabilities=got
    )


def text_baseline(texts: Sequence[str], positive: np.ndarray) -> Baseline:
    """Drift reference: characters and tokens per text, and the positive-class probability."""
    chars = np.array([len(t) for t in texts], dtype=np.float64)
    tokens = np.array([len(re.findall(TOKEN_PATTERN, t.lower())) for t in texts], np.float64)
    return Baseline(
        rows=len(texts),
        features={"characters": numeric_stats(chars), "tokens": numeric_stats(tokens)},
        prediction=numeric_stats(positive),
    )


# --- the training run --------------------------------------------------------------------


def _fmt(m: Mapping[str, float]) -> str:
    return f"accuracy={m['accuracy']:.4f} macro_f1={m['macro_f1']:.4f}"


def _gate(metrics: Mapping[str, float], base: Mapping[str, Mapping[str, float]]) -> None:
    beaten = {
        name: m["accuracy"] for name, m in base.items() if m["accuracy"] >= metrics["accuracy"]
    }
    if beaten:
        raise TrainingError(
            f"the model's holdout accuracy {metrics['accuracy']:.4f} does not beat "
            + ", ".join(f"{n} ({a:.4f})" for n, a in beaten.items())
            + "; nothing was written (more or better training data, or "
            "--require_beat_baselines false to write it anyway)"
        )


def _mistakes(holdout: Sentences, positive: np.ndarray, limit: int = 20) -> list[dict[str, Any]]:
    """The holdout sentences the model gets most wrong, for people reading the report."""
    wrong = np.abs(positive - holdout.y)
    order = [int(i) for i in np.argsort(-wrong) if wrong[i] > 0.5][:limit]
    return [
        {
            "text": holdout.texts[i],
            "label": LABELS[holdout.y[i]],
            "p_positive": round(float(positive[i]), 4),
        }
        for i in order
    ]


def train(env: TrainingEnv, hps: Mapping[str, HyperValue]) -> ModelCard:
    """One training run: read, fit, evaluate against the baselines, export; returns the card."""
    import sklearn

    t0 = time.monotonic()
    train_files, holdout_file = channel_data(env.channel(CHANNEL))
    files = [*train_files, holdout_file]
    train_set = read_sentences(train_files, float(hps["handwritten_weight"]))
    holdout = read_sentences([holdout_file])
    check_disjoint(train_set.texts, holdout.texts)
    log(
        f"{len(train_set)} training sentences ({int(train_set.y.sum())} positive) from "
        f"{', '.join(p.name for p in train_files)}; {len(holdout)} holdout sentences "
        f"({int(holdout.y.sum())} positive) from {holdout_file}"
    )

    t = time.monotonic()
    pipeline = fit(build_pipeline(hps), train_set)
    positive = pipeline.predict_proba(holdout.texts)[:, 1]
    metrics = classification_metrics(holdout.y, (positive >= 0.5).astype(int), positive)
    vocabulary = len(pipeline.named_steps["tfidf"].vocabulary_)
    log(f"tf-idf ({vocabulary} terms) + logistic regression in {time.monotonic() - t:.1f}s")
    base = baselines(train_set, holdout, Lexicon.read())
    for name, m in {"model": metrics, **base}.items():
        log(f"holdout {name}: {_fmt(m)}")
    if hps["require_beat_baselines"]:
        _gate(metrics, base)

    env.model_dir.mkdir(parents=True, exist_ok=True)
    checked = train_set.texts + holdout.texts
    exported = export_checked(
        pipeline,
        checked,
        env.model_dir / "model.onnx",
        tolerance=float(hps["parity_tolerance"]),
        opset=int(hps["target_opset"]) or None,
    )
    log(
        f"exported model.onnx (opset {exported.opset}, basic optimizations); parity with "
        f"scikit-learn: max abs diff {exported.max_abs_diff:.2e} on {len(checked)} sentences"
    )
    text_baseline(train_set.texts, exported.probabilities[: len(train_set), 1]).write(env.model_dir)
    card = ModelCard(
        name=NAME,
        version=0,
        task="binary_classification",
        created_at=datetime.now(UTC),
        sha256=sha256_file(exported.path),
        features=(),
        inputs=exported.inputs,
        outputs=exported.outputs,
        classes=LABELS,
        metrics={**metrics, "parity_max_abs_diff": exported.max_abs_diff},
        baselines=base,
        training_data=TrainingData(
            fingerprint=data_fingerprint(files),
            rows=len(train_set),
            positives=int(train_set.y.sum()),
            source=", ".join(p.name for p in files),
        ),
        code_version=code_version(),
        hyperparameters=dict(hps),
        algorithm=(
            f"scikit-learn {sklearn.__version__} TfidfVectorizer (word 1-{hps['ngram_max']}"
            f"-grams, {vocabulary} terms) + LogisticRegression, exported with "
            f"{exported.tool_versions}, opset {exported.opset}"
        ),
        description=(
            "Whether an English product-review sentence is positive or negative. Input: raw "
            "text; the graph lowercases it and splits it into runs of ASCII letters and digits "
            "(other characters separate words). Metrics are on a hand-written holdout of "
            f"{len(holdout)} sentences never trained on; trained on generated and hand-written "
            "sentences (training/data/sentiment/*/PROVENANCE.md), not on real customer reviews."
        ),
    )
    card.write(env.model_dir)
    report = {
        "metrics": card.metrics,
        "baselines": base,
        "vocabulary": vocabulary,
        "holdout_mistakes": _mistakes(holdout, exported.probabilities[len(train_set) :, 1]),
    }
    write_evaluation(env, report)
    log(f"wrote {env.model_dir} in {time.monotonic() - t0:.1f}s")
    return card


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one training job; returns the process exit code."""
    return run_job(__doc__, DEFAULT_HYPERPARAMETERS, train, argv, env)


if __name__ == "__main__":
    sys.exit(main())

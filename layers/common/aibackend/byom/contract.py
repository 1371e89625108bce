"""How a model card maps onto its ONNX graph: the tensor each feature feeds, how its values are
encoded, and the output that holds the prediction.

Two input layouts are served, told apart by the graph itself:

- `columns`: one graph input per feature, `[N, 1]` or `[N]`, in the order of `model.json`'s
  `inputs` (what `aib model train` exports: skl2onnx with the preprocessing in the graph). A
  float input takes the number (a boolean as 1 or 0); a string input takes a categorical value
  as sent, trimmed.
- `matrix`: one float input `[N, F]`, features in `model.json` order (a model trained on a plain
  matrix); a categorical value becomes its index in the feature's `categories`.

A missing value (null, absent, or a categorical that reads as blank: `MISSING_TOKENS`) reaches
the graph as NaN in a float input and as "" in a string input; what happens next is the graph's
business (trained pipelines impute it). Categorical values unknown to a float input are NaN too.

Classification reads a float output `[N, classes]` (probabilities in `classes` order), or for two
classes `[N]`/`[N, 1]` holding the second class's probability; regression reads `[N]`/`[N, 1]`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from aibackend.errors import ModelLoadError
from aibackend.models.card import Feature, ModelCard, TensorSpec

Layout = Literal["columns", "matrix"]

#: Cell text that means "no value", compared case-insensitively: in training CSVs, and in the
#: categorical values of requests (so `"N/A"` is missing in both).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "?", "#n/a"})
#: What a missing categorical value is fed to a string input as.
MISSING_TEXT = ""
CLASSIFICATION_TASKS = ("binary_classification", "multiclass_classification")

_FLOATS: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}
_STRING = "tensor(string)"


class GraphArg(Protocol):
    """What an onnxruntime session says about one of its inputs or outputs (a `NodeArg`)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def shape(self) -> Sequence[Any]: ...


def tensor_spec(arg: GraphArg) -> TensorSpec:
    """A graph input or output as `model.json` records it (`float32`, `string`, ...)."""
    dtype = arg.type.removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
    shape = tuple(d if isinstance(d, int | str) or d is None else str(d) for d in arg.shape)
    return TensorSpec(name=arg.name, dtype=dtype, shape=shape)


def text_value(value: Any) -> str:
    """A categorical value as the model compares it: trimmed; missing tokens become ""."""
    if value is None:
        return MISSING_TEXT
    text = str(value).strip()
    return MISSING_TEXT if text.lower() in MISSING_TOKENS else text


@dataclass(frozen=True)
class Column:
    """One feature and the graph input it feeds."""

    feature: Feature
    tensor: str
    #: numpy type of a float input; None for a string input.
    dtype: type[np.floating[Any]] | None
    #: Categorical value -> code, for a categorical feeding a float input.
    codes: Mapping[str, float]
    #: 1 for an `[N]` input, 2 for `[N, 1]` or a matrix.
    rank: int

    def encode(self, values: Sequence[Any]) -> np.ndarray:
        """One value per record (None: missing) as this input's array, shape (n,)."""
        if self.dtype is None:
            return np.array([text_value(v) for v in values], dtype=object)
        if self.feature.kind == "categorical":
            return np.array(
                [self.codes.get(text_value(v), math.nan) for v in values], dtype=self.dtype
            )
        return np.array([math.nan if v is None else float(v) for v in values], dtype=self.dtype)


@dataclass(frozen=True)
class Contract:
    """A card bound to its graph: `feed` builds the inputs, `read` decodes the chosen output."""

    layout: Layout
    columns: tuple[Column, ...]
    task: str
    classes: tuple[str, ...]
    #: Name of the graph output holding the prediction.
    output: str
    #: The output holds only the second class's probability (binary, `[N]` or `[N, 1]`).
    positive_only: bool = False

    @property
    def is_classifier(self) -> bool:
        return self.task in CLASSIFICATION_TASKS

    def feed(self, columns: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
        """Graph inputs from one sequence of values per feature (card order; None: missing)."""
        if len(columns) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} feature columns, got {len(columns)}")
        encoded = [c.encode(v) for c, v in zip(self.columns, columns, strict=True)]
        if self.layout == "matrix":
            first = self.columns[0]
            matrix = np.column_stack(encoded) if encoded else np.empty((0, 0))
            return {first.tensor: matrix.astype(first.dtype or np.float32, copy=False)}
        return {
            c.tensor: e.reshape(-1, 1) if c.rank == 2 else e
            for c, e in zip(self.columns, encoded, strict=True)
        }

    def read(self, output: Any, rows: int) -> np.ndarray:
        """The output as float64: (rows, classes) probabilities, or (rows,) values."""
        out = np.asarray(output, dtype=np.float64)
        column = out.shape in ((rows,), (rows, 1))
        if self.is_classifier:
            if self.positive_only and column:
                p = out.reshape(rows)
                return np.column_stack([1.0 - p, p])
            if out.shape == (rows, len(self.classes)):
                return out
            expected = f"({rows}, {len(self.classes)})"
        else:
            if column:
                return out.reshape(rows)
            expected = f"({rows},) or ({rows}, 1)"
        raise ModelLoadError(
            f"output {self.output!r} has shape {out.shape}, expected {expected}: the graph does "
            "not answer as its model.json describes; re-export it or fix model.json"
        )


def _codes(feature: Feature) -> dict[str, float]:
    return {c.strip(): float(i) for i, c in enumerate(feature.categories)}


def _describe(args: Sequence[GraphArg]) -> str:
    return ", ".join(f"{a.name!r} {a.type} {list(a.shape)}" for a in args) or "none"


def _fixed_batch(arg: GraphArg, where: str) -> None:
    if arg.shape and isinstance(arg.shape[0], int):
        raise ModelLoadError(
            f"{where}: input {arg.name!r} has a fixed batch size of {arg.shape[0]} "
            f"({list(arg.shape)}); export it with a dynamic first dimension (None)"
        )


def _matrix(
    features: Sequence[Feature], arg: GraphArg, where: str, label: str
) -> tuple[Column, ...]:
    dtype = _FLOATS.get(arg.type)
    width = arg.shape[1] if len(arg.shape) == 2 else None
    if dtype is None or len(arg.shape) != 2 or (isinstance(width, int) and width != len(features)):
        raise ModelLoadError(
            f"{where}: the graph's one input {arg.name!r} is {arg.type} {list(arg.shape)}; for "
            f"{len(features)} features it must be a float matrix [N, {len(features)}] (columns "
            f"in {label} order), or the graph needs one input per feature"
        )
    _fixed_batch(arg, where)
    return tuple(Column(f, arg.name, dtype, _codes(f), 2) for f in features)


def _column(feature: Feature, arg: GraphArg, where: str) -> Column:
    rank = len(arg.shape)
    if rank not in (1, 2) or (rank == 2 and isinstance(arg.shape[1], int) and arg.shape[1] != 1):
        raise ModelLoadError(
            f"{where}: input {arg.name!r} (feature {feature.name!r}) has shape "
            f"{list(arg.shape)}; one input per feature must be [N, 1] or [N]"
        )
    _fixed_batch(arg, where)
    if arg.type == _STRING:
        if feature.kind != "categorical":
            raise ModelLoadError(
                f"{where}: input {arg.name!r} is a string tensor but feature {feature.name!r} is "
                f"{feature.kind}; declare it categorical or give the graph a float input"
            )
        return Column(feature, arg.name, None, {}, rank)
    dtype = _FLOATS.get(arg.type)
    if dtype is None:
        raise ModelLoadError(
            f"{where}: input {arg.name!r} is {arg.type}; served inputs are float, double or "
            "string tensors (an integer cannot carry a missing value): cast inside the graph"
        )
    return Column(feature, arg.name, dtype, _codes(feature), rank)


def _bind_inputs(
    card: ModelCard, inputs: Sequence[GraphArg], where: str, label: str
) -> tuple[Layout, tuple[Column, ...]]:
    features = card.features
    if not features:
        raise ModelLoadError(f"{where}: {label} lists no features; the service needs them")
    if len(inputs) == 1 and len(features) > 1:
        return "matrix", _matrix(features, inputs[0], where, label)
    if len(inputs) != len(features):
        raise ModelLoadError(
            f"{where}: the graph has {len(inputs)} input(s) ({_describe(inputs)}) for "
            f"{len(features)} features in {label}; it needs one input per feature, or one "
            f"float matrix input [N, {len(features)}]"
        )
    # The card's `inputs` name each feature's tensor, in feature order.
    names = [spec.name for spec in card.inputs]
    graph = {a.name: a for a in inputs}
    if len(names) != len(features) or set(names) != set(graph):
        raise ModelLoadError(
            f"{where}: {label} names inputs {names}, the graph has "
            f"{sorted(graph)}; list one input per feature, in feature order"
        )
    return "columns", tuple(
        _column(f, graph[n], where) for f, n in zip(features, names, strict=True)
    )


def _width(arg: GraphArg) -> int | None:
    """Second dimension of a rank-2 output (None when symbolic); 1 for rank 1."""
    if len(arg.shape) == 1:
        return 1
    return arg.shape[1] if len(arg.shape) == 2 and isinstance(arg.shape[1], int) else None


def _bind_output(
    card: ModelCard, outputs: Sequence[GraphArg], where: str, label: str
) -> tuple[str, bool]:
    floats = [a for a in reversed(outputs) if a.type in _FLOATS and len(a.shape) in (1, 2)]
    if card.task in CLASSIFICATION_TASKS:
        k = len(card.classes)
        if k < 2:
            raise ModelLoadError(
                f"{where}: a {card.task} model needs at least two class labels in {label}, in "
                "the order of its probability columns"
            )
        for want in (k, None):  # an exact width first, then a symbolic one
            for a in floats:
                if len(a.shape) == 2 and _width(a) == want:
                    return a.name, False
        if k == 2:
            for a in floats:
                if _width(a) == 1:
                    return a.name, True
        raise ModelLoadError(
            f"{where}: no output holds {k} class probabilities (outputs: {_describe(outputs)}); "
            f"export them as one float tensor [N, {k}] (skl2onnx: options={{'zipmap': False}})"
        )
    for want in (1, None):
        for a in floats:
            if _width(a) == want:
                return a.name, False
    raise ModelLoadError(
        f"{where}: no float output [N] or [N, 1] holds the prediction (outputs: "
        f"{_describe(outputs)}); export the regression value as one float tensor"
    )


def bind(
    card: ModelCard,
    inputs: Sequence[GraphArg],
    outputs: Sequence[GraphArg],
    *,
    where: str,
    label: str = "model.json",
) -> Contract:
    """Check that the graph takes the card's features and answers its task. Errors are a
    `ModelLoadError` that says what to fix, naming the graph by `where` and the card by
    `label` (an import names its schema file)."""
    if card.task not in (*CLASSIFICATION_TASKS, "regression"):
        raise ModelLoadError(
            f"{where}: task {card.task!r} is not served by the generic model service; it serves "
            f"{', '.join(CLASSIFICATION_TASKS)} and regression"
        )
    layout, columns = _bind_inputs(card, inputs, where, label)
    output, positive_only = _bind_output(card, outputs, where, label)
    return Contract(
        layout=layout,
        columns=columns,
        task=card.task,
        classes=card.classes,
        output=output,
        positive_only=positive_only,
    )

"""`aib model import`: register an ONNX graph trained elsewhere, described by a schema file.

The schema file (JSON) says what the graph takes and answers:

```json
{"description": "Churn risk from the CRM export (optional)",
 "inputs": [{"name": "age", "type": "numeric"},
            {"name": "member", "type": "boolean"},
            {"name": "plan", "type": "categorical", "categories": ["basic", "pro"]}],
 "output": {"kind": "classification", "labels": ["stay", "churn"]},
 "metrics": {"roc_auc": 0.91},
 "training_data": {"rows": 120000, "source": "crm-2026-05.parquet", "fingerprint": "<sha256>"}}
```

`inputs` are the features in order: either the graph has one input per feature, named as the
feature (`[N, 1]` or `[N]`: float, double, or string for a categorical), or one float matrix
`[N, len(inputs)]` (a categorical then goes in as its index in `categories`). `output` is
`{"kind": "regression"}` or a classification with its labels in the order of the graph's
probability columns. The graph is loaded, bound to the schema (`contract.bind`) and run once on
a typical record and once on a record with every value missing, before it is registered.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aibackend.byom.contract import Contract, bind, tensor_spec
from aibackend.errors import ConfigError, ModelLoadError
from aibackend.models.card import (
    MODEL_FILE,
    Baseline,
    Feature,
    ModelCard,
    TrainingData,
    sha256_file,
)
from aibackend.ports import ModelVersion
from aibackend.settings import PlatformSettings


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1)]
    type: Literal["numeric", "boolean", "categorical"]
    categories: tuple[str, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _categories(self) -> InputSpec:
        if self.type == "categorical" and not self.categories:
            raise ValueError(
                f"input {self.name!r}: a categorical input lists its known `categories`"
            )
        if self.type != "categorical" and self.categories:
            raise ValueError(f"input {self.name!r}: only categorical inputs have `categories`")
        return self


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["classification", "regression"]
    #: Class labels, in the order of the graph's probability columns.
    labels: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _labels(self) -> OutputSpec:
        if self.kind == "classification" and len(set(self.labels)) < 2:
            raise ValueError("a classification lists two or more distinct `labels`")
        if self.kind == "regression" and self.labels:
            raise ValueError("a regression has no `labels`")
        return self


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: Annotated[int, Field(ge=0)] = 0
    source: str = ""
    fingerprint: str = ""


class ImportSchema(BaseModel):
    """Contents of the schema file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    description: str = ""
    inputs: Annotated[tuple[InputSpec, ...], Field(min_length=1)]
    output: OutputSpec
    metrics: dict[str, float] = Field(default_factory=dict)
    training_data: DataSpec = DataSpec()

    @model_validator(mode="after")
    def _unique_inputs(self) -> ImportSchema:
        names = [i.name for i in self.inputs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"inputs named more than once: {', '.join(repeated)}")
        return self


def read_schema(path: Path) -> ImportSchema:
    """The schema file, validated; errors name each bad field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such schema file") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not JSON ({e})") from e
    try:
        return ImportSchema.model_validate(raw)
    except ValidationError as err:
        problems = "\n".join(
            f"  - {'.'.join(str(p) for p in e['loc']) or '(file)'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in err.errors()
        )
        raise ConfigError(f"{path}: invalid schema\n{problems}") from err


def _graph_inputs(schema: ImportSchema, session: Any, onnx: Path, label: str) -> tuple[Any, ...]:
    """The graph's inputs in feature order (one float matrix, or one input per feature)."""
    inputs = session.get_inputs()
    names = [i.name for i in schema.inputs]
    if len(inputs) == 1 and len(names) > 1:
        return (inputs[0],)
    graph = {a.name: a for a in inputs}
    if set(graph) != set(names):
        raise ConfigError(
            f"{label} lists inputs {names}, {onnx.name} takes {sorted(graph)}: name each schema "
            f"input after a graph input, or give the graph one float matrix input "
            f"[N, {len(names)}]"
        )
    return tuple(graph[n] for n in names)


def build_card(schema: ImportSchema, name: str, onnx: Path, session: Any, label: str) -> ModelCard:
    """The model card of an imported graph, from its schema file and the graph itself."""
    out = schema.output
    if out.kind == "regression":
        task: Any = "regression"
    else:
        task = "binary_classification" if len(out.labels) == 2 else "multiclass_classification"
    data = schema.training_data
    return ModelCard(
        name=name,
        task=task,
        created_at=datetime.now(UTC),
        sha256=sha256_file(onnx),
        features=tuple(
            Feature(name=i.name, kind=i.type, categories=i.categories, description=i.description)
            for i in schema.inputs
        ),
        inputs=tuple(tensor_spec(a) for a in _graph_inputs(schema, session, onnx, label)),
        outputs=tuple(tensor_spec(a) for a in session.get_outputs()),
        classes=out.labels,
        metrics=schema.metrics,
        training_data=TrainingData(
            fingerprint=data.fingerprint or "not provided",
            rows=data.rows,
            source=data.source or f"not provided (imported from {onnx.name})",
        ),
        code_version="imported",
        algorithm=f"imported ONNX graph {onnx.name}",
        description=schema.description
        or f"Imported with `aib model import` from {onnx.name} and {label}.",
    )


def _typical(feature: Feature) -> Any:
    if feature.kind == "categorical":
        return feature.categories[0]
    return False if feature.kind == "boolean" else 0.0


def smoke_test(contract: Contract, session: Any, label: str) -> list[str]:
    """Run a typical record (0, false, the first category) and an all-missing one; refuse a
    graph whose answer is not what the schema says. Returns notes for the user."""
    typical = [[_typical(c.feature)] for c in contract.columns]
    try:
        out = contract.read(session.run([contract.output], contract.feed(typical))[0], 1)
    except ModelLoadError as e:
        raise ConfigError(f"smoke prediction: {e}") from e
    except Exception as e:  # onnxruntime's errors are untyped
        raise ConfigError(f"smoke prediction failed in onnxruntime: {e}") from e
    if not np.isfinite(out).all():
        raise ConfigError(f"smoke prediction on a typical record gave {out.tolist()}: not finite")
    if contract.is_classifier and (
        (out < -1e-6).any() or (out > 1 + 1e-6).any() or abs(float(out.sum()) - 1.0) > 1e-3
    ):
        raise ConfigError(
            f"output {contract.output!r} gave {out.round(4).tolist()} for a typical record: "
            f"not probabilities over the {len(contract.classes)} labels of {label} (they must "
            "be in [0, 1] and sum to 1); export probabilities (a softmax), not scores"
        )
    blank: list[list[Any]] = [[None] for _ in contract.columns]
    missing = contract.read(session.run([contract.output], contract.feed(blank))[0], 1)
    if not np.isfinite(missing).all():
        return [
            "the graph gives no finite prediction when values are missing: clients must send "
            "every field (the service answers 422 to a record it cannot score)"
        ]
    return []


def import_model(
    onnx: Path,
    schema_path: Path,
    *,
    name: str,
    settings: PlatformSettings,
    promote: bool = True,
) -> tuple[ModelVersion, list[str]]:
    """Validate the graph against the schema, register it (and promote it); returns the
    version and notes for the user."""
    from aibackend.adapters import model_registry
    from aibackend.models.runtime import create_session

    if not onnx.is_file():
        raise ConfigError(f"{onnx}: no such ONNX file")
    schema = read_schema(schema_path)
    label = schema_path.name
    session = create_session(onnx)
    card = build_card(schema, name, onnx, session, label)
    try:
        contract = bind(
            card, session.get_inputs(), session.get_outputs(), where=onnx.name, label=label
        )
    except ModelLoadError as e:
        raise ConfigError(str(e)) from e
    notes = smoke_test(contract, session, label)
    with tempfile.TemporaryDirectory(prefix="aib-import-") as tmp:
        folder = Path(tmp)
        shutil.copyfile(onnx, folder / MODEL_FILE)
        card.write(folder)
        # No training data came with the graph: nothing to compare drift against.
        Baseline(rows=0, features={}).write(folder)
        registry = model_registry(settings)
        mv = registry.register(folder)
    if promote:
        registry.set_production(mv.name, mv.version)
    return mv, notes

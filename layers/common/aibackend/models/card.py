"""The model card (`model.json`) and feature baseline (`baseline.json`) of a model version.

A model version is a folder: `model.onnx` (optimized graph), `model.json` (this card) and
`baseline.json` (per-feature statistics of the training data, for drift checks).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aibackend.errors import ModelLoadError

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
BASELINE_FILE = "baseline.json"
ARTIFACT_FILES = (MODEL_FILE, CARD_FILE, BASELINE_FILE)
#: The training baseline as a mergeable profile (`aibackend.monitoring.profiles`), for drift
#: monitoring. Optional: versions trained before it existed lack it (retrain to add it).
PROFILE_FILE = "profile.bin"
OPTIONAL_ARTIFACT_FILES = (PROFILE_FILE,)


class Feature(BaseModel):
    """One input column, in the order the graph expects it.

    Numeric and boolean values pass through as float32; a categorical value becomes its index
    in `categories` (an unseen value becomes NaN, which tree models route as missing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["numeric", "boolean", "categorical"]
    categories: tuple[str, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _categories(self) -> Feature:
        if (self.kind == "categorical") != bool(self.categories):
            raise ValueError(f"feature {self.name!r}: categories go with kind 'categorical' only")
        return self


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]


class TrainingData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fingerprint: Annotated[str, Field(description="sha256 of the training data as read")]
    rows: int
    source: str
    positives: int | None = None


class ModelCard(BaseModel):
    """Contents of `model.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    name: str
    #: Filled in by the registry when the version is registered (0 before that).
    version: int = 0
    task: Literal["binary_classification", "multiclass_classification", "regression", "ranking"]
    created_at: datetime
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    features: tuple[Feature, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: Class labels, in the order of the probability columns.
    classes: tuple[str, ...] = ()
    metrics: dict[str, float]
    #: Same metrics for the baselines trained on the same features and holdout.
    baselines: dict[str, dict[str, float]] = Field(default_factory=dict)
    training_data: TrainingData
    code_version: str
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    algorithm: str = ""
    #: Free-form notes for people (intended use, limits).
    description: str = ""

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        return cls.model_validate_json((folder / CARD_FILE).read_bytes())

    def write(self, folder: Path) -> None:
        (folder / CARD_FILE).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


class NumericStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int
    nulls: int = 0
    mean: float
    std: float
    min: float
    max: float
    #: Quantile edges (p0, p10, ..., p100) for PSI-style binning.
    quantiles: tuple[float, ...]


class CategoricalStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int
    nulls: int = 0
    frequencies: dict[str, float]


class Baseline(BaseModel):
    """Contents of `baseline.json`: per-feature statistics of the training data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int
    features: dict[str, NumericStats | CategoricalStats]
    prediction: NumericStats | None = None

    @classmethod
    def read(cls, folder: Path) -> Baseline:
        return cls.model_validate_json((folder / BASELINE_FILE).read_bytes())

    def write(self, folder: Path) -> None:
        (folder / BASELINE_FILE).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_artifact(folder: Path) -> ModelCard:
    """Validate an artifact folder (files present, sha256 matches) before it is used."""
    missing = [f for f in ARTIFACT_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelLoadError(
            f"{folder}: missing {', '.join(missing)}; a model version folder needs "
            f"{', '.join(ARTIFACT_FILES)} (train it with `aib train <model>`)"
        )
    card = ModelCard.read(folder)
    actual = sha256_file(folder / MODEL_FILE)
    if actual != card.sha256:
        raise ModelLoadError(
            f"{folder / MODEL_FILE}: sha256 {actual[:12]}... does not match model.json "
            f"({card.sha256[:12]}...); the file was changed or truncated, re-download or retrain it"
        )
    return card

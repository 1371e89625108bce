"""Load and run a text classifier: an ONNX graph from raw strings to class probabilities.

`models.runtime.load_model` serves graphs with a float feature matrix as input; a text model's
graph does its own preprocessing (lowercasing, tokenizing, TF-IDF), so its one input is a
string tensor of shape [N, 1]. This module reuses the runtime's version resolution, artifact
checks and session options, and checks the text contract instead of the feature contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aibackend.errors import ModelLoadError
from aibackend.models.card import MODEL_FILE, ModelCard, check_artifact
from aibackend.models.runtime import create_session, load_versioned
from aibackend.settings import PlatformSettings

Label = Literal["negative", "positive"]
#: The classes the sentiment model predicts, in the order of its probability columns.
LABELS: tuple[Label, Label] = ("negative", "positive")
#: Name of the graph output that holds the class probabilities (skl2onnx, ZipMap off).
PROBABILITIES = "probabilities"


@dataclass(frozen=True)
class TextClassifier:
    """An onnxruntime session over raw strings, and the card that describes it."""

    card: ModelCard
    path: Path
    session: Any = field(repr=False)
    input_name: str

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(classes)), from one `session.run`."""
        batch = np.array(list(texts), dtype=object).reshape(-1, 1)
        (probs,) = self.session.run([PROBABILITIES], {self.input_name: batch})
        return np.asarray(probs, dtype=np.float64)


def _check_graph(folder: Path, card: ModelCard, session: Any) -> str:
    """The input name, once the graph is known to map strings [N, 1] to class probabilities."""
    where = folder / MODEL_FILE
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(string)" or len(inputs[0].shape) != 2:
        found = [(i.name, i.type, i.shape) for i in inputs]
        raise ModelLoadError(
            f"{where}: expected one string input of shape [N, 1] (raw texts), found {found}; "
            "export the whole pipeline, vectorizer included, with a StringTensorType input"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    probs = outputs.get(PROBABILITIES)
    if probs is None or probs.type != "tensor(float)":
        names = [(o.name, o.type) for o in outputs.values()]
        raise ModelLoadError(
            f"{where}: expected a float tensor output {PROBABILITIES!r}, found {names}; "
            "re-export with skl2onnx options {'zipmap': False}"
        )
    width = probs.shape[1] if len(probs.shape) == 2 else None
    if not card.classes or width != len(card.classes):
        raise ModelLoadError(
            f"{where}: {PROBABILITIES!r} has shape {probs.shape}, but model.json lists "
            f"{len(card.classes)} classes {card.classes}; retrain or fix model.json"
        )
    return str(inputs[0].name)


def load_text_model_dir(folder: Path, classes: Sequence[str] | None = None) -> TextClassifier:
    """Verify and load a text model's artifact folder; `classes`, if given, must match."""
    card = check_artifact(folder)
    if classes is not None and tuple(classes) != card.classes:
        raise ModelLoadError(
            f"{folder}: model.json classes {card.classes} are not the {tuple(classes)} this "
            f"service answers with; serve a model trained by `aib train {card.name}`"
        )
    session = create_session(folder / MODEL_FILE)
    input_name = _check_graph(folder, card, session)
    return TextClassifier(card=card, path=folder, session=session, input_name=input_name)


def load_text_model(
    name: str, settings: PlatformSettings | None = None, classes: Sequence[str] | None = None
) -> TextClassifier:
    """The text model this process serves under `name`, loaded once per version and location
    (`models.runtime.load_versioned`)."""
    return load_versioned(
        name, lambda folder: load_text_model_dir(folder, classes), kind="text", settings=settings
    )

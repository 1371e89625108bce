"""Load a bring-your-own model version once per container, bound to its card.

The version is resolved as every model's is (`models.runtime`: pinned in the environment on
AWS, the production pointer locally), its folder verified (sha256), one onnxruntime session
built (`intra_op_num_threads=1`) and the card bound to the graph (`contract.bind`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.byom.contract import MISSING_TEXT, Contract, bind, text_value
from aibackend.models.card import MODEL_FILE, ModelCard, check_artifact
from aibackend.models.runtime import create_session, load_versioned
from aibackend.settings import PlatformSettings


@dataclass(frozen=True)
class ServedModel:
    """A model version ready to predict: card, session and the contract between them."""

    card: ModelCard
    path: Path
    contract: Contract
    session: Any = field(repr=False)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    def predict(self, columns: Sequence[Sequence[Any]]) -> np.ndarray:
        """One `session.run` over records given as one value sequence per feature (card order,
        None for missing): (n, classes) probabilities or (n,) values, float64."""
        rows = len(columns[0]) if columns else 0
        out = self.session.run([self.contract.output], self.contract.feed(columns))[0]
        return self.contract.read(out, rows)


def missing_features(columns: Sequence[Sequence[Any]], row: int, model: ServedModel) -> list[str]:
    """Names of the features record `row` left missing (None, or a blank categorical)."""
    names = []
    for col, values in zip(model.contract.columns, columns, strict=True):
        v = values[row]
        if v is None or (col.feature.kind == "categorical" and text_value(v) == MISSING_TEXT):
            names.append(col.feature.name)
    return names


def open_model_dir(folder: Path) -> ServedModel:
    """Verify an artifact folder, build its session and bind the card to the graph."""
    card = check_artifact(folder)
    session = create_session(folder / MODEL_FILE)
    contract = bind(
        card, session.get_inputs(), session.get_outputs(), where=str(folder / MODEL_FILE)
    )
    return ServedModel(card=card, path=folder, contract=contract, session=session)


def load_served_model(name: str, settings: PlatformSettings | None = None) -> ServedModel:
    """The version of model `name` this process serves, loaded once per version and place."""
    return load_versioned(name, open_model_dir, kind="byom", settings=settings)

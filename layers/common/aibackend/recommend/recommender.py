"""The served recommendations model: the scoring graph, its catalogue and its users' histories.

`load_recommender()` resolves and verifies the version exactly as `models.runtime.load_model`
does (pinned version on AWS, the registry's production pointer locally; sha256 checked; one
onnxruntime session with one thread), then reads the item catalogue and the users' histories
from the graph's metadata (`artifact.py`). `load_model`'s own input check expects one column per
model-card feature; this graph's input has one column per catalogue item instead, which it
checks against the catalogue.

A known user is ranked from their history; an anonymous session from its recent items; with no
known item at all, the graph answers with the most popular items (`strategy = "popularity"`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aibackend.errors import ModelLoadError
from aibackend.models.card import MODEL_FILE, ModelCard, check_artifact
from aibackend.models.runtime import create_session, load_versioned
from aibackend.recommend.artifact import ModelData
from aibackend.recommend.graph import INPUT, OUTPUTS
from aibackend.settings import PlatformSettings

NAME = "recommendations"
Strategy = Literal["personalized", "popularity"]


@dataclass(frozen=True)
class Ranked:
    """Items best first, with their scores, and how they were chosen."""

    strategy: Strategy
    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    #: Requested items the catalogue does not hold (ignored), in request order.
    unknown_items: tuple[str, ...] = ()


class Recommender:
    """One model version: call `for_user` or `for_items`."""

    def __init__(self, card: ModelCard, path: Path, session: Any, data: ModelData) -> None:
        self.card = card
        self.path = path
        self.session = session
        self.data = data
        self._index = {item: i for i, item in enumerate(data.item_ids)}
        self.top_k = _check_signature(session, len(data.item_ids), path / MODEL_FILE)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    @property
    def items(self) -> int:
        return len(self.data.item_ids)

    def knows_user(self, user_id: str) -> bool:
        return user_id in self.data.histories

    def for_user(self, user_id: str, k: int) -> Ranked:
        """A known user's top `k` unseen items; the most popular items for an unknown user."""
        seen = self.data.histories.items_of(user_id)
        return self._rank(np.empty(0, np.int64) if seen is None else seen, k)

    def for_items(self, item_ids: Sequence[str], k: int) -> Ranked:
        """Top `k` items for a session that touched `item_ids` (unknown ones are reported)."""
        known: list[int] = []
        unknown: dict[str, None] = {}
        for item in item_ids:
            index = self._index.get(item)
            if index is None:
                unknown[item] = None
            else:
                known.append(index)
        ranked = self._rank(np.asarray(known, dtype=np.int64), k)
        return Ranked(ranked.strategy, ranked.item_ids, ranked.scores, tuple(unknown))

    def run(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw `session.run`: (scores, item indices), each (rows, top_k)."""
        scores, items = self.session.run(list(OUTPUTS), {INPUT: history})
        return scores, items

    def _rank(self, seen: np.ndarray, k: int) -> Ranked:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        history = np.zeros((1, self.items), dtype=np.float32)
        history[0, seen] = 1.0
        scores, items = self.run(history)
        keep = np.isfinite(scores[0])  # -inf: an item already seen
        top_scores, top_items = scores[0][keep][:k], items[0][keep][:k]
        return Ranked(
            strategy="personalized" if seen.size else "popularity",
            item_ids=tuple(self.data.item_ids[i] for i in top_items.tolist()),
            scores=tuple(top_scores.tolist()),
        )


def _check_signature(session: Any, n_items: int, where: Path) -> int:
    """The graph's `top_k`, after checking its input and outputs against the catalogue."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    if (
        [i.name for i in inputs] != [INPUT]
        or inputs[0].type != "tensor(float)"
        or len(shape) != 2
        or shape[1] != n_items
    ):
        raise ModelLoadError(
            f"{where}: expected one float input {INPUT!r} of shape [batch, {n_items}] (one column "
            f"per catalogue item), found {[(i.name, i.type, i.shape) for i in inputs]}; retrain "
            "with `aib train recommendations`"
        )
    names = tuple(o.name for o in outputs)
    top = outputs[0].shape[1] if names == OUTPUTS and len(outputs[0].shape) == 2 else None
    if not isinstance(top, int) or top < 1:
        raise ModelLoadError(
            f"{where}: expected outputs {list(OUTPUTS)} of shape [batch, top_k], found "
            f"{[(o.name, o.shape) for o in outputs]}; retrain with `aib train recommendations`"
        )
    return top


def load_recommender_dir(folder: Path) -> Recommender:
    """Verify and load an artifact folder (model.onnx + model.json + baseline.json)."""
    card = check_artifact(folder)
    if card.task != "ranking":
        raise ModelLoadError(
            f"{folder}: model.json says task {card.task!r}; a recommender is a 'ranking' model"
        )
    session = create_session(folder / MODEL_FILE)
    meta = session.get_modelmeta().custom_metadata_map
    return Recommender(
        card, folder, session, ModelData.from_metadata(meta, str(folder / MODEL_FILE))
    )


def load_recommender(name: str = NAME, settings: PlatformSettings | None = None) -> Recommender:
    """The version this process serves under `name` (see the module docstring)."""
    return load_versioned(name, load_recommender_dir, kind="recommender", settings=settings)

"""What model.onnx carries besides the graph: the item catalogue and the users' histories.

The registry stores three files per version (model.onnx, model.json, baseline.json), and the
sha256 in model.json covers model.onnx. So the catalogue (item ids, in graph column order) and
the training users' histories ride in model.onnx's `metadata_props` (string key/values that
onnxruntime exposes as `session.get_modelmeta().custom_metadata_map`): one checksum covers
them, every registry and download path carries them unchanged, and model.json stays small
(the AWS registry keeps each card in a DynamoDB item, at most 400 KB).

Histories are compressed sparse rows: user `user_ids[u]` interacted with item indices
`items[offsets[u]:offsets[u + 1]]` (sorted, distinct).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aibackend.errors import ModelLoadError

#: metadata_props keys.
ITEM_IDS_KEY = "aib.recommend.item_ids"
USER_IDS_KEY = "aib.recommend.user_ids"
OFFSETS_KEY = "aib.recommend.history_offsets"
ITEMS_KEY = "aib.recommend.history_items"
KEYS = (ITEM_IDS_KEY, USER_IDS_KEY, OFFSETS_KEY, ITEMS_KEY)


@dataclass(frozen=True)
class UserHistories:
    """The items each known user has interacted with."""

    user_ids: tuple[str, ...]
    #: int64, shape (users + 1,): row boundaries into `items`.
    offsets: np.ndarray
    #: int32 item indices, each user's sorted and distinct.
    items: np.ndarray
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {u: i for i, u in enumerate(self.user_ids)})

    def __len__(self) -> int:
        return len(self.user_ids)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._index

    @property
    def interactions(self) -> int:
        return int(self.items.size)

    def items_of(self, user_id: str) -> np.ndarray | None:
        """Item indices of a known user; None for a user the model has not seen."""
        row = self._index.get(user_id)
        return None if row is None else self.row(row)

    def row(self, index: int) -> np.ndarray:
        """Item indices of the user at position `index` of `user_ids`."""
        items: np.ndarray = self.items[self.offsets[index] : self.offsets[index + 1]]
        return items

    @classmethod
    def from_pairs(
        cls, user_ids: tuple[str, ...], user: np.ndarray, item: np.ndarray
    ) -> UserHistories:
        """From parallel (user index, item index) arrays; duplicates collapse to one."""
        n_users = len(user_ids)
        if user.size and (user.min() < 0 or user.max() >= n_users):
            raise ValueError(f"user indices must be in [0, {n_users})")
        pairs = np.unique(np.stack([user.astype(np.int64), item.astype(np.int64)]), axis=1)
        counts = np.bincount(pairs[0], minlength=n_users)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(user_ids=user_ids, offsets=offsets, items=pairs[1].astype(np.int32))


@dataclass(frozen=True)
class ModelData:
    """The catalogue and histories of one model version."""

    item_ids: tuple[str, ...]
    histories: UserHistories

    def to_metadata(self) -> dict[str, str]:
        """metadata_props values: ids as JSON, arrays as base64 little-endian bytes."""
        return {
            ITEM_IDS_KEY: _json(self.item_ids),
            USER_IDS_KEY: _json(self.histories.user_ids),
            OFFSETS_KEY: _b64(self.histories.offsets.astype("<i8")),
            ITEMS_KEY: _b64(self.histories.items.astype("<i4")),
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], where: str = "model.onnx") -> ModelData:
        """Decode and check a graph's metadata; `ModelLoadError` saying what is wrong."""
        missing = [k for k in KEYS if k not in meta]
        if missing:
            raise ModelLoadError(
                f"{where} lacks metadata {', '.join(missing)}: it was not written by "
                "aibackend.training.recommendations; retrain with `aib train recommendations`"
            )
        try:
            item_ids = _ids(meta[ITEM_IDS_KEY])
            user_ids = _ids(meta[USER_IDS_KEY])
            offsets = np.frombuffer(base64.b64decode(meta[OFFSETS_KEY], validate=True), "<i8")
            items = np.frombuffer(base64.b64decode(meta[ITEMS_KEY], validate=True), "<i4")
        except ValueError as e:
            raise ModelLoadError(
                f"{where}: unreadable catalogue or histories ({e}); retrain"
            ) from e
        n = len(item_ids)
        if (
            offsets.size != len(user_ids) + 1
            or offsets[0] != 0
            or offsets[-1] != items.size
            or np.any(np.diff(offsets) < 0)
            or (items.size and (items.min() < 0 or items.max() >= n))
        ):
            raise ModelLoadError(
                f"{where}: the histories do not fit {len(user_ids)} users and {n} items "
                "(a truncated or edited file); retrain"
            )
        histories = UserHistories(user_ids=user_ids, offsets=offsets.astype(np.int64), items=items)
        return cls(item_ids=item_ids, histories=histories)


def _json(ids: tuple[str, ...]) -> str:
    return json.dumps(list(ids), separators=(",", ":"), ensure_ascii=False)


def _ids(text: str) -> tuple[str, ...]:
    value: Any = json.loads(text)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError("expected a JSON list of strings")
    return tuple(value)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")

"""Confusion counts (TP/FP/TN/FN) overall and per sensitive group: what bias and accuracy
metrics are computed from, and what a window's profile carries once labels arrive.

Counts, not rows: they merge by addition, so windows roll up (hours into a day) exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aibackend.monitoring.arrays import missing_mask

#: Group name for a row whose sensitive attribute is unknown; reported, never dropped.
MISSING_GROUP = "<missing>"


class Counts(BaseModel):
    """One confusion matrix of a binary classifier at its decision threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tp: int = Field(default=0, ge=0)
    fp: int = Field(default=0, ge=0)
    tn: int = Field(default=0, ge=0)
    fn: int = Field(default=0, ge=0)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def positives(self) -> int:
        """Actual positives (label 1)."""
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.tn + self.fp

    @property
    def predicted_positive(self) -> int:
        return self.tp + self.fp

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            tp=self.tp + other.tp,
            fp=self.fp + other.fp,
            tn=self.tn + other.tn,
            fn=self.fn + other.fn,
        )


class ConfusionTable(BaseModel):
    """`overall` counts and, per sensitive attribute, the counts of each of its groups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overall: Counts = Counts()
    groups: dict[str, dict[str, Counts]] = Field(default_factory=dict)

    @classmethod
    def from_arrays(
        cls,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        attributes: Mapping[str, np.ndarray] | None = None,
    ) -> ConfusionTable:
        """Counts from 0/1 label and prediction arrays and per-attribute group arrays.

        Vectorized: one `np.unique` per attribute and one `bincount` per cell. A group value
        of None (or NaN) is counted under `MISSING_GROUP`.
        """
        t = np.asarray(y_true).astype(bool)
        p = np.asarray(y_pred).astype(bool)
        if t.shape != p.shape or t.ndim != 1:
            raise ValueError(
                f"y_true and y_pred must be 1-D of one length, got {t.shape}, {p.shape}"
            )
        cell = 2 * t.astype(np.int64) + p.astype(np.int64)  # 0 tn, 1 fp, 2 fn, 3 tp
        groups: dict[str, dict[str, Counts]] = {}
        for name, values in (attributes or {}).items():
            g = _group_names(np.asarray(values, dtype=object))
            if g.shape != t.shape:
                raise ValueError(f"attribute {name!r} has {g.size} values for {t.size} labels")
            names, inverse = np.unique(g, return_inverse=True)
            table = np.bincount(inverse * 4 + cell, minlength=4 * names.size).reshape(-1, 4)
            groups[name] = {str(k): _counts(row) for k, row in zip(names, table, strict=True)}
        return cls(overall=_counts(np.bincount(cell, minlength=4)), groups=groups)

    def __add__(self, other: ConfusionTable) -> ConfusionTable:
        groups: dict[str, dict[str, Counts]] = {}
        for attr in sorted(self.groups.keys() | other.groups.keys()):
            a, b = self.groups.get(attr, {}), other.groups.get(attr, {})
            groups[attr] = {
                g: a.get(g, Counts()) + b.get(g, Counts()) for g in sorted(a.keys() | b.keys())
            }
        return ConfusionTable(overall=self.overall + other.overall, groups=groups)


def _counts(row: np.ndarray) -> Counts:
    tn, fp, fn, tp = (int(v) for v in row)
    return Counts(tp=tp, fp=fp, tn=tn, fn=fn)


def _group_names(values: np.ndarray) -> np.ndarray:
    names: np.ndarray = np.where(missing_mask(values), MISSING_GROUP, values.astype(str))
    return names

"""The decision a fraud score leads to, with its threshold read once from the environment."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, Field

Decision = Literal["decline", "approve"]


class DecisionSettings(BaseModel):
    """`FRAUD_THRESHOLD` (function.toml `[environment]`): decline at or above it."""

    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5

    @classmethod
    def from_env(cls) -> DecisionSettings:
        raw = os.environ.get("FRAUD_THRESHOLD")
        return cls() if raw is None else cls.model_validate({"threshold": raw})

    def decide(self, score: float) -> Decision:
        return "decline" if score >= self.threshold else "approve"

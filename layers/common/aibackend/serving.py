"""The response envelope every model service shares.

```json
{"request_id": "<API Gateway's request id>",
 "model": {"name": "fraud", "version": 3},
 "results": [{"inference_id": "<32 hex>", ...one per input, in input order...}]}
```

A service subclasses `Envelope` with its own `results: list[<its Prediction>]` (and may add
fields of its own, like fraud v1's `threshold`); every prediction carries an `inference_id`,
the key monitoring and late labels join on.
"""

from __future__ import annotations

import uuid
from typing import Literal, Protocol

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    """Which model version answered."""

    name: str
    version: int


class Prediction(BaseModel):
    """One input's answer; services add their fields."""

    inference_id: str = Field(description="Unique per prediction; join key for feedback")


class Envelope(BaseModel):
    """`request_id` and `model`; a service's subclass adds `results`."""

    request_id: str
    model: ModelRef


class _Versioned(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...


def model_ref(model: _Versioned) -> ModelRef:
    return ModelRef(name=model.name, version=model.version)


def inference_id() -> str:
    """A new inference id (uuid4, 32 hex digits)."""
    return uuid.uuid4().hex


class ModelHealth(BaseModel):
    """A model service's public health answer: alive, and which model version it serves."""

    status: Literal["ok"] = "ok"
    model: str
    version: int

    @classmethod
    def of(cls, model: _Versioned) -> ModelHealth:
        return cls(model=model.name, version=model.version)

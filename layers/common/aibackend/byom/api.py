"""Request and response models of a served model, built from its card when the function loads,
and the prediction between them (typed in, typed out; no HTTP, no AWS).

A record has one field per feature, named as the feature (the CSV header), typed by its kind:
numbers (finite; within float32 range where the graph takes float32), booleans, or text for
categoricals. Every field may be null or left out: the model receives a missing value. Unknown
fields are refused. A request is one record or `{"records": [...]}` with 1 to 1,000 of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    create_model,
)

from aibackend.byom.contract import Column
from aibackend.byom.runtime import ServedModel, missing_features
from aibackend.errors import AibError
from aibackend.serving import Envelope, Prediction, inference_id, model_ref

MAX_RECORDS = 1000
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Categories quoted in a categorical field's description.
_QUOTED_CATEGORIES = 8


class UnscorableRecordError(AibError):
    """The model gave no finite prediction for a record (e.g. a graph that cannot take missing
    values); the message names the record and what it left out."""

    status = 422
    title = "Record cannot be scored"


class ModelHealth(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    version: int


class ClassPrediction(Prediction):
    label: str = Field(description="The most probable class")
    probabilities: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        description="Probability of each class, by label"
    )


class ValuePrediction(Prediction):
    value: float = Field(description="The predicted value")


def _valid_text(value: str | None) -> str | None:
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError("is not valid Unicode text (it holds a lone surrogate)") from e
    return value


def camel(name: str) -> str:
    """`churn_risk` -> `ChurnRisk`: the prefix of a model's schema names in OpenAPI."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def _field(column: Column) -> tuple[Any, str, list[Any] | None]:
    """(type, description, examples) of one feature's request field."""
    f = column.feature
    note = f" {f.description}" if f.description else ""
    if f.kind == "numeric":
        bound = _FLOAT32_MAX if column.dtype is np.float32 else None
        number = Annotated[
            float | None, Field(strict=True, allow_inf_nan=False, ge=_neg(bound), le=bound)
        ]
        return number, f"A number; null or absent when unknown.{note}", None
    if f.kind == "boolean":
        return StrictBool | None, f"true or false; null or absent when unknown.{note}", None
    shown = ", ".join(repr(c) for c in f.categories[:_QUOTED_CATEGORIES])
    more = f" ({len(f.categories)} known)" if len(f.categories) > _QUOTED_CATEGORIES else ""
    text = Annotated[str | None, AfterValidator(_valid_text)]
    description = (
        f"Text, one of the categories the model knows: {shown}{more}; any other value counts as "
        f"an unseen category. Null, absent or blank when unknown.{note}"
    )
    return text, description, list(f.categories[:3])


def _neg(bound: float | None) -> float | None:
    return None if bound is None else -bound


def _shape(value: Any) -> str:
    """A body whose `records` is a list is a batch (a feature value is never a list)."""
    batch = isinstance(value, dict) and isinstance(value.get("records"), list)
    return "batch" if batch else "single"


@dataclass(frozen=True)
class Schema:
    """The pydantic models of one served model's API."""

    record: type[BaseModel]
    batch: type[BaseModel]
    #: `record | batch`, told apart by `_shape`.
    request: Any
    prediction: type[Prediction]
    response: type[Envelope]
    #: The record attribute holding each feature, in card order.
    fields: tuple[str, ...]


def build_schema(model: ServedModel) -> Schema:
    """Request and response models for `model`, named after it (`<Name>Record`, ...), so the
    documents of several models merge into one OpenAPI without clashes."""
    prefix = camel(model.name) or "Model"
    fields: dict[str, Any] = {}
    for i, column in enumerate(model.contract.columns):
        kind, description, examples = _field(column)
        name = column.feature.name
        fields[f"f{i}"] = (
            kind,
            Field(default=None, alias=name, title=name, description=description, examples=examples),
        )
    record = create_model(
        f"{prefix}Record",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"One record for model {model.name!r}; every field may be null or left out.",
        **fields,
    )
    batch = create_model(
        f"{prefix}Batch",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"Up to {MAX_RECORDS:,} records, answered in order.",
        records=(Annotated[list[record], Field(min_length=1, max_length=MAX_RECORDS)], ...),
    )
    request = Annotated[
        Annotated[record, Tag("single")] | Annotated[batch, Tag("batch")],
        Discriminator(_shape),
    ]
    base: type[Prediction] = ClassPrediction if model.contract.is_classifier else ValuePrediction
    prediction: type[Prediction] = create_model(f"{prefix}Prediction", __base__=base)
    response = create_model(
        f"{prefix}Predictions",
        __base__=Envelope,
        results=(list[prediction], Field(description="One per record, in request order")),
    )
    return Schema(
        record=record,
        batch=batch,
        request=request,
        prediction=prediction,
        response=response,
        fields=tuple(fields),
    )


def records_of(body: BaseModel, schema: Schema) -> tuple[list[BaseModel], bool]:
    """(the records of a request body, whether it was a batch)."""
    if isinstance(body, schema.batch):
        return list(body.records), True  # type: ignore[attr-defined]
    return [body], False


def _unscorable(
    model: ServedModel, columns: Sequence[Sequence[Any]], rows: Sequence[int], batch: bool
) -> UnscorableRecordError:
    parts = []
    for row in rows[:5]:
        where = f"records[{row}]" if batch else "the record"
        missing = missing_features(columns, row, model)
        parts.append(
            f"{where} left {', '.join(missing)} missing"
            if missing
            else f"{where} (no value missing: a value far outside the training data?)"
        )
    return UnscorableRecordError(
        f"model {model.name!r} v{model.version} gave no finite prediction for {len(rows)} "
        f"record(s): {'; '.join(parts)}; this model cannot take missing values, send a value "
        "for every field"
    )


def predict(
    model: ServedModel,
    schema: Schema,
    records: Sequence[BaseModel],
    request_id: str,
    *,
    batch: bool = False,
) -> Envelope:
    """Score records in one `session.run`; a non-finite prediction fails the request (422)."""
    columns = [[getattr(r, f) for r in records] for f in schema.fields]
    out = model.predict(columns)
    finite = np.isfinite(out).all(axis=1) if out.ndim == 2 else np.isfinite(out)
    if not finite.all():
        raise _unscorable(model, columns, np.flatnonzero(~finite).tolist(), batch)
    if model.contract.is_classifier:
        classes = model.contract.classes
        # float32 arithmetic in the graph may step a hair outside [0, 1]
        out = np.clip(out, 0.0, 1.0)
        best = out.argmax(axis=1)
        results: list[Prediction] = [
            schema.prediction(
                inference_id=inference_id(),
                label=classes[int(b)],
                probabilities=dict(zip(classes, row.tolist(), strict=True)),
            )
            for b, row in zip(best, out, strict=True)
        ]
    else:
        results = [schema.prediction(inference_id=inference_id(), value=v) for v in out.tolist()]
    return schema.response(request_id=request_id, model=model_ref(model), results=results)

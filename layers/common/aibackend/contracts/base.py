"""What every event detail carries, the registry of contracts, and `parse`.

A contract is a pydantic model of one event's `detail` at one schema version, registered under
(detail-type, version). Every detail carries `schema_version` and `correlation_id` (the id of
the event that started the chain); an emitted event also carries `caused_by` (the id of the
event that directly caused it). A detail without `schema_version` is read as version "1": the
version events had before they were versioned (the pipeline's `Fraud Suspected` still is one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aibackend.ports import PutEvent

#: Ids are EventBridge event ids (UUIDs) locally and on AWS; a producer may use its own.
EventId = Annotated[str, Field(min_length=1, max_length=128)]
#: The version a detail without `schema_version` is read as.
UNVERSIONED = "1"


class ContractError(ValueError):
    """An event no contract accepts. Retrying cannot help: the same event fails the same way.

    Consumers let it propagate; its type name (`errorType` in Lambda's on-failure record) and
    message (`errorMessage`) say in the dead-letter queue why the event was refused."""


class UnknownDetailTypeError(ContractError):
    pass


class UnknownVersionError(ContractError):
    pass


class InvalidDetailError(ContractError):
    pass


class Detail(BaseModel):
    """Fields every detail carries. A contract sets `detail_type` and `version`, and narrows
    `schema_version` to that version: `schema_version: Literal["1"] = "1"`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detail_type: ClassVar[str]
    version: ClassVar[str]

    schema_version: str
    correlation_id: Annotated[
        EventId | None,
        Field(description="Id of the event that started the chain; none: this event's own id"),
    ] = None


class EmittedDetail(Detail):
    """A detail the platform emits in reaction to another event."""

    correlation_id: Annotated[EventId, Field(description="Id of the event that started the chain")]
    caused_by: Annotated[EventId, Field(description="Id of the event that directly caused it")]


D = TypeVar("D", bound=Detail)
_REGISTRY: dict[str, dict[str, type[Detail]]] = {}


def register(model: type[D]) -> type[D]:
    """Class decorator: `model` is the contract of its (detail_type, version)."""
    versions = _REGISTRY.get(model.detail_type, {})
    known = versions.get(model.version)
    if known is not None and known is not model:
        raise ValueError(
            f"{model.detail_type!r} v{model.version} is already registered by {known.__name__}"
        )
    if model.model_fields["schema_version"].default != model.version:
        raise ValueError(
            f"{model.__name__}: declare schema_version: Literal[{model.version!r}] = "
            f"{model.version!r} (its version)"
        )
    _REGISTRY[model.detail_type] = {**versions, model.version: model}
    return model


def contracts() -> Mapping[str, Mapping[str, type[Detail]]]:
    """Every registered contract: detail-type -> version -> model."""
    return _REGISTRY


T = TypeVar("T", bound=Detail, covariant=True)


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """An event whose detail passed its contract."""

    event_id: str
    source: str
    detail: T

    @property
    def correlation_id(self) -> str:
        """The chain's id: the detail's `correlation_id`, or this event's id if it starts one."""
        return self.detail.correlation_id or self.event_id


def contract_for(detail_type: str, version: str) -> type[Detail]:
    versions = _REGISTRY.get(detail_type)
    if versions is None:
        raise UnknownDetailTypeError(
            f"unknown detail-type {detail_type!r}; known: {', '.join(sorted(_REGISTRY))}"
        )
    model = versions.get(version)
    if model is None:
        raise UnknownVersionError(
            f"{detail_type!r}: unknown schema_version {version!r}; known: "
            f"{', '.join(sorted(versions))}"
        )
    return model


def _field_errors(e: ValidationError) -> str:
    return "; ".join(
        f"detail.{'.'.join(str(p) for p in err['loc']) or '(root)'}: "
        f"{err['msg'].removeprefix('Value error, ')}"
        for err in e.errors()
    )


def parse(event: Mapping[str, Any]) -> Parsed[Detail]:
    """The event's detail as its contract's model, or a `ContractError` saying what is wrong."""
    event_id = event.get("id")
    detail_type = event.get("detail-type")
    detail = event.get("detail")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidDetailError("not an EventBridge event: `id` is missing or not a string")
    if not isinstance(detail_type, str):
        raise InvalidDetailError(f"event {event_id}: `detail-type` is missing or not a string")
    if not isinstance(detail, dict):
        raise InvalidDetailError(f"event {event_id} ({detail_type}): `detail` is not an object")
    version = detail.get("schema_version", UNVERSIONED)
    try:
        model = contract_for(detail_type, str(version))
    except ContractError as e:
        raise type(e)(f"event {event_id}: {e}") from None
    try:
        parsed = model.model_validate(detail)
    except ValidationError as e:
        raise InvalidDetailError(
            f"event {event_id}: {detail_type!r} v{model.version}: {_field_errors(e)}"
        ) from e
    return Parsed(event_id=event_id, source=str(event.get("source", "")), detail=parsed)


def expect(parsed: Parsed[Detail], model: type[D]) -> Parsed[D]:
    """`parsed`, if its detail is a `model`; a `ContractError` naming both otherwise."""
    detail = parsed.detail
    if not isinstance(detail, model):
        got = type(parsed.detail)
        raise UnknownDetailTypeError(
            f"event {parsed.event_id}: expected {model.detail_type!r} v{model.version}, got "
            f"{got.detail_type!r} v{got.version}"
        )
    return Parsed(parsed.event_id, parsed.source, detail)


def emit(cause: Parsed[Any], source: str, build: Callable[..., Detail], **fields: Any) -> PutEvent:
    """A `PutEvent` of the detail `build(...)` makes (a contract with a `caused_by` field),
    chained to `cause`: the same correlation id, `caused_by` its event id."""
    detail = build(correlation_id=cause.correlation_id, caused_by=cause.event_id, **fields)
    # Optional fields left out rather than null (nested ones keep their nulls: they are required).
    dumped = detail.model_dump(mode="json")
    return PutEvent(
        source=source,
        detail_type=detail.detail_type,
        detail={k: v for k, v in dumped.items() if v is not None},
    )

"""Versioned contracts of the events the platform consumes and emits (`docs/events.md`).

`parse(event)` returns the event's detail as its contract's model or raises a `ContractError`;
`emit(cause, source, Model, **fields)` builds an event chained to its cause. A new contract
lives in its own module here, registered with `@register`, and is imported below so that the
registry knows it wherever `aibackend.contracts` is imported.
"""

from aibackend.contracts import fraud, iot, monitoring, pipeline, registry, shop
from aibackend.contracts.base import (
    ContractError,
    Detail,
    EmittedDetail,
    InvalidDetailError,
    Parsed,
    UnknownDetailTypeError,
    UnknownVersionError,
    contract_for,
    contracts,
    emit,
    expect,
    parse,
    register,
)

__all__ = [
    "ContractError",
    "Detail",
    "EmittedDetail",
    "InvalidDetailError",
    "Parsed",
    "UnknownDetailTypeError",
    "UnknownVersionError",
    "contract_for",
    "contracts",
    "emit",
    "expect",
    "fraud",
    "iot",
    "monitoring",
    "parse",
    "pipeline",
    "register",
    "registry",
    "shop",
]

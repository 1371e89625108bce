"""Powertools' process-wide state per function and per invocation, as Lambda keeps it.

A Lambda environment runs one function and one invocation at a time; Powertools relies on
that. `aib dev` runs every function in one process, with invocations of several functions
(and of one function) side by side on threads, and two pieces of Powertools state were
shared between them:

- **Metrics** keeps every `Metrics()` instance's metrics, dimensions and metadata in dicts of
  the class: a flush at the end of one invocation emitted what another had added, under its
  own `service` (seen: iot_anomaly's `Readings` counted as fraud_events'), and cleared it.
- **Logger** keeps the keys it adds to every line (`function_request_id`, `correlation_id`,
  `cold_start`, what `append_keys` added) in one dict per logger: two overlapping
  invocations of one function logged each other's request and correlation ids, so a
  transaction could not be followed through the logs under load.

`install()` makes both resolve to the current scope: the Metrics dicts to the current
invocation's (default dimensions to the current function's, as they are set at INIT), each
formatter's keys to a copy made for the invocation from the keys it had after INIT.
`FunctionHost` enters `function_scope` around a function's import and `invocation_scope`
around each call. Context variables carry the scope into the threads FastAPI runs sync routes
on. Outside any scope (a test calling a handler directly) Powertools behaves as it does alone.

One difference remains, on purpose: keys a handler appends during an invocation last for that
invocation only. On Lambda they would stay in the environment for the next invocations
(until overwritten, or dropped by Powertools' `clear_state`), which no handler should rely on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any

#: Which dicts the current code writes to: the function's (default dimensions) and the
#: invocation's (metrics, dimensions, metadata).
_function: ContextVar[dict[str, Any] | None] = ContextVar("aib_fn", default=None)
_invocation: ContextVar[dict[str, Any] | None] = ContextVar("aib_inv", default=None)


class _Scoped(MutableMapping[str, Any]):
    """A dict that is the current scope's `slot`, or a process-wide one outside any scope."""

    def __init__(self, scope: ContextVar[dict[str, Any] | None], slot: str) -> None:
        self._scope = scope
        self._slot = slot
        self._outside: dict[str, Any] = {}

    def _data(self) -> dict[str, Any]:
        state = self._scope.get()
        return self._outside if state is None else state.setdefault(self._slot, {})

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def clear(self) -> None:
        self._data().clear()

    def __repr__(self) -> str:
        return repr(self._data())


_installed = False


def install() -> None:
    """Scope Powertools' shared Metrics and Logger state (idempotent; call before functions
    import)."""
    global _installed
    if _installed:
        return
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
    from aws_lambda_powertools.metrics import Metrics

    Metrics._metrics = _Scoped(_invocation, "metrics")  # type: ignore[assignment]
    Metrics._dimensions = _Scoped(_invocation, "dimensions")  # type: ignore[assignment]
    Metrics._metadata = _Scoped(_invocation, "metadata")  # type: ignore[assignment]
    Metrics._default_dimensions = _Scoped(_function, "default_dimensions")  # type: ignore[assignment]
    # A data descriptor on the class: the formatter's own `self.log_format = ...` goes through
    # it too (its __init__, and `clear_state`).
    LambdaPowertoolsFormatter.log_format = property(_log_format, _set_log_format)  # type: ignore[assignment]
    _installed = True


_KEYS = "_aib_log_format"


def _log_format(formatter: Any) -> dict[str, Any]:
    """The formatter's keys: the invocation's copy inside one, else the ones INIT left."""
    base: dict[str, Any] | None = formatter.__dict__.get(_KEYS)
    if base is None:  # a formatter made before `install()` kept its keys as a plain attribute
        base = formatter.__dict__[_KEYS] = formatter.__dict__.pop("log_format", None) or {}
    state = _invocation.get()
    if state is None or _is_init(state):
        return base
    copies: dict[int, dict[str, Any]] = state.setdefault("log_format", {})
    keys = copies.get(id(formatter))
    if keys is None:
        keys = copies[id(formatter)] = dict(base)
    return keys


def _set_log_format(formatter: Any, keys: dict[str, Any]) -> None:
    state = _invocation.get()
    if state is None or _is_init(state):
        formatter.__dict__[_KEYS] = keys
    else:
        state.setdefault("log_format", {})[id(formatter)] = keys


#: Key of a function's state under which its INIT's metrics wait for the first invocation.
_INIT = "init"


@contextlib.contextmanager
def function_scope(state: dict[str, Any]) -> Iterator[None]:
    """A function's INIT: Metrics default dimensions go to `state` (one per function), and
    what INIT adds (dimensions the defaults set, a metric) waits there for the first
    invocation, which flushes it, as in a Lambda environment."""
    init: dict[str, Any] = {_INIT: True}
    state[_INIT] = init
    with _entered(state, init):
        yield


@contextlib.contextmanager
def invocation_scope(function_state: dict[str, Any]) -> Iterator[None]:
    """One invocation of the function whose state is `function_state`: the first after its
    INIT continues what INIT added; the others start with no metrics or metadata and the
    function's default dimensions (as Powertools leaves them after each flush)."""
    state = function_state.pop(_INIT, None)
    if state is not None:
        state.pop(_INIT, None)  # what INIT added, now this invocation's
    else:
        defaults = function_state.get("default_dimensions", {})
        dims = {k: v if isinstance(v, str) else str(v) for k, v in defaults.items()}
        state = {"dimensions": dims}
    with _entered(function_state, state):
        yield


@contextlib.contextmanager
def _entered(function_state: dict[str, Any], state: dict[str, Any]) -> Iterator[None]:
    fn, inv = _function.set(function_state), _invocation.set(state)
    try:
        yield
    finally:
        _invocation.reset(inv)
        _function.reset(fn)


def _is_init(state: dict[str, Any]) -> bool:
    return bool(state.get(_INIT))

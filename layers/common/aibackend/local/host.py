"""Hosts one function in this process: imports its package and calls its Lambda handler."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from aibackend.catalog import FunctionSpec
from aibackend.errors import ConfigError
from aibackend.local import powertools_scope
from aibackend.local.context import LocalLambdaContext, new_request_id
from aibackend.local.logs import LogSink, report_line, routed
from aibackend.models.runtime import pinned_version

log = logging.getLogger("aib.runtime")
Handler = Callable[[dict[str, Any], Any], Any]
_thread = threading.local()


def _ensure_event_loop() -> None:
    """Give a worker thread the event loop Lambda's main thread has (Mangum asks for one)."""
    if getattr(_thread, "loop", None) is None:
        _thread.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_thread.loop)


def check_environments(specs: Iterable[FunctionSpec]) -> None:
    """In one process, functions share `os.environ`: refuse conflicting values."""
    owner: dict[str, tuple[str, str]] = {}
    for s in specs:
        for k, v in s.environment.items():
            prev = owner.setdefault(k, (s.name, v))
            if prev[1] != v:
                raise ConfigError(
                    f"functions {prev[0]!r} and {s.name!r} set {k} to different values "
                    f"({prev[1]!r} vs {v!r}); they cannot share one process: rename the variable"
                )


class Host(Protocol):
    """What the gateway, pollers and bus need of a hosted function (in process or isolated)."""

    spec: FunctionSpec
    models: dict[str, int | None]
    init_ms: float | None
    loaded_at: float | None
    #: Why the latest load failed (None once one succeeds).
    load_error: str | None
    #: True when the host kills an invocation at its timeout itself (worker processes).
    enforces_timeout: bool

    def load(self) -> None: ...

    def invoke(self, event: Any, request_id: str | None = None) -> Any: ...

    def stop(self) -> None: ...


def not_loaded(function: str, error: str | None) -> str:
    """What an invocation of a function that never loaded answers."""
    if error is None:
        return f"function {function} is not loaded"
    return (
        f"function {function} is not loaded: its INIT failed ({error}); `aib dev` loads it "
        "again when its code is saved or its model's production version moves"
    )


class FunctionHost:
    """A function's loaded code, in this process: the local analogue of one Lambda version."""

    enforces_timeout = False

    def __init__(self, spec: FunctionSpec, log_sink: LogSink | None = None) -> None:
        """`log_sink`: where the function's stdout and stderr lines go (`aib logs`), if anywhere."""
        self.spec = spec
        self.log_sink = log_sink
        #: INIT's duration, reported on the first invocation after a load (a cold start).
        self._cold_init_ms: float | None = None
        self._handler: Handler | None = None
        self._lock = threading.Lock()
        self.loaded_at: float | None = None
        self.models: dict[str, int | None] = {}
        self.init_ms: float | None = None
        #: Why the latest load failed (None once one succeeds).
        self.load_error: str | None = None
        #: The loaded version's Powertools state (`powertools_scope`).
        self._powertools_state: dict[str, Any] = {}

    def load(self) -> None:
        """Import (or re-import) the function's package; INIT work such as model loads runs here."""
        root = str(self.spec.directory.parent)
        if root not in sys.path:
            sys.path.insert(0, root)
        os.environ.update(self.spec.environment)
        os.environ["POWERTOOLS_SERVICE_NAME"] = self.spec.name
        pkg = self.spec.package
        with self._lock:
            stale = [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]
            saved = {m: sys.modules.pop(m) for m in stale}
            t0 = time.perf_counter()
            powertools_scope.install()  # before the module makes its `Metrics()` and `Logger()`
            # A new version starts from nothing, as a new Lambda environment does; the
            # previous one keeps its state if this one fails.
            state: dict[str, Any] = {}
            try:
                with routed(self.log_sink), powertools_scope.function_scope(state):
                    module = importlib.import_module(self.spec.handler_module)
            except BaseException as e:
                sys.modules.update(saved)  # keep serving the previous version
                self.load_error = f"{type(e).__name__}: {e}"
                self._log_error(e)
                raise
            handler = getattr(module, self.spec.handler_attr, None)
            if not callable(handler):
                raise ConfigError(
                    f"{self.spec.directory / 'function.toml'}: handler: "
                    f"{self.spec.handler_module}.{self.spec.handler_attr} is not a function"
                )
            self._handler, self._powertools_state = handler, state
            self.load_error = None
            self.init_ms = (time.perf_counter() - t0) * 1000
            self._cold_init_ms = self.init_ms
            self.loaded_at = time.time()
            self.models = {m: pinned_version(m) for m in self.spec.models}
        log.info(
            "loaded function %s (models %s) in %.0f ms", self.spec.name, self.models, self.init_ms
        )

    def stop(self) -> None:
        """Nothing to release: the code lives in this process."""

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        handler = self._handler
        if handler is None:
            raise RuntimeError(not_loaded(self.spec.name, self.load_error))
        ctx = LocalLambdaContext(
            function_name=self.spec.name,
            memory_limit_in_mb=self.spec.memory_mb,
            timeout_s=self.spec.timeout_s,
            aws_request_id=request_id or new_request_id(),
        )
        _ensure_event_loop()
        scope = powertools_scope.invocation_scope(self._powertools_state)
        if self.log_sink is None:
            with scope:
                return handler(event, ctx)
        init_ms, self._cold_init_ms = self._cold_init_ms, None
        t0 = time.perf_counter()
        failed = False
        try:
            with routed(self.log_sink), scope:
                return handler(event, ctx)
        except BaseException as e:
            failed = True
            self._log_error(e)
            raise
        finally:
            ms = (time.perf_counter() - t0) * 1000
            self.log_sink.write_line(report_line(ctx.aws_request_id, ms, init_ms, failed))

    def _log_error(self, e: BaseException) -> None:
        """What Lambda's runtime writes to the function's log when the handler raises."""
        if self.log_sink is not None:
            self.log_sink.write_line(f"[ERROR] {type(e).__name__}: {e}")
            for line in "".join(traceback.format_exception(e)).rstrip("\n").split("\n"):
                self.log_sink.write_line(line)


def functions_on_path(root: Path) -> None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))

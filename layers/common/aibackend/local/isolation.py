"""`aib dev --isolate`: every function in its own worker processes, like Lambda environments.

`ProcessHost` is a drop-in replacement for the in-process `FunctionHost`. Each worker is a fresh
interpreter (`python -m aibackend.local.isolation`) that imports the function with a
`FunctionHost` of its own and serves one invocation at a time. Requests and replies cross the
process boundary as length-prefixed JSON frames on two pipes passed to the child (so the
child's own stdout and stderr stay the parent's: handler logs appear where `aib dev` prints).

Failure semantics follow Lambda's:

- the handler raises: `FunctionError` with the error type and message; the worker stays warm;
- the invocation runs past `timeout_s`: the worker is killed (SIGKILL) and `FunctionTimeoutError`
  is raised (a `TimeoutError` too, so the local gateway answers 504);
- the worker dies (segfault, `os._exit`, OOM killer): `FunctionCrashError` with the exit status;
- the next invocation after a timeout or a crash starts a fresh worker (a new INIT).

Pipes and `pass_fds` make this POSIX only (Linux, macOS), like Lambda itself.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aibackend
from aibackend.catalog import FunctionSpec
from aibackend.errors import AibError
from aibackend.local.host import not_loaded

log = logging.getLogger("aib.runtime")

WORKER_MODULE = "aibackend.local.isolation"
#: Tells a worker which file its function's log lines go to (`aibackend.local.logs`).
LOG_FILE_ENV = "AIB_FUNCTION_LOG_FILE"
#: Lambda's INIT phase limit; a function with a longer timeout gets that much instead.
INIT_TIMEOUT_S = 10.0
#: Lambda's limit on a synchronous invocation's response.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
#: How long a retired worker may take to exit after its request pipe closes.
RETIRE_GRACE_S = 2.0
_HEADER = struct.Struct(">I")
_READ_CHUNK = 1 << 20


class FunctionError(AibError):
    """The handler raised (Lambda's `Unhandled` function error); the worker keeps serving."""

    status = 502
    title = "Function error"

    def __init__(
        self,
        function: str,
        error_type: str,
        error_message: str,
        stack_trace: list[str] | None = None,
    ) -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.function = function
        self.error_type = error_type
        self.error_message = error_message
        self.stack_trace = stack_trace or []


class FunctionInitError(FunctionError):
    """The function's INIT (module import, model loads) raised in the worker."""

    title = "Function init failed"


class FunctionTimeoutError(AibError, TimeoutError):
    """The invocation ran past the function's `timeout_s`; its worker was killed."""

    status = 504
    title = "Function timed out"

    def __init__(self, function: str, timeout_s: float, phase: str = "Task") -> None:
        super().__init__(f"{function}: {phase} timed out after {timeout_s:.2f} seconds")
        self.function = function
        self.timeout_s = timeout_s


class FunctionCrashError(AibError):
    """The worker process died during an invocation (Lambda's `Runtime.ExitError`)."""

    status = 502
    title = "Function crashed"

    def __init__(self, function: str, returncode: int | None) -> None:
        self.function = function
        self.returncode = returncode
        #: The exit status when the worker exited, None when a signal killed it.
        self.exit_code = returncode if returncode is not None and returncode >= 0 else None
        #: The signal that killed the worker, if one did.
        self.signal = -returncode if returncode is not None and returncode < 0 else None
        if self.signal is not None:
            try:
                how = f"signal: {signal.Signals(self.signal).name}"
            except ValueError:
                how = f"signal: {self.signal}"
        else:
            how = f"exit status {returncode}"
        super().__init__(f"{function}: Runtime exited with error: {how}")


# -- framing (both sides) ------------------------------------------------------------------------


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _error_body(e: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's error shape: `errorType`, `errorMessage`, `stackTrace`."""
    return {
        "errorType": error_type or type(e).__name__,
        "errorMessage": str(e),
        "stackTrace": traceback.format_exception(e),
    }


# -- the worker (child process) ------------------------------------------------------------------


def _read_blocking(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), _READ_CHUNK))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _receive(fd: int) -> Any:
    header = _read_blocking(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_blocking(fd, _HEADER.unpack(header)[0])
    return None if body is None else json.loads(body)


def serve(requests: int, replies: int) -> int:
    """Worker main loop: INIT on the first frame (the spec), then one invocation per frame.

    Returns the exit status: 0 when the parent closes the request pipe, 1 when INIT failed.
    """
    from aibackend.collector import freeze_after_startup
    from aibackend.local.host import FunctionHost
    from aibackend.local.logs import LogSink

    # Ctrl-C in `aib dev`'s terminal reaches the whole process group; the parent stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    first = _receive(requests)
    if first is None:
        return 0
    log_file = os.environ.get(LOG_FILE_ENV)
    sink = LogSink(Path(log_file)) if log_file else None
    host = FunctionHost(FunctionSpec.model_validate(first["spec"]), sink)
    try:
        host.load()
    except Exception as e:
        traceback.print_exc()
        _write_frame(replies, json.dumps({"ok": False, "error": _error_body(e)}).encode())
        return 1
    # INIT's objects (imports, models) live as long as this worker: collections skip them.
    freeze_after_startup()
    ready = {"ok": True, "models": host.models, "init_ms": host.init_ms}
    _write_frame(replies, json.dumps(ready).encode())
    while (msg := _receive(requests)) is not None:
        try:
            result = host.invoke(msg["event"], msg.get("request_id"))
        except Exception as e:
            # What Lambda's runtime prints to the function's log before answering the error.
            print(f"[ERROR] {type(e).__name__}: {e}", file=sys.stderr)
            traceback.print_exc()
            reply = json.dumps({"ok": False, "error": _error_body(e)}).encode()
        else:
            try:
                reply = json.dumps({"ok": True, "result": result}).encode()
            except (TypeError, ValueError) as e:
                body = _error_body(e, "Runtime.MarshalError")
                body["errorMessage"] = f"Unable to marshal response: {e}"
                reply = json.dumps({"ok": False, "error": body}).encode()
            if len(reply) > MAX_RESPONSE_BYTES:
                text = f"Response payload size ({len(reply)} bytes) exceeded maximum allowed "
                text += f"payload size ({MAX_RESPONSE_BYTES} bytes)."
                error = {"errorType": "Function.ResponseSizeTooLarge", "errorMessage": text}
                reply = json.dumps({"ok": False, "error": {**error, "stackTrace": []}}).encode()
        _write_frame(replies, reply)
    return 0


# -- the parent side -----------------------------------------------------------------------------


class _DeadlineError(Exception):
    """The deadline passed while waiting for the worker's reply."""


class _Worker:
    """One worker process and the two pipe ends the parent holds."""

    def __init__(self, proc: subprocess.Popen[bytes], requests: int, replies: int, generation: int):
        self.proc = proc
        self.requests = requests
        self.replies = replies
        self.generation = generation
        self.alive = True
        self.models: dict[str, int | None] = {}
        self.init_ms = 0.0
        self._selector = selectors.DefaultSelector()
        self._selector.register(replies, selectors.EVENT_READ)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, payload: bytes, deadline: float) -> Any:
        """Send one frame and wait for the reply; None when the worker died (then it is reaped).

        Raises `_DeadlineError` (after killing the worker) when `deadline` passes first.
        """
        try:
            try:
                _write_frame(self.requests, payload)
            except BrokenPipeError:
                self._reap()
                return None
            header = self._read(_HEADER.size, deadline)
            body = None if header is None else self._read(_HEADER.unpack(header)[0], deadline)
            if body is None:
                self._reap()
                return None
            return json.loads(body)
        except BaseException:
            self.kill()
            raise

    def _read(self, n: int, deadline: float) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                raise _DeadlineError
            chunk = os.read(self.replies, min(n - len(buf), _READ_CHUNK))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _reap(self) -> None:
        """The reply pipe closed: the process is exiting (or closed it itself: kill it)."""
        try:
            self.proc.wait(timeout=RETIRE_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_fds()

    def kill(self) -> None:
        """SIGKILL, reap and release the pipes (the caller must own the worker)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        self._close_fds()

    def retire(self) -> None:
        """Close the request pipe (the worker exits on EOF), then reap it, killing it if slow."""
        self._close_fds()
        try:
            self.proc.wait(timeout=RETIRE_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _close_fds(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self._selector.close()
        for fd in (self.requests, self.replies):
            with contextlib.suppress(OSError):
                os.close(fd)


def _retire_in_background(worker: _Worker) -> None:
    threading.Thread(target=worker.retire, name=f"aib-retire-{worker.pid}", daemon=True).start()


class ProcessHost:
    """A function served by a pool of worker processes: the local analogue of Lambda's
    execution environments of one function version.

    Up to `spec.reserved_concurrency` (default 2, or the provisioned concurrency when that is
    more) workers, each serving one invocation at a time, started lazily and kept warm.
    `load()` runs the INIT of a first worker, or of `spec.provisioned_concurrency` workers side
    by side, and on a later call (a model's production version moved) starts as many new ones
    before retiring the old ones, so serving never stops. Workers inherit this process's
    environment as it is at `load()` (with the model pins the runtime set there) plus the
    function's `environment`.
    """

    #: `invoke` itself enforces `timeout_s` (counting from the worker being ready, not its INIT)
    #: and raises `FunctionTimeoutError`; callers need no timeout of their own.
    enforces_timeout = True

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        init_timeout_s: float | None = None,
        log_path: Path | None = None,
    ) -> None:
        """`log_path`: the function's log file (`aib logs`); its workers append to it."""
        self.spec = spec
        self.log_path = log_path
        self.max_workers = spec.reserved_concurrency or max(2, spec.provisioned_concurrency or 0)
        #: Workers `load()` starts ahead of traffic.
        self.provisioned = spec.provisioned_concurrency or 1
        self.init_timeout_s = init_timeout_s or max(INIT_TIMEOUT_S, float(spec.timeout_s))
        self.loaded_at: float | None = None
        self.models: dict[str, int | None] = {}
        #: Wall time of the latest INIT: process start, interpreter, imports, model loads.
        self.init_ms: float | None = None
        #: Why the latest load failed (None once one succeeds).
        self.load_error: str | None = None
        self._cond = threading.Condition()
        self._load_lock = threading.Lock()
        self._env: dict[str, str] | None = None
        #: Workers belong to one load (a "version"); stop() starts a new, empty one too.
        self._generations = itertools.count(1)
        self._generation = 0
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, **self.spec.environment}
        env["POWERTOOLS_SERVICE_NAME"] = self.spec.name
        if self.log_path is not None:
            env[LOG_FILE_ENV] = str(self.log_path)
        # Logs of a killed worker must not die in its buffers.
        env["PYTHONUNBUFFERED"] = "1"
        # The worker imports this library the way this process found it.
        root = str(Path(aibackend.__file__).resolve().parent.parent)
        paths = [root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _spawn(self, env: dict[str, str], generation: int) -> _Worker:
        """Start a worker and run its INIT; raises if INIT fails, hangs or crashes."""
        t0 = time.perf_counter()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, str(req_r), str(rep_w)],
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=(req_r, rep_w),
            )
        except BaseException:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            raise
        os.close(req_r)
        os.close(rep_w)
        worker = _Worker(proc, req_w, rep_r, generation)
        spec = {**self.spec.model_dump(mode="json"), "directory": str(self.spec.directory)}
        try:
            reply = worker.call(
                json.dumps({"spec": spec}).encode(), time.monotonic() + self.init_timeout_s
            )
        except _DeadlineError:
            raise FunctionTimeoutError(self.spec.name, self.init_timeout_s, "INIT") from None
        if reply is None:
            raise FunctionCrashError(self.spec.name, proc.returncode)
        if not reply["ok"]:
            worker.retire()
            err = reply["error"]
            raise FunctionInitError(
                self.spec.name, err["errorType"], err["errorMessage"], err["stackTrace"]
            )
        worker.models = reply["models"]
        worker.init_ms = (time.perf_counter() - t0) * 1000
        with self._cond:
            if generation == self._generation:
                self.init_ms = worker.init_ms
        log.info(
            "started worker %d of %s (models %s) in %.0f ms",
            proc.pid,
            self.spec.name,
            worker.models,
            worker.init_ms,
        )
        return worker

    def _spawn_all(self, env: dict[str, str], generation: int, count: int) -> list[_Worker]:
        """`count` workers whose INITs run side by side; if one fails, the others are retired
        and its error propagates."""
        with ThreadPoolExecutor(count, thread_name_prefix=f"aib-init-{self.spec.name}") as pool:
            futures = [pool.submit(self._spawn, env, generation) for _ in range(count)]
        errors = [e for f in futures if (e := f.exception()) is not None]
        started = [f.result() for f in futures if f.exception() is None]
        if errors:
            for w in started:
                w.retire()
            raise errors[0]
        return started

    def load(self) -> None:
        """Start the function as it is now in one worker, or in `provisioned_concurrency`
        workers side by side (INIT); retire the previous workers.

        On failure the previous workers keep serving and the error propagates.
        """
        with self._load_lock:
            env = self._environment()
            with self._cond:
                generation = next(self._generations)
            try:
                workers = self._spawn_all(env, generation, self.provisioned)
            except Exception as e:
                self.load_error = f"{type(e).__name__}: {e}"
                raise
            self.load_error = None
            worker = workers[0]
            with self._cond:
                self._generation = generation
                self._env = env
                old, self._idle = self._idle, workers
                self._starting = 0
                self.models = worker.models
                self.init_ms = max(w.init_ms or 0.0 for w in workers)
                self.loaded_at = time.time()
                self._cond.notify_all()
            # Busy workers of the previous version retire when their invocation ends.
            for w in old:
                w.retire()

    def stop(self) -> None:
        """Terminate every worker; invocations in flight fail with `FunctionCrashError`."""
        with self._cond:
            self._env = None
            self._generation = next(self._generations)
            idle, self._idle = self._idle, []
            busy = list(self._busy)
            self._cond.notify_all()
        for w in busy:  # their invoking threads own the pipes and reap them
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
        for w in idle:
            w.retire()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (idle and busy)."""
        with self._cond:
            return [w.pid for w in (*self._idle, *self._busy)]

    # -- invocations ------------------------------------------------------------------------------

    def _size(self) -> int:
        current = sum(1 for w in self._busy if w.generation == self._generation)
        return len(self._idle) + current + self._starting

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._env is None:
                    raise RuntimeError(not_loaded(self.spec.name, self.load_error))
                if self._idle:
                    worker = self._idle.pop()  # the most recently used: the warmest
                    self._busy.add(worker)
                    return worker
                if self._size() < self.max_workers:
                    self._starting += 1
                    env, generation = self._env, self._generation
                    break
                self._cond.wait()
        try:
            worker = self._spawn(env, generation)
        except BaseException:
            with self._cond:
                if generation == self._generation:
                    self._starting -= 1
                self._cond.notify()
            raise
        with self._cond:
            if generation == self._generation:
                self._starting -= 1
            self._busy.add(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._busy.discard(worker)
            keep = worker.alive and worker.generation == self._generation
            if keep:
                self._idle.append(worker)
            self._cond.notify()
        if worker.alive and not keep:
            _retire_in_background(worker)

    def invoke(self, event: dict[str, Any], request_id: str | None = None) -> Any:
        """Run the handler in a worker; raises `FunctionError`, `FunctionTimeoutError` or
        `FunctionCrashError` when the invocation fails the way Lambda reports it."""
        payload = json.dumps({"event": event, "request_id": request_id}).encode()
        worker = self._acquire()
        try:
            reply = worker.call(payload, time.monotonic() + self.spec.timeout_s)
        except _DeadlineError:
            log.error(
                "%s: worker %d ran past timeout_s = %s and was killed",
                self.spec.name,
                worker.pid,
                self.spec.timeout_s,
            )
            raise FunctionTimeoutError(self.spec.name, self.spec.timeout_s) from None
        finally:
            self._release(worker)
        if reply is None:
            log.error(
                "%s: worker %d died (status %s)",
                self.spec.name,
                worker.pid,
                worker.proc.returncode,
            )
            raise FunctionCrashError(self.spec.name, worker.proc.returncode)
        if not reply["ok"]:
            err = reply["error"]
            raise FunctionError(
                self.spec.name, err["errorType"], err["errorMessage"], err["stackTrace"]
            )
        return reply["result"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(f"usage: python -m {WORKER_MODULE} REQUEST_FD REPLY_FD", file=sys.stderr)
        return 2
    return serve(int(args[0]), int(args[1]))


if __name__ == "__main__":
    sys.exit(main())

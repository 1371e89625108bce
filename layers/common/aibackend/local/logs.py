"""Function logs under `aib dev`: one file per function, what CloudWatch Logs is on AWS.

A Lambda function logs by writing to stdout and stderr (Powertools' JSON lines, EMF metric
documents, tracebacks); the Lambda service adds a `REPORT` line per invocation. Under `aib dev`
every function shares one process (or has worker processes of its own with `--isolate`), so
this module routes by thread: while a host runs a function's INIT or an invocation, whatever
that thread writes to `sys.stdout` or `sys.stderr` goes, line by line, to
`<state>/logs/<function>.log`, and is still echoed to the console as before.

Each file line is `<UTC time, ISO 8601 with milliseconds>\\t<the line as the function wrote it>`,
the (timestamp, message) pair a CloudWatch log event has. A file that passes `MAX_BYTES` is
rotated once (`<function>.log.1`), so a long `aib dev` session keeps a bounded folder.

Read with `aib logs FUNCTION [-f]`; `aib metrics` aggregates the EMF documents and REPORT lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

#: A function's log file is rotated once past this size (one previous generation is kept).
MAX_BYTES = 32 * 1024 * 1024


def log_folder(state_dir: Path) -> Path:
    return state_dir / "logs"


def log_path(state_dir: Path, function: str) -> Path:
    return log_folder(state_dir) / f"{function}.log"


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogSink:
    """One function's log file: appends whole lines, thread-safe, rotated past `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._size = 0
        self._checked = 0.0

    def write_line(self, line: str, at: float | None = None) -> None:
        now = time.time()
        text = f"{_stamp(now if at is None else at)}\t{line}\n"
        with self._lock:
            if self._file is not None and now - self._checked > 1.0:
                # `aib dev --isolate`: another worker of the function may have rotated it.
                self._checked = now
                if _replaced(self.path, os.fstat(self._file.fileno()).st_ino):
                    self._file.close()
            f = self._open()
            f.write(text)
            f.flush()
            self._size += len(text)
            if self._size > self.max_bytes:
                self._rotate()

    def _open(self) -> TextIO:
        if self._file is None or self._file.closed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self.path.replace(self.path.with_name(self.path.name + ".1"))
        self._file = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()


class LogFolder:
    """The sinks of one state folder's functions (one per function, made on first use)."""

    def __init__(self, state_dir: Path, max_bytes: int = MAX_BYTES) -> None:
        self.folder = log_folder(state_dir)
        self.max_bytes = max_bytes
        self._sinks: dict[str, LogSink] = {}
        self._lock = threading.Lock()

    def sink(self, function: str) -> LogSink:
        with self._lock:
            if function not in self._sinks:
                path = self.folder / f"{function}.log"
                self._sinks[function] = LogSink(path, self.max_bytes)
            return self._sinks[function]

    def close(self) -> None:
        with self._lock:
            for s in self._sinks.values():
                s.close()


# -- routing sys.stdout / sys.stderr by thread ----------------------------------------------------

_current = threading.local()


class _Router(io.TextIOBase):
    """Stands in for sys.stdout or sys.stderr: a routed thread's lines go to its function's
    sink (and, echoed, to the stream this one replaced); any other thread writes through."""

    def __init__(self, name: str, fallback: TextIO) -> None:
        self.name = name
        self.fallback = fallback

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        sink: LogSink | None = getattr(_current, "sink", None)
        written = self.fallback.write(s)
        if sink is None:
            return written
        buffers: dict[str, str] = _current.buffers
        text = buffers.get(self.name, "") + s
        *lines, rest = text.split("\n")
        buffers[self.name] = rest
        for line in lines:
            sink.write_line(line)
        return len(s)

    def flush(self) -> None:
        self.fallback.flush()

    def isatty(self) -> bool:
        return self.fallback.isatty()

    def fileno(self) -> int:
        return self.fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8")


def install() -> None:
    """Route sys.stdout and sys.stderr through this module (again, if something replaced them
    since, such as a test runner's capture): cheap enough to call before every invocation."""
    if not isinstance(sys.stdout, _Router):
        sys.stdout = _Router("stdout", sys.stdout)
    if not isinstance(sys.stderr, _Router):
        sys.stderr = _Router("stderr", sys.stderr)


@contextlib.contextmanager
def routed(sink: LogSink | None) -> Iterator[None]:
    """While inside, this thread's stdout and stderr lines are the function's log lines."""
    if sink is None:
        yield
        return
    install()
    outer = getattr(_current, "sink", None), getattr(_current, "buffers", None)
    _current.sink, _current.buffers = sink, {}
    try:
        yield
    finally:
        for rest in _current.buffers.values():
            if rest:
                sink.write_line(rest)
        _current.sink, _current.buffers = outer


def report_line(request_id: str, duration_ms: float, init_ms: float | None, error: bool) -> str:
    """The line Lambda's service writes after each invocation (same fields, same layout)."""
    line = f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms"
    if init_ms is not None:
        line += f"\tInit Duration: {init_ms:.2f} ms"
    if error:
        line += "\tStatus: error"
    return line


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    at: datetime
    text: str

    @property
    def json(self) -> dict[str, Any] | None:
        if not self.text.startswith("{"):
            return None
        try:
            doc = json.loads(self.text)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None


def parse_line(raw: str) -> LogLine | None:
    stamp, sep, text = raw.rstrip("\n").partition("\t")
    if not sep:
        return None
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return LogLine(at, text)


def read_lines(path: Path, since: datetime | None = None) -> Iterator[LogLine]:
    """The file's lines (its rotated generation first), optionally from `since` on."""
    for p in (path.with_name(path.name + ".1"), path):
        if not p.exists():
            continue
        with p.open(encoding="utf-8", errors="replace") as f:
            for raw in f:
                line = parse_line(raw)
                if line is not None and (since is None or line.at >= since):
                    yield line


def follow(path: Path, stop: threading.Event, interval: float = 0.25) -> Iterator[LogLine]:
    """Lines appended to the file from now on (`tail -f`), across rotations, until `stop`."""
    f: TextIO | None = None
    inode = -1
    first = True
    partial = ""
    try:
        while not stop.is_set():
            if f is None and path.exists():
                f = path.open(encoding="utf-8", errors="replace")
                inode = os.fstat(f.fileno()).st_ino
                if first:
                    f.seek(0, os.SEEK_END)
            first = False
            got = False
            if f is not None:
                for raw in iter(f.readline, ""):
                    got = True
                    partial += raw
                    if partial.endswith("\n"):
                        line, partial = parse_line(partial), ""
                        if line is not None:
                            yield line
                if not got and _replaced(path, inode):
                    f.close()  # rotated: the next turn reads the new file from its start
                    f = None
            if not got:
                stop.wait(interval)
    finally:
        if f is not None:
            f.close()


def _replaced(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino != inode
    except FileNotFoundError:
        return True


#: Keys every Powertools line has; `pretty` shows the rest as key=value.
_STANDARD = {
    "level",
    "location",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "xray_trace_id",
    "sampling_rate",
}


def pretty(line: LogLine) -> str | None:
    """A console rendering: `time LEVEL message key=value ...`; EMF documents are left out
    (`aib metrics` reads them), other lines (tracebacks, prints, REPORT) shown as written."""
    doc = line.json
    at = line.at.strftime("%H:%M:%S.%f")[:-3]
    if doc is None:
        return f"{at} {line.text}"
    if "_aws" in doc:
        return None
    extras = " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}"
        for k, v in doc.items()
        if k not in _STANDARD
    )
    level = str(doc.get("level", "")).ljust(5)
    text = f"{at} {level} {doc.get('message', '')}"
    return f"{text}  {extras}" if extras else text

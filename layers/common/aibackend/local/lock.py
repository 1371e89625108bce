"""One `aib dev` per state folder, and its port checked before the minute of training.

Two runtimes on one folder would both fire every schedule and both turn each file dropped in
a bucket into an `Object Created` event: the pipeline would run twice. The lock is an
advisory `flock` on `<state>/dev.lock`: the kernel drops it when the process ends, however it
ends (a SIGKILL leaves no stale lock), and the file names the holder for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path

from aibackend.errors import ConfigError

LOCK_FILE = "dev.lock"


class StateLock:
    """Held by the `aib dev` serving a state folder, for as long as it runs."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, url: str) -> None:
        """Take the lock, or raise `ConfigError` naming the `aib dev` that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"another `aib dev` ({holder}) is serving {self.path.parent.resolve()}: stop it "
                "first, or give this one a state folder of its own (--state-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "url": url}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None


def serving(state_dir: Path) -> str | None:
    """Who serves `state_dir` (`pid ..., url`), or None when no `aib dev` holds its lock."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        # Shared, so that two such checks never refuse each other; a holder's exclusive
        # lock refuses it.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd)
    else:
        return None
    finally:
        os.close(fd)  # and with it the shared lock, if it was taken


def require_serving(state_dir: Path, command: str) -> str:
    """The `aib dev` serving `state_dir`, or `ConfigError` saying to start one first."""
    holder = serving(state_dir)
    if holder is None:
        raise ConfigError(
            f"{command} needs an `aib dev` serving {state_dir.resolve()}, and none is: start "
            "`aib dev` first (in another terminal), or pass the --state-dir the running one "
            "serves"
        )
    return holder


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return "pid unknown"
    return f"pid {holder.get('pid', '?')}, {holder.get('url', '?')}"


def check_port_free(host: str, port: int) -> None:
    """Raise `ConfigError` if `host:port` cannot be bound now (uvicorn would fail there only
    after every model was trained and every function loaded)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--host {host!r} does not resolve: {e}") from None
    with socket.socket(family, kind, proto) as s:
        # As uvicorn binds: a port in TIME_WAIT after the previous run is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({e.strerror}): another server, or an `aib "
                "dev` on another state folder, has it; pass --port (or set AIB_PORT)"
            ) from None

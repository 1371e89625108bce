"""One `aib dev` per state folder; its port checked before training starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aibackend.errors import ConfigError
from aibackend.local.lock import StateLock, check_port_free, require_serving, serving


def test_a_second_runtime_on_a_state_folder_is_refused_with_the_holder(tmp_path: Path) -> None:
    # GIVEN an `aib dev` holding the state folder
    first = StateLock(tmp_path)
    first.acquire("http://127.0.0.1:8000")
    # WHEN another one starts on the same folder
    second = StateLock(tmp_path)
    with pytest.raises(ConfigError) as refused:
        second.acquire("http://127.0.0.1:8001")
    # THEN it is refused, naming the process and the address that hold it
    assert f"pid {os.getpid()}, http://127.0.0.1:8000" in str(refused.value)
    assert "--state-dir" in str(refused.value)
    # AND once the first stops, the folder is free again
    first.release()
    second.acquire("http://127.0.0.1:8001")
    second.release()


def test_a_killed_runtime_leaves_no_stale_lock(tmp_path: Path) -> None:
    # GIVEN a process that took the lock and was then SIGKILLed (no cleanup ran)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from aibackend.local.lock import StateLock
                StateLock(Path({str(tmp_path)!r})).acquire("http://x")
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError):
            StateLock(tmp_path).acquire("http://y")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # WHEN a new runtime starts THEN it takes the folder (the kernel dropped the lock)
    lock = StateLock(tmp_path)
    lock.acquire("http://y")
    lock.release()


def test_a_port_in_use_is_refused_before_anything_starts() -> None:
    # GIVEN a port some other server listens on
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # WHEN `aib dev` would use it THEN it is refused with what to do
        with pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{port} .*--port"):
            check_port_free("127.0.0.1", port)
    # AND once free, the check passes
    check_port_free("127.0.0.1", port)


def test_who_serves_a_folder_is_the_lock_holder_and_nobody_once_it_is_released(
    tmp_path: Path,
) -> None:
    # GIVEN a folder no `aib dev` has ever served: nobody serves it
    assert serving(tmp_path) is None
    # WHEN one takes it THEN it is named as the folder's server (asked twice: the question
    # takes no lock that would refuse the next one)
    lock = StateLock(tmp_path)
    lock.acquire("http://127.0.0.1:8000")
    assert serving(tmp_path) == f"pid {os.getpid()}, http://127.0.0.1:8000"
    assert require_serving(tmp_path, "aib simulate") == serving(tmp_path)
    # AND once it stops (its lock file left behind), nobody serves the folder
    lock.release()
    assert (tmp_path / "dev.lock").exists()
    assert serving(tmp_path) is None
    with pytest.raises(ConfigError, match=r"aib simulate needs an `aib dev` serving .*--state-dir"):
        require_serving(tmp_path, "aib simulate")

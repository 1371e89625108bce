"""Endpoints under `aib dev`: each declared endpoint's server as a process on a loopback port.

An endpoint runs while its model has a production version in the local registry; without
one, `aib dev` runs without it (the functions that call it answer 503 saying how to build
it) and `/health` says `not built (make embeddings)`. Each endpoint keeps one port for the
life of `aib dev`, so a restart on a new version (the production pointer moved, e.g. after
`aib build embeddings`) keeps the URL the functions were given. Server output goes to
`<state>/endpoints/<name>.log`.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from aibackend.embeddings.endpoints import EndpointSpec, endpoint_spec
from aibackend.errors import ModelLoadError
from aibackend.ports import ModelRegistry
from aibackend.settings import PlatformSettings, resource_env

log = logging.getLogger("aib.runtime")

LOOPBACK = "127.0.0.1"
#: Seconds a server may take from start to its first 200 on /ping (imports + model load).
READY_TIMEOUT_S = 120.0


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EndpointProcess:
    """One endpoint's server process, on a fixed loopback port."""

    def __init__(self, spec: EndpointSpec, *, log_dir: Path, port: int | None = None) -> None:
        self.spec = spec
        self.port = port or free_port()
        self.log_path = log_dir / f"{spec.name}.log"
        self.version: int | None = None
        #: Why the last start failed (None: it did not, or nothing was started).
        self.error: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, model_dir: Path, version: int, *, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Start the server on `model_dir` and wait for its /ping; False (and `error`) if it
        exits or stays unready."""
        self.stop()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        cmd = [
            sys.executable,
            "-m",
            self.spec.server_module,
            "--model-dir",
            str(model_dir),
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--parent-pid",
            str(os.getpid()),
        ]
        self._proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.version = version
        self.error = None
        if self.wait_ready(timeout_s):
            return True
        rc = self._proc.poll()
        self.error = (
            f"exited with code {rc}" if rc is not None else f"not ready after {timeout_s:.0f} s"
        ) + f"; see {self.log_path}"
        self.stop()
        return False

    def ping(self, timeout_s: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=timeout_s) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                return False
            if self.ping():
                return True
            time.sleep(0.1)
        return False

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def status(self) -> str:
        """The URL while it runs; otherwise what is wrong and what to do."""
        if self.running:
            return self.url
        if self.error is not None:
            return f"failed: {self.error}"
        if self._proc is None and self.version is None:
            return f"not built ({self.spec.build_hint})"
        return f"stopped; see {self.log_path}"


class LocalEndpoints:
    """The endpoints a catalog's functions declare, following the registry's pointers."""

    def __init__(
        self, names: Iterable[str], registry: ModelRegistry, settings: PlatformSettings
    ) -> None:
        self.registry = registry
        self.settings = settings
        log_dir = settings.state_dir / "endpoints"
        self.processes = {
            n: EndpointProcess(endpoint_spec(n), log_dir=log_dir) for n in sorted(set(names))
        }

    def environment(self) -> dict[str, str]:
        """`AIB_ENDPOINT_<NAME>`: the URL of each running server, empty for the others."""
        return {
            resource_env("endpoint", n): p.url if p.running else ""
            for n, p in self.processes.items()
        }

    def _model_dir(self, model: str, version: int) -> Path:
        from aibackend.models.runtime import artifact_dir

        return artifact_dir(model, version, self.settings)

    def sync(self) -> list[str]:
        """(Re)start each endpoint whose model's production version is not the one it runs
        (or whose server died); returns the endpoints that came up or went down."""
        changed: list[str] = []
        for name, proc in self.processes.items():
            mv = self.registry.production(proc.spec.model)
            if mv is None or (proc.version == mv.version and (proc.running or proc.error)):
                continue
            was_running = proc.running
            try:
                folder = self._model_dir(proc.spec.model, mv.version)
            except ModelLoadError as e:
                proc.stop()
                proc.version, proc.error = mv.version, str(e)
                log.error("endpoint %s: %s", name, e)
            else:
                log.info("endpoint %s: starting %s v%s on %s", name, mv.name, mv.version, proc.url)
                if proc.start(folder, mv.version):
                    log.info("endpoint %s: ready at %s", name, proc.url)
                else:
                    log.error("endpoint %s: %s", name, proc.error)
            if proc.running != was_running:
                changed.append(name)
        return changed

    def export(self, env: Mapping[str, str] | None = None) -> None:
        """Write the endpoints' variables into this process's environment (functions read
        them at import, as they read CDK's on AWS)."""
        os.environ.update(self.environment() if env is None else env)

    def health(self) -> dict[str, str]:
        return {n: p.status() for n, p in self.processes.items()}

    def stop(self) -> None:
        for p in self.processes.values():
            p.stop()

"""`aib dev`: wire every function of the catalog and serve them on one machine.

State lives in one folder (default `.aib/`) and survives restarts. The production version of
each model is resolved at start and whenever the registry's pointer moves: the functions that
serve it are re-imported, the local analogue of publishing a new Lambda version.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from aibackend.adapters import model_registry
from aibackend.catalog import Catalog
from aibackend.errors import ModelLoadError
from aibackend.local.host import FunctionHost, check_environments
from aibackend.settings import PlatformSettings, model_version_env

log = logging.getLogger("aib.runtime")


class LocalRuntime:
    """Functions of one catalog, loaded in this process, following the registry's pointers."""

    def __init__(self, catalog: Catalog, settings: PlatformSettings) -> None:
        self.catalog = catalog
        self.settings = settings
        self.registry = model_registry(settings)
        check_environments(catalog.functions)
        self.hosts = {f.name: FunctionHost(f) for f in catalog.functions}
        self.started_at = time.time()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._export_settings()

    def _export_settings(self) -> None:
        # Handlers read the same variables CDK sets on AWS.
        os.environ["AIB_ADAPTERS"] = "local"
        os.environ["AIB_STATE_DIR"] = str(self.settings.state_dir.resolve())
        os.environ["AIB_MODEL_BUCKET"] = self.settings.model_bucket
        os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "aibackend")

    def missing_models(self) -> list[str]:
        return [m for m in self.catalog.model_names if self.registry.production(m) is None]

    def ensure_models(self, train: Callable[[str], Any]) -> None:
        """Train (or otherwise provide) every model that has no production version yet."""
        for name in self.missing_models():
            log.warning("model %r has no production version: training the demo model", name)
            train(name)

    def _pin(self, name: str) -> int:
        mv = self.registry.production(name)
        if mv is None:
            raise ModelLoadError(
                f"model {name!r} has no production version; run `aib train {name}`"
            )
        os.environ[model_version_env(name)] = str(mv.version)
        return mv.version

    def start(self) -> None:
        """Resolve every model's production version and import every function."""
        for name in self.catalog.model_names:
            self._pin(name)
        for host in self.hosts.values():
            host.load()

    def poll_once(self) -> list[str]:
        """Reload the functions whose model's production pointer moved; returns their names."""
        reloaded: list[str] = []
        for name in self.catalog.model_names:
            mv = self.registry.production(name)
            if mv is None or os.environ.get(model_version_env(name)) == str(mv.version):
                continue
            previous = os.environ.get(model_version_env(name))
            os.environ[model_version_env(name)] = str(mv.version)
            log.info("model %s: production moved %s -> %s", name, previous, mv.version)
            for host in self.hosts.values():
                if name not in host.spec.models:
                    continue
                try:
                    host.load()
                    reloaded.append(host.spec.name)
                except Exception:
                    # Keep serving the old version rather than taking the function down.
                    log.exception(
                        "reloading %s for %s v%s failed", host.spec.name, name, mv.version
                    )
                    if previous is not None:
                        os.environ[model_version_env(name)] = previous
        return reloaded

    def watch(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.settings.model_poll_s):
                try:
                    self.poll_once()
                except Exception:
                    log.exception("model pointer check failed")

        self._watcher = threading.Thread(target=loop, name="aib-model-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "state_dir": str(self.settings.state_dir),
            "uptime_s": round(time.time() - self.started_at, 1),
            "functions": [
                {
                    "name": h.spec.name,
                    "routes": [f"{r.method} {r.path}" for r in h.spec.routes],
                    "models": h.models,
                    "init_ms": None if h.init_ms is None else round(h.init_ms, 1),
                }
                for h in self.hosts.values()
            ],
            "models": {
                n: int(v) if (v := os.environ.get(model_version_env(n))) else None
                for n in self.catalog.model_names
            },
        }

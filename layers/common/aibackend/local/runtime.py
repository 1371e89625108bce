"""`aib dev`: wire every function of the catalog and serve them on one machine.

State lives in one folder (default `.aib/`) and survives restarts. The production version of
each model is resolved at start and whenever the registry's pointer moves: the functions that
serve it are re-imported, the local analogue of publishing a new Lambda version. A function
folder that appears while it runs (`aib model train` scaffolds one) is loaded and routed
without a restart if it declares only HTTP routes (`poll_functions`); other triggers, and
edited or removed declarations, take a restart. A function's edited code (any `.py` file of
its folder) is re-imported on the next poll (`poll_code`); if it does not import, the
previous code keeps serving and the error is logged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aibackend.adapters import model_registry, object_store
from aibackend.auth.local import LocalAccess
from aibackend.capture import ENV as CAPTURE_ENV
from aibackend.capture import capture_env
from aibackend.catalog import (
    DECLARATION,
    DEFAULT_BUS,
    AsyncDelivery,
    Catalog,
    FunctionSpec,
    dead_letter_queue,
    failure_queue,
    load_function,
)
from aibackend.embeddings.local import LocalEndpoints
from aibackend.errors import ConfigError, ModelLoadError
from aibackend.local import triggers
from aibackend.local.canary import CanaryController, routable
from aibackend.local.checkpoints import WalCheckpoints
from aibackend.local.host import FunctionHost, Host, check_environments
from aibackend.local.isolation import FunctionInitError
from aibackend.local.lifecycle import Sweeper, expiration_rules
from aibackend.local.logs import LogFolder
from aibackend.monitoring.config import ENV as MONITOR_ENV
from aibackend.monitoring.config import monitor_env, monitored_models
from aibackend.ports import PutEvent, QueueService
from aibackend.settings import PlatformSettings, model_version_env, platform_settings

log = logging.getLogger("aib.runtime")


#: Dispatcher threads of the local bus, in one process and with `--isolate`.
BUS_WORKERS = 2
ISOLATED_BUS_WORKERS = 6


class LocalRuntime:
    """Functions of one catalog, loaded in this process, following the registry's pointers."""

    def __init__(
        self, catalog: Catalog, settings: PlatformSettings, *, isolate: bool = False
    ) -> None:
        """`isolate`: each function in its own worker processes (`aib dev --isolate`)."""
        self.catalog = catalog
        #: Threads that deliver the bus's events. In one process two are enough (more only
        #: contend for the interpreter); isolated, a dispatcher mostly waits on a worker's
        #: pipe, so more of them keep the consumers' processes busy on every core
        #: (`docs/events.md`: with 6 the mixed stream sustained 1,000 events/s, with 2 ~700).
        self.bus_workers = ISOLATED_BUS_WORKERS if isolate else BUS_WORKERS
        self.settings = settings
        self.registry = model_registry(settings)
        #: Keys, tokens and usage plans of the gateway (`aib keys`, `aib token`).
        self.access = LocalAccess(settings, catalog.plans)
        self.hosts: dict[str, Host]
        self.isolate = isolate
        #: Bumped when a function is added at run time (the gateway rebuilds its routes).
        self.generation = 0
        #: Why a function folder found at run time is not served yet (logged once per reason).
        self._pending: dict[str, str] = {}
        #: Each function's code and declaration as last loaded (`poll_code`).
        self._code: dict[str, tuple[Fingerprint, Fingerprint]] = {}
        #: Functions whose folder disappeared while they served (`poll_code` said so once).
        self._removed: set[str] = set()
        #: Each function's log file (`aib logs`, `aib metrics`), as CloudWatch Logs on AWS.
        self.logs = LogFolder(settings.state_dir)
        if not isolate:
            check_environments(catalog.functions)  # one process: one os.environ for all
        self.hosts = {f.name: self._host(f) for f in catalog.functions}
        self.started_at = time.time()
        #: Rate schedules count from here, as AWS counts from the rule's creation.
        self.started = datetime.now(UTC)
        self._stop = threading.Event()
        #: (model, version) pairs that failed to load; skipped until the pointer moves again.
        self._refused: set[tuple[str, int]] = set()
        self._watcher: threading.Thread | None = None
        declared = {e for f in catalog.functions for e in f.endpoints}
        #: Loopback servers of the endpoints functions call (`endpoints = [...]`), if any.
        self.endpoints = LocalEndpoints(declared, self.registry, settings) if declared else None
        self._export_settings()
        #: Canaries of the registry: routing by weight and their judgement (`local/canary.py`).
        self.canaries = CanaryController(
            self.registry,
            lambda: self.hosts,
            self._bare_host,
            lambda: self.catalog.model_names,
            settings.state_dir / "canary",
            tick_s=settings.model_poll_s,
        )

    def _host(self, spec: FunctionSpec) -> Host:
        return routable(self._bare_host(spec))

    def _bare_host(self, spec: FunctionSpec) -> Host:
        if self.isolate:
            from aibackend.local.isolation import ProcessHost

            return ProcessHost(spec, log_path=self.logs.sink(spec.name).path)
        return FunctionHost(spec, self.logs.sink(spec.name))

    def _export_settings(self) -> None:
        # Handlers read the same variables CDK sets on AWS.
        os.environ["AIB_ADAPTERS"] = "local"
        os.environ["AIB_STATE_DIR"] = str(self.settings.state_dir.resolve())
        os.environ["AIB_MODEL_BUCKET"] = self.settings.model_bucket
        os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "aibackend")
        # Every model's capture settings: one value, so functions in one process agree.
        if self.catalog.capture:
            os.environ[CAPTURE_ENV] = capture_env(self.catalog.capture)
        else:
            os.environ.pop(CAPTURE_ENV, None)
        # Monitoring thresholds of every captured model (functions/monitoring.toml [monitor.*]).
        os.environ[MONITOR_ENV] = monitor_env(
            monitored_models(self.catalog.root, self.catalog.capture)
        )
        # Functions read these once per process; a new runtime (tests start several) rereads them.
        platform_settings.cache_clear()

    def missing_models(self) -> list[str]:
        return [m for m in self.catalog.model_names if self.registry.production(m) is None]

    def ensure_models(self, train: Callable[[str], Any]) -> None:
        """Train (or otherwise provide) every model that has no production version yet."""
        for name in self.missing_models():
            log.warning("model %r has no production version: training the demo model", name)
            train(name)

    def pin(self, name: str) -> int:
        """Pin model `name` to its production version in the functions' environment (as CDK
        pins it at deploy); returns the version."""
        mv = self.registry.production(name)
        if mv is None:
            raise ModelLoadError(
                f"model {name!r} has no production version; run `aib train {name}`"
            )
        os.environ[model_version_env(name)] = str(mv.version)
        return mv.version

    def start(self, *, sources: bool = True) -> None:
        """Resolve every model's production version, import every function, start its sources."""
        for name in self.catalog.model_names:
            self.pin(name)
        if self.endpoints is not None:  # before the functions: they read the URLs at import
            self.endpoints.sync()
            self.endpoints.export()
        for name, host in self.hosts.items():
            # Before the import: an edit made while it runs is seen by the next poll.
            self._code[name] = _fingerprints(host.spec)
            try:
                host.load()
            except Exception as e:
                if _refused_by_platform(e):
                    # A model that fails its checksum, a declaration that does not hold: the
                    # start stops, with the message that says what to do.
                    raise
                # Code that does not run (a syntax error mid-edit, a bad import) never keeps
                # the other functions from serving: its invocations fail with the reason, as
                # Lambda's do after an INIT error, and its next saved edit loads it.
                log.exception(
                    "function %s did not load; every other function is served, and its "
                    "invocations fail until an edit of its code loads",
                    name,
                )
        if sources:
            self.start_sources()

    # -- event sources ------------------------------------------------------------------------

    def start_sources(self) -> None:
        """Queues, rules, pollers, the bus dispatcher, schedules and the bucket watcher."""
        from aibackend.adapters.local_bus import LocalEventBus
        from aibackend.adapters.local_queue import SqliteQueueService
        from aibackend.events.shapes import sqs_event

        state = self.settings.state_dir
        self.queues: QueueService = SqliteQueueService(state / "queues.db")
        self.bus = LocalEventBus(
            state / "events.db",
            deliver=self._deliver,
            queues=self.queues,
            archive_retention_s=self.settings.bus_archive_days * 86_400,
            delivered_retention_s=self.settings.bus_delivered_hours * 3_600,
        )
        self.gates = {n: triggers.Gate(h.spec.reserved_concurrency) for n, h in self.hosts.items()}
        for spec in self.catalog.functions:
            for cfg in triggers.queue_configs(spec):
                self.queues.ensure(cfg)
            self._put_rules(spec)
        wanted = {name for spec in self.catalog.functions for name in triggers.rule_names(spec)}
        for rule in self.bus.rules():  # rules of functions since removed or renamed
            if rule.name not in wanted:
                self.bus.delete_rule(rule.name, bus=rule.bus)

        def build(batch: list[Any], queue: str) -> dict[str, Any]:
            return sqs_event(
                batch, queue_name=queue, region=triggers.REGION, account=triggers.ACCOUNT
            )

        self.pollers = [
            triggers.QueuePoller(
                self.hosts[spec.name],
                q,
                self.queues.get(q.queue),
                self.gates[spec.name],
                build_event=build,
            )
            for spec in self.catalog.functions
            for q in spec.queues
        ]
        for poller in self.pollers:
            poller.start()
        self.bus.start(workers=self.bus_workers)
        self.checkpoints = WalCheckpoints(state)
        self.checkpoints.start()
        self.lifecycle: Sweeper | None = None
        if rules := expiration_rules(self.catalog):
            self.lifecycle = Sweeper(rules, lambda bucket: object_store(bucket, self.settings))
            self.lifecycle.start()
        self.scheduler = self._scheduler()
        if self.scheduler is not None:
            self.scheduler.start()
        self.watcher = None
        if any(spec.objects for spec in self.catalog.functions):
            from aibackend.local.watcher import BucketWatcher

            self.watcher = BucketWatcher(state / "buckets", self._object_created)
            self.watcher.start()

    def _put_rules(self, spec: FunctionSpec) -> None:
        from aibackend.adapters.local_bus import Target

        delivery = spec.async_delivery or AsyncDelivery()

        def target(input_path: str | None = None) -> Target:
            d = delivery
            return Target(
                kind="function",
                name=spec.name,
                input_path=input_path,
                max_attempts=d.max_attempts,
                max_event_age_s=d.max_event_age_s,
                dead_letter_queue=failure_queue(spec.name),
                timeout_s=spec.timeout_s,
            )

        for i, e in enumerate(spec.events):
            self.bus.put_rule(
                triggers.event_rule_name(spec, i),
                bus=e.bus,
                pattern=e.pattern,
                targets=[target(e.input_path)],
            )
        for i, o in enumerate(spec.objects):
            self.bus.put_rule(
                triggers.object_rule_name(spec, i),
                bus=DEFAULT_BUS,
                pattern=o.event_pattern(o.bucket),
                targets=[target()],
            )
        for qi, q in enumerate(spec.queues):
            for i, sub in enumerate(q.events):
                self.bus.put_rule(
                    triggers.queue_rule_name(spec, qi, i),
                    bus=sub.bus,
                    pattern=sub.pattern,
                    targets=[
                        Target(
                            kind="queue",
                            name=q.queue,
                            max_attempts=triggers.QUEUE_TARGET_RETRIES,
                            max_event_age_s=triggers.QUEUE_TARGET_MAX_AGE_S,
                            dead_letter_queue=dead_letter_queue(q.queue),
                        )
                    ],
                )
        for i, _ in enumerate(spec.schedules):
            name = triggers.schedule_rule_name(spec, i)
            self.bus.put_rule(
                name,
                bus=DEFAULT_BUS,
                pattern={
                    "source": ["aws.events"],
                    "detail-type": ["Scheduled Event"],
                    "resources": [triggers.rule_arn(name)],
                },
                targets=[target()],
            )

    def _scheduler(self) -> triggers.Scheduler | None:
        from aibackend.events.schedule import parse_schedule

        schedules = [
            (
                triggers.schedule_rule_name(spec, i),
                parse_schedule(s.expression, anchor=self.started),
            )
            for spec in self.catalog.functions
            for i, s in enumerate(spec.schedules)
        ]
        if not schedules:
            return None
        return triggers.Scheduler(schedules, self.bus.put_events, anchor=self.started)

    def _deliver(self, target: Any, payload: dict[str, Any]) -> None:
        """Asynchronous invocation of a function by the bus: an exception means retry."""
        host = self.hosts[target.name]
        if triggers.receives_s3_notifications(host.spec) and triggers.is_object_created(payload):
            # What the object rule's input transformer does on AWS. The bus does not say which
            # rule matched; the catalog keeps this function's other rules off S3's events.
            payload = triggers.s3_notification_from_eventbridge(
                payload, configuration_id=host.spec.name
            )
        with self.gates[target.name].hold():
            host.invoke(payload)

    def _object_created(self, bucket: str, key: str) -> None:
        from aibackend.adapters.local import LocalObjectStore

        store = LocalObjectStore(self.settings.state_dir / "buckets" / bucket, bucket=bucket)
        try:
            info = store.head(key)
        except Exception:  # gone again before we looked: nothing was created
            return
        self.put_events([triggers.object_created_event(bucket, key, info.size, info.etag)])

    def put_events(self, events: list[PutEvent]) -> None:
        result = self.bus.put_events(events)
        for index, code, message in result.failures:
            log.error("event %d refused by the local bus: %s %s", index, code, message)

    def poll_once(self) -> list[str]:
        """Reload the functions whose model's production pointer moved; returns their names.

        A version that fails to load (checksum, missing file...) is refused once: every
        function keeps serving the previous version, and it is not tried again until the
        pointer moves to another version.
        """
        reloaded: list[str] = []
        for name in self.catalog.model_names:
            mv = self.registry.production(name)
            var = model_version_env(name)
            if mv is None or os.environ.get(var) == str(mv.version):
                continue
            if (name, mv.version) in self._refused:
                continue
            previous = os.environ.get(var)
            os.environ[var] = str(mv.version)
            log.info("model %s: production moved %s -> %s", name, previous, mv.version)
            hosts = [h for h in self.hosts.values() if name in h.spec.models]
            switched: list[Host] = []
            try:
                for host in hosts:
                    host.load()
                    switched.append(host)
            except Exception:
                log.exception(
                    "model %s v%s refused; every function keeps serving v%s",
                    name,
                    mv.version,
                    previous,
                )
                self._refused.add((name, mv.version))
                if previous is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = previous
                for host in switched:  # never serve two versions side by side by accident
                    host.load()
                continue
            reloaded.extend(h.spec.name for h in switched)
        if self.endpoints is not None:
            reloaded.extend(self._sync_endpoints())
        return reloaded

    def _sync_endpoints(self) -> list[str]:
        """Follow the endpoints' model pointers; re-import the functions that call an
        endpoint that came up or went down (its URL is read at import)."""
        assert self.endpoints is not None
        changed = self.endpoints.sync()
        if not changed:
            return []
        self.endpoints.export()
        callers = [h for h in self.hosts.values() if set(changed) & set(h.spec.endpoints)]
        for host in callers:
            host.load()
        return [h.spec.name for h in callers]

    # -- functions added at run time ----------------------------------------------------------

    def poll_functions(self) -> list[str]:
        """Load the function folders that appeared since the start; returns their names.

        A folder that cannot be served yet (invalid declaration, model without a production
        version, a trigger other than routes) is logged once per reason and tried again on
        the next poll.
        """
        root = self.catalog.root
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and (d / DECLARATION).is_file())
        added = []
        for name in (n for n in found if n not in self.hosts):
            try:
                self._add_function(load_function(root / name))
            except Exception as e:  # one bad folder never stops the runtime
                if self._pending.get(name) != str(e):
                    log.warning("function folder %s not served yet: %s", root / name, e)
                self._pending[name] = str(e)
                continue
            self._pending.pop(name, None)
            added.append(name)
        return added

    def poll_code(self) -> list[str]:
        """Re-import the functions whose code changed since it was loaded; returns their names.

        Code that fails to import is tried once (until the next save): the function keeps
        serving what it served, as after a refused model version. An edited `function.toml`
        is reported once per edit; applying it takes a restart."""
        reloaded: list[str] = []
        for name, host in list(self.hosts.items()):
            code, declaration = _fingerprints(host.spec)
            if not declaration:
                # Removed (or renamed) while serving: nothing to re-import; said once.
                if name not in self._removed:
                    log.warning(
                        "function folder %s was removed: %s keeps serving what it loaded "
                        "until `aib dev` restarts",
                        host.spec.directory,
                        name,
                    )
                    self._removed.add(name)
                continue
            self._removed.discard(name)  # back, if it was: reloaded below if its code changed
            seen = self._code.setdefault(name, (code, declaration))
            if declaration != seen[1]:
                log.warning(
                    "%s: function.toml changed; restart `aib dev` to apply the declaration "
                    "(code changes are reloaded as they are saved)",
                    host.spec.directory / DECLARATION,
                )
            self._code[name] = (code, declaration)
            if code == seen[0]:
                continue
            _forget_bytecode(host.spec.directory, set(code) - set(seen[0]))
            try:
                host.load()
            except Exception:
                log.exception(
                    "function %s: the edited code does not load; the previous code keeps "
                    "serving (fix it and save again)",
                    name,
                )
                continue
            log.info("function %s reloaded: its code changed", name)
            reloaded.append(name)
        return reloaded

    def _add_function(self, spec: FunctionSpec) -> None:
        wired_at_start = ("queues", "events", "objects", "schedules", "endpoints")
        others = [t for t in wired_at_start if getattr(spec, t)]
        if others or spec.authorizer:
            raise ConfigError(
                f"it declares {', '.join(others) or 'authorizer = true'}: restart `aib dev` to "
                "wire it (a function added at run time gets its HTTP routes only)"
            )
        owners = {(r.method, r.path): f.name for f, r in self.catalog.routes()}
        for r in spec.routes:
            if (r.method, r.path) in owners:
                raise ConfigError(
                    f"route {r.method} {r.path} is already served by {owners[r.method, r.path]}"
                )
        if not self.isolate:
            check_environments([*self.catalog.functions, spec])
        for model in spec.models:
            self.pin(model)
        host = self._host(spec)
        self._code[spec.name] = _fingerprints(spec)
        host.load()
        # Hosts, then the catalog, then the generation: no reader sees a route without its host.
        self.hosts = {**self.hosts, spec.name: host}
        functions = sorted((*self.catalog.functions, spec), key=lambda f: f.name)
        self.catalog = self.catalog.model_copy(update={"functions": tuple(functions)})
        self.generation += 1
        routes = ", ".join(f"{r.method} {r.path}" for r in spec.routes) or "no routes"
        log.info("added function %s (%s)", spec.name, routes)

    def gateway(self) -> LiveGateway:
        """The local API Gateway in front of this runtime, following functions added later."""
        return LiveGateway(self)

    def watch(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.settings.model_poll_s):
                try:
                    self.poll_functions()
                except Exception:
                    log.exception("looking for new function folders failed")
                try:
                    self.poll_code()
                except Exception:
                    log.exception("looking for edited function code failed")
                try:
                    self.canaries.tick()
                except Exception:
                    log.exception("canary check failed")
                try:
                    self.poll_once()
                except Exception:
                    log.exception("model pointer check failed")
                try:  # so that `aib keys list` sees today's usage within a poll
                    self.access.limiter.flush()
                except Exception:
                    log.exception("writing API key usage failed")

        self._watcher = threading.Thread(target=loop, name="aib-model-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            # It flushes key usage into the store that `access.close()` closes below.
            self._watcher.join(timeout=30)
        for poller in getattr(self, "pollers", []):
            poller.stop()
        for part in ("scheduler", "watcher", "lifecycle", "bus", "checkpoints"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.stop()
        self.canaries.stop()
        for host in self.hosts.values():
            host.stop()
        if self.endpoints is not None:
            self.endpoints.stop()
        self.access.close()
        self.logs.close()

    def health(self) -> dict[str, Any]:
        # Endpoints: each server's URL, or why it is not there ("not built (make embeddings)").
        endpoints = {} if self.endpoints is None else {"endpoints": self.endpoints.health()}
        functions = []
        for h in self.hosts.values():
            entry: dict[str, Any] = {
                "name": h.spec.name,
                "routes": [f"{r.method} {r.path}" for r in h.spec.routes],
                "models": h.models,
                "init_ms": None if h.init_ms is None else round(h.init_ms, 1),
            }
            if h.loaded_at is None:  # its INIT failed at start (`start`): why
                entry["error"] = h.load_error or "not loaded"
            functions.append(entry)
        return {
            # degraded: a function's code did not load; every other one serves
            "status": "degraded" if any("error" in f for f in functions) else "ok",
            "state_dir": str(self.settings.state_dir),
            "uptime_s": round(time.time() - self.started_at, 1),
            "functions": functions,
            "models": {
                n: int(v) if (v := os.environ.get(model_version_env(n))) else None
                for n in self.catalog.model_names
            },
            **endpoints,
        }


class LiveGateway:
    """An ASGI app: `build_gateway` over the runtime's current functions, rebuilt when
    `poll_functions` adds one (routes, access, the merged OpenAPI documents)."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self._built: tuple[int, Any] | None = None
        self._lock = threading.Lock()

    def current(self) -> Any:
        """The gateway for the runtime's current generation of functions."""
        built = self._built
        if built is None or built[0] != self.runtime.generation:
            from aibackend.local.gateway import build_gateway

            with self._lock:
                rt = self.runtime
                generation = rt.generation
                built = self._built
                if built is None or built[0] != generation:
                    app = build_gateway(rt.catalog, rt.hosts, health=rt.health, access=rt.access)
                    built = self._built = (generation, app)
        return built[1]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.current()(scope, receive, send)


#: What a function folder's files looked like: (path, mtime_ns, size) of each.
Fingerprint = tuple[tuple[str, int, int], ...]


def _fingerprints(spec: FunctionSpec) -> tuple[Fingerprint, Fingerprint]:
    """(its `.py` files, its declaration): what `poll_code` compares."""
    folder = spec.directory
    code = []
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        try:
            st = path.stat()
        except OSError:  # removed between the listing and the stat: the next poll sees it
            continue
        code.append((str(path.relative_to(folder)), st.st_mtime_ns, st.st_size))
    try:
        st = (folder / DECLARATION).stat()
        declaration: Fingerprint = ((DECLARATION, st.st_mtime_ns, st.st_size),)
    except OSError:
        declaration = ()
    return tuple(code), declaration


def _forget_bytecode(folder: Path, changed: set[tuple[str, int, int]]) -> None:
    """Drop the cached bytecode of changed files: Python trusts a `.pyc` whose recorded source
    mtime (whole seconds) and size match, so a same-size edit within a second would otherwise
    import the previous code."""
    for relative, _, _ in changed:
        with contextlib.suppress(OSError, ValueError):
            Path(importlib.util.cache_from_source(str(folder / relative))).unlink()


#: What the platform refuses at a function's INIT, as opposed to its code failing to run.
_REFUSALS: tuple[type[Exception], ...] = (ModelLoadError, ConfigError)


def _refused_by_platform(e: Exception) -> bool:
    """Whether a load failed on a refusal (`_REFUSALS`), raised in this process or reported
    by an isolated worker (by its type's name)."""
    if isinstance(e, FunctionInitError):
        return e.error_type in {c.__name__ for c in _REFUSALS}
    return isinstance(e, _REFUSALS)

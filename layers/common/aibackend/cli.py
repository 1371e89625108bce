"""`aib`: the command line of the backend (local runtime, catalog, training, registry)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aibackend.argtypes import iso_time, positive_float, positive_int
from aibackend.auth.keys import KeyStore
from aibackend.auth.plans import DEFAULT_PLAN
from aibackend.catalog import SCOPE, Catalog, default_functions_dir, load_catalog
from aibackend.errors import AibError, ConfigError
from aibackend.ports import ModelRegistry

if TYPE_CHECKING:
    from aibackend.adapters.local_bus import LocalEventBus
from aibackend.settings import PlatformSettings


def _catalog(args: argparse.Namespace) -> Catalog:
    return load_catalog(Path(args.functions) if args.functions else default_functions_dir())


def cmd_functions(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    if args.json:
        print(json.dumps([f.model_dump(mode="json") for f in cat.functions], indent=2))
        return 0
    for f in cat.functions:
        print(f"{f.name}  ({f.runtime}, {f.architecture}, {f.memory_mb} MB, {f.timeout_s} s)")
        if f.description:
            print(f"  {f.description}")
        for r in f.routes:
            scopes = f" scopes={','.join(r.scopes)}" if r.scopes else ""
            print(f"  http  {r.method:6} {r.path}  [{r.access.value}{scopes}]")
        for q in f.queues:
            print(f"  queue  {q.queue}  (batch {q.batch_size}, dlq after {q.max_receive_count})")
            for e in q.events:
                print(f"    <- event  {e.bus}: {json.dumps(e.pattern)}")
        for e in f.events:
            print(f"  event  {e.bus}: {json.dumps(e.pattern)}")
        for o in f.objects:
            print(f"  object {o.bucket}: {o.prefix}*{o.suffix}")
        for sc in f.schedules:
            print(f"  every  {sc.expression}")
        for m in f.models:
            print(f"  model  {m}")
    return 0


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it is under it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def cmd_functions_new(args: argparse.Namespace) -> int:
    from aibackend.scaffold import Trigger, new_function, slug

    if (args.prefix or args.suffix) and not args.bucket:
        raise ConfigError("--prefix and --suffix go with --bucket")
    if args.scopes and not args.http:
        raise ConfigError("--scopes goes with --http")
    if args.batch and not args.event:
        raise ConfigError("--batch goes with --event SOURCE DETAIL_TYPE")
    if args.http:
        trigger = Trigger("http", scopes=tuple(args.scopes or ()))
    elif args.queue:
        trigger = Trigger("queue", queue=args.queue)
    elif args.event and args.batch:
        source, detail_type = args.event
        queue = f"{slug(args.name)}-events"
        trigger = Trigger("batch", queue=queue, source=source, detail_type=detail_type)
    elif args.event:
        trigger = Trigger("event", source=args.event[0], detail_type=args.event[1])
    elif args.schedule:
        trigger = Trigger("schedule", expression=args.schedule)
    else:
        trigger = Trigger("object", bucket=args.bucket, prefix=args.prefix, suffix=args.suffix)
    functions = Path(args.functions) if args.functions else default_functions_dir()
    tests = functions.parent / "tests"
    written = new_function(
        functions,
        args.name,
        trigger,
        description=args.description,
        tests_dir=None if args.no_test or not tests.is_dir() else tests / "functions",
    )
    for path in written:
        print(f"wrote {_shown(path)}")
    name = args.name
    test = next((p for p in written if p.name == f"test_{name}.py"), None)
    if test is not None:
        print(f"test it: .venv/bin/pytest {_shown(test)}")
    if trigger.kind == "http":
        token = (
            f'-H "Authorization: Bearer $(aib token --scopes {" ".join(trigger.scopes)})" '
            if trigger.scopes
            else ""
        )
        print(
            "a running `aib dev` serves it within 2 s; try:\n"
            f"  curl -s -X POST localhost:8000/v1/{slug(name)}/echo "
            f'-H "x-api-key: $(aib keys dev)" {token}'
            "-H 'content-type: application/json' -d '{\"text\": \"hello\"}'"
        )
    else:
        print(
            f"restart `aib dev` to wire its {trigger.kind} trigger; `aib logs {name} -f` follows it"
        )
    return 0


def _metrics(m: dict[str, float]) -> str:
    return ", ".join(
        f"{k}={int(v)}" if float(v).is_integer() else f"{k}={v:.4f}" for k, v in sorted(m.items())
    )


def _train(name: str, settings: PlatformSettings, args: argparse.Namespace | None = None) -> bool:
    from aibackend.training.local import train_local

    kwargs: dict[str, object] = {}
    if args is not None:
        if args.rows:
            kwargs["rows"] = args.rows
        if args.data is not None:
            kwargs["data"] = args.data
        kwargs["seed"] = args.seed
        kwargs["promote"] = not args.no_promote
    mv = train_local(name, settings, **kwargs)  # type: ignore[arg-type]
    print(
        f"registered {name} v{mv.version}: {_metrics(mv.card.metrics)} "
        f"({mv.stage}, {mv.approval.status})"
    )
    return mv.approval.status != "rejected"


def cmd_train(args: argparse.Namespace) -> int:
    return 0 if _train(args.model, PlatformSettings.from_env(), args) else 1


def cmd_models(args: argparse.Namespace) -> int:
    from aibackend.adapters import model_registry

    reg = model_registry(PlatformSettings.from_env())
    if args.action != "list" and not args.name:
        print(f"aib models {args.action} needs a model NAME", file=sys.stderr)
        return 2
    version = args.version_opt or args.version
    if args.action == "list":
        return _models_list(reg, args.name)
    if args.action == "show":
        return _models_show(reg, args.name, version)
    if args.action == "push":
        return _push(reg, args)
    actor = args.actor or _actor()
    if args.action == "canary":
        return _models_canary(reg, args, actor)
    if args.action == "promote":
        if version is None:
            print(
                "promote needs a VERSION: aib models promote NAME VERSION --reason ...",
                file=sys.stderr,
            )
            return 2
        if not args.reason:
            print("promote needs --reason (it goes into the audit trail)", file=sys.stderr)
            return 2
        return _models_promote(reg, args, version, actor)
    if args.action == "rollback":
        if not args.reason:
            print("rollback needs --reason (it goes into the audit trail)", file=sys.stderr)
            return 2
        before = reg.production(args.name)
        mv = reg.rollback(args.name, actor=actor, reason=args.reason)
        was = f"v{before.version}" if before else "none"
        print(f"{args.name}: rolled back {was} -> v{mv.version}")
        return 0
    return 2


def _models_promote(reg: ModelRegistry, args: argparse.Namespace, version: int, actor: str) -> int:
    """Direct, or a canary (`--canary`, `--shadow`); either publishes Model Version Approved."""
    from aibackend import canary_cli
    from aibackend.adapters import event_bus

    if args.shadow and PlatformSettings.from_env().adapters == "aws":
        print(
            "--shadow runs under `aib dev` only: on AWS a Lambda alias answers each request with "
            "one version, so the deployer cannot shadow; use --canary (CodeDeploy shifts a share "
            "of the traffic and rolls back on the alarms)",
            file=sys.stderr,
        )
        return 2
    if args.canary or args.shadow:
        event = canary_cli.start(
            reg,
            args.name,
            version,
            functions_dir=Path(args.functions) if args.functions else default_functions_dir(),
            shadow=args.shadow,
            percent=args.percent,
            window=args.window,
            actor=actor,
            reason=args.reason,
            force=args.force,
        )
    elif args.percent is not None or args.window is not None:
        print("--percent and --window go with --canary or --shadow", file=sys.stderr)
        return 2
    else:
        before = reg.production(args.name)
        mv = reg.promote(args.name, version, actor=actor, reason=args.reason, force=args.force)
        print(f"{args.name}: production -> v{mv.version}" + (" (forced)" if args.force else ""))
        if before is not None and before.version == mv.version:
            return 0
        event = canary_cli.approval_event(
            args.name,
            mv.version,
            before.version if before else None,
            mode="direct",
            actor=actor,
            reason=args.reason,
        )
    return 0 if canary_cli.publish(event_bus(PlatformSettings.from_env()), event) else 1


def _models_canary(reg: ModelRegistry, args: argparse.Namespace, actor: str) -> int:
    from aibackend import canary_cli

    if not args.abort:
        return canary_cli.show_status(
            reg, args.name, PlatformSettings.from_env().state_dir / "canary"
        )
    if not args.reason:
        print("canary --abort needs --reason (it goes into the audit trail)", file=sys.stderr)
        return 2
    return canary_cli.abort(reg, args.name, actor=actor, reason=args.reason)


def _actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def _key_metric(card_metrics: dict[str, float], name: str) -> str:
    from aibackend.training.gate import load_config

    key = load_config(name, default_functions_dir()).key_metric
    if key not in card_metrics:
        key = next(iter(sorted(card_metrics)), "")
    return f"{key}={card_metrics[key]:.4f}" if key else "-"


def _models_list(reg: ModelRegistry, name: str | None) -> int:
    names = [name] if name else reg.list_models()
    if not names:
        print("no models registered; train one with `aib train fraud`")
    for model in names:
        for v in reg.list_versions(model):
            mark = "*" if v.stage == "production" else " "
            when = f"{v.registered_at:%Y-%m-%d %H:%M}"
            print(
                f"{mark} {model} v{v.version}  {v.stage:10} {v.approval.status:8}  {when}  "
                f"{_key_metric(v.card.metrics, model)}"
            )
        if c := reg.canary(model):
            print(
                f"  {model}: {c.mode} of v{c.candidate} beside v{c.champion} ({c.percent}%): "
                f"`aib models canary {model}`"
            )
    return 0


def _models_show(reg: ModelRegistry, name: str, version: int | None) -> int:
    from aibackend.training.gate import describe

    version = version or (p.version if (p := reg.production(name)) else None)
    if version is None:
        versions = reg.list_versions(name)
        if not versions:
            print(f"model {name!r} is not registered", file=sys.stderr)
            return 1
        version = versions[-1].version
    mv = reg.get(name, version)
    print(f"{name} v{mv.version}: {mv.stage}, approval {mv.approval.status}", end="")
    print(f" by {mv.approval.by}: {mv.approval.reason}" if mv.approval.by else "")
    print("card:")
    print(mv.card.model_dump_json(indent=2))
    print("lineage:")
    lineage = mv.lineage.model_dump(mode="json")
    for key, value in lineage.items():
        print(f"  {key}: {json.dumps(value) if isinstance(value, dict) else value}")
    print("gate:" + ("" if mv.gate else " not run"))
    for line in describe(mv.gate) if mv.gate else ():
        print(f"  {line}")
    print("audit trail:")
    from aibackend.canary_cli import trail_evidence, trail_line

    for e in reg.history(name):
        print(f"  {trail_line(e)}")
        for line in trail_evidence(e):
            print(line)
    return 0


def _push(local: ModelRegistry, args: argparse.Namespace) -> int:
    """Publish a local version to the AWS registry and bucket (for a first deploy)."""
    import tempfile

    from aibackend.adapters import model_registry

    if not args.bucket:
        print("push needs --bucket (the AibModels stack output ModelBucketName)", file=sys.stderr)
        return 2
    version = args.version or (p.version if (p := local.production(args.name)) else None)
    if version is None:
        print(f"model {args.name!r} has no production version to push", file=sys.stderr)
        return 1
    remote = model_registry(
        PlatformSettings(adapters="aws", model_bucket=args.bucket, registry_table=args.table)
    )
    with tempfile.TemporaryDirectory() as tmp:
        mv = remote.register(local.download(args.name, version, Path(tmp)))
    print(f"pushed {args.name} local v{version} -> s3://{args.bucket}/{mv.prefix} as v{mv.version}")
    if args.promote:
        remote.set_production(args.name, mv.version)
        print(f"{args.name}: AWS production -> v{mv.version}")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke one function's handler with an event file, as Lambda would."""
    from aibackend.local.invoke import local_function

    # The event first: a typo in its path should not wait for the function's INIT.
    text = _read_file(args.event, "--event")
    try:
        event = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--event {args.event} is not valid JSON: {e}") from None
    with local_function(_catalog(args), args.function, PlatformSettings.from_env()) as host:
        print(json.dumps(host.invoke(event), indent=2))
    return 0


def _read_bytes(path: str, what: str) -> bytes:
    """A file the user named on the command line, or an error that says which and why."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what}: no file {path!r} (relative to {Path.cwd()})") from None
    except (IsADirectoryError, PermissionError) as e:
        raise ConfigError(f"{what}: cannot read {path!r}: {e}") from None


def _read_file(path: str, what: str) -> str:
    """`_read_bytes` as UTF-8 text."""
    try:
        return _read_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what}: {path!r} is not UTF-8 text: {e}") from None


def _read_arg(value: str, what: str = "argument") -> str:
    """A literal, `@file`, or `-` for standard input (like the AWS CLI's file:// and curl -d @)."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        return _read_file(value[1:], what)
    return value


def cmd_send(args: argparse.Namespace) -> int:
    from aibackend.adapters import queue_service

    bodies = [_read_arg(b, "body") for b in args.body]
    queue = queue_service(PlatformSettings.from_env()).get(args.queue)
    if args.lines:
        bodies = [line for b in bodies for line in b.splitlines() if line.strip()]
    ids: list[str] = []
    for i in range(0, len(bodies), 10):
        ids.extend(queue.send_batch(bodies[i : i + 10]))
    print(f"sent {len(ids)} message(s) to {args.queue}")
    return 0


def _failure_summary(body: str) -> str | None:
    """One line for a Lambda on-failure record (a `<function>-failures` message): why, and
    which event; None for any other body."""
    try:
        record = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or "requestContext" not in record:
        return None
    condition = (record.get("requestContext") or {}).get("condition", "?")
    response = record.get("responsePayload") or {}
    error = f"{response.get('errorType', '?')}: {response.get('errorMessage', '')}".strip()
    event = record.get("requestPayload")
    what = ""
    if isinstance(event, dict) and "detail-type" in event:
        what = f"{event.get('detail-type')} {event.get('id')} -- "
    return f"{what}{condition}, {error}"


def _attribute_reason(attributes: dict[str, Any]) -> str | None:
    """Why a message is in a DLQ, when its sender said so in message attributes: EventBridge
    for an event it could not deliver, a batch consumer for a message it rejected."""

    def value(name: str) -> str:
        a = attributes.get(name)
        return str(a.get("StringValue", "")) if isinstance(a, dict) else ""

    code, message = value("ERROR_CODE"), value("ERROR_MESSAGE")
    if not code and not message:
        return None
    return f"{code}: {message}" if code and message else code or message


def _show_queue(settings: PlatformSettings, name: str, limit: int, as_json: bool) -> int:
    from aibackend.adapters.local_queue import SqliteQueueService

    if settings.adapters != "local":
        raise ConfigError("`aib queues NAME` reads the local state folder (aib dev's queues)")
    with SqliteQueueService(settings.state_dir / "queues.db") as service:
        messages = service.get(name).peek(limit)
    if as_json:
        for m in messages:
            print(json.dumps({**dataclasses.asdict(m), "sent_at": _iso(m.sent_at)}))
        return 0
    if not messages:
        print(f"{name}: empty")
        return 0
    for m in messages:
        state = "visible" if m.visible else "in flight or delayed"
        print(f"{_iso(m.sent_at)}  {m.message_id}  received {m.receive_count}x, {state}")
        summary = _failure_summary(m.body)
        body = m.body if len(m.body) <= 300 else m.body[:300] + f"... ({len(m.body)} chars)"
        print(f"  {summary if summary is not None else body}")
        if reason := _attribute_reason(m.attributes):
            print(f"  why: {reason}")
    return 0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def cmd_queues(args: argparse.Namespace) -> int:
    from aibackend.adapters import queue_service

    if args.queue:
        return _show_queue(PlatformSettings.from_env(), args.queue, args.limit, args.json)
    rows = queue_service(PlatformSettings.from_env()).list()
    if not rows:
        print("no queues yet: `aib dev` creates the queues that functions declare")
        return 0
    print(f"{'queue':32} {'visible':>8} {'in flight':>10} {'delayed':>8}  dead-letter queue")
    for q in rows:
        print(
            f"{q.name:32} {q.visible:>8} {q.in_flight:>10} {q.delayed:>8}  "
            f"{q.dead_letter_queue or '-'}"
        )
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from aibackend.adapters import queue_service

    moved = queue_service(PlatformSettings.from_env()).redrive(args.dlq, to=args.to)
    print(f"moved {moved} message(s) from {args.dlq} back to {args.to or 'its source queue'}")
    return 0


def cmd_put_events(args: argparse.Namespace) -> int:
    from aibackend.adapters import event_bus
    from aibackend.ports import PutEvent

    try:
        detail = json.loads(_read_arg(args.detail, "--detail"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"--detail is not valid JSON: {e}") from None
    details = detail if isinstance(detail, list) else [detail]
    entries = [
        PutEvent(source=args.source, detail_type=args.detail_type, detail=d, bus=args.bus)
        for d in details
    ]
    bus = event_bus(PlatformSettings.from_env())
    failed = 0
    for i in range(0, len(entries), 10):
        result = bus.put_events(entries[i : i + 10])
        for event_id in result.event_ids:
            if event_id:
                print(event_id)
        for index, code, message in result.failures:
            failed += 1
            print(f"entry {i + index} refused: {code}: {message}", file=sys.stderr)
    return 1 if failed else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from aibackend.local.lock import require_serving
    from aibackend.simulate.run import simulate

    settings = PlatformSettings.from_env()
    if settings.adapters == "aws":
        print(
            "aib simulate measures through the local bus's records: run it against `aib dev` "
            "(AIB_ADAPTERS=local)",
            file=sys.stderr,
        )
        return 2
    # Its events would reach no consumer: every one counted lost as unrouted, a minute later.
    require_serving(settings.state_dir, "aib simulate")
    bus = _local_bus(settings)
    try:
        report = simulate(
            bus,
            bus.db_path,
            args.scenario,
            rate=args.rate,
            duration_s=args.duration,
            seed=args.seed,
            drain_timeout_s=args.drain_timeout,
            echo=None if args.json else lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        bus.close()
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
    return 1 if report.lost.total else 0


def cmd_put(args: argparse.Namespace) -> int:
    from aibackend.adapters import object_store

    settings = PlatformSettings.from_env()
    if settings.adapters == "local":
        # On AWS a bucket exists only if a declaration made CDK create it: a typo here would
        # make a new folder that no function watches.
        declared = {settings.model_bucket, *_catalog(args).bucket_names}
        if args.bucket not in declared:
            raise ConfigError(
                f"no function declares a bucket {args.bucket!r} (declared: "
                f"{', '.join(sorted(declared))}); add it to a function.toml's [resources] buckets"
            )
    data = _read_bytes(args.file, "file")
    info = object_store(args.bucket, settings).put(args.key, data)
    print(f"put s3://{args.bucket}/{args.key} ({info.size} bytes, etag {info.etag})")
    return 0


def _local_bus(settings: PlatformSettings) -> LocalEventBus:
    from aibackend.adapters import publish_only
    from aibackend.adapters.local_bus import LocalEventBus
    from aibackend.adapters.local_queue import SqliteQueueService

    return LocalEventBus(
        settings.state_dir / "events.db",
        deliver=publish_only,
        queues=SqliteQueueService(settings.state_dir / "queues.db"),
    )


def cmd_events_list(args: argparse.Namespace) -> int:
    events = _local_bus(PlatformSettings.from_env()).archived(
        limit=args.limit, bus=args.bus, source=args.source, detail_type=args.detail_type
    )
    for e in events:
        print(json.dumps(e))
    return 0


def cmd_events_schemas(args: argparse.Namespace) -> int:
    from aibackend.contracts.schemas import drift, write

    root = Path(args.out)
    if args.check:
        found = drift(root)
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print(
                "event contracts and their schema files differ: run `aib events schemas`",
                file=sys.stderr,
            )
        return 1 if found else 0
    written = write(root)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{root}: every event contract's schema file is up to date")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    since, until = args.since, args.until
    name = args.name or f"replay-{since:%Y%m%dT%H%M%S}"
    n = _local_bus(PlatformSettings.from_env()).replay(since, until, name=name)
    print(f"replaying {n} archived event(s); `aib dev` delivers them to today's rules")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from aibackend.local.lock import StateLock, check_port_free

    settings = PlatformSettings.from_env()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://{args.host}:{args.port}"
    # Before the models are trained and the functions loaded: refused at once, not a minute on.
    check_port_free(args.host, args.port)
    lock = StateLock(settings.state_dir)
    lock.acquire(base)
    try:
        return _serve(args, settings, base)
    finally:
        lock.release()


def _serve(args: argparse.Namespace, settings: PlatformSettings, base: str) -> int:
    import uvicorn

    from aibackend.local.runtime import LocalRuntime

    rt = LocalRuntime(_catalog(args), settings, isolate=args.isolate)
    # SIGTERM (a supervisor, `docker stop`, `kill`) must stop the runtime as Ctrl-C does:
    # uvicorn shuts down on it, then raises it again, and Python's default action would end the
    # process before the `finally` below, leaving `--isolate` workers orphaned.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if args.no_train:
        missing = rt.missing_models()
        if missing:
            print(f"no production version for {missing}; run `aib train <model>`", file=sys.stderr)
            return 1
    else:
        rt.ensure_models(lambda name: _train(name, settings))
    try:
        rt.start()
        rt.watch()
        app = rt.gateway()  # follows function folders added later (`aib model train`)
        mode = "isolated worker processes" if args.isolate else "one process"
        print(
            f"aib dev: {len(rt.hosts)} function(s) in {mode}, "
            f"state in {settings.state_dir.resolve()}"
        )
        for spec, r in rt.catalog.routes():
            scopes = f" {' '.join(r.scopes)}" if r.scopes else ""
            print(f"  {r.method:6} {base}{r.path}  -> {spec.name}  [{r.access}{scopes}]")
        triggered = [f.name for f in rt.catalog.functions if not f.routes and not f.authorizer]
        if triggered:
            print(f"  events, queues, objects, schedules -> {', '.join(triggered)} (aib functions)")
        print(f"  GET    {base}/health")
        print(f"  GET    {base}/dashboard  (monitoring plots; loopback clients only)")
        secret, created = rt.access.ensure_dev_key()
        made = "created" if created else "kept"
        print(f"\ndevelopment API key ({made}; `aib keys dev` prints it again): {secret}")
        keyed = [
            r
            for _, r in rt.catalog.routes()
            if r.method == "GET" and r.access == "api_key" and not r.path.endswith("openapi.json")
        ]
        if keyed:
            print(f"  curl -s {base}{keyed[0].path} -H 'x-api-key: {secret}'")
        if any(r.access == "token" for _, r in rt.catalog.routes()):
            print('  token routes also take: -H "Authorization: Bearer $(aib token --scopes ...)"')
        print()
        if args.isolate:
            # Functions run in the workers; what this process holds now (imports, the demo
            # models' training) stays, and the bus's dispatchers should not pause to walk it.
            from aibackend.collector import freeze_after_startup

            freeze_after_startup()
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        rt.stop()
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _key_store(args: argparse.Namespace) -> KeyStore:
    """The keys of this machine's `aib dev`, or (`--aws`) of the deployed stacks."""
    plans = _catalog(args).plans
    if args.aws:
        import boto3

        from aibackend.auth.aws import key_store_from_stacks

        return key_store_from_stacks(
            plans,
            data_stack=args.data_stack,
            api_stack=args.api_stack,
            cloudformation=boto3.client("cloudformation"),
            dynamodb=boto3.client("dynamodb"),
            apigateway=boto3.client("apigateway"),
        )
    from aibackend.auth.factory import local_key_store

    return local_key_store(PlatformSettings.from_env(), plans)


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_command == "dev":
        from aibackend.auth.local import LocalAccess

        access = LocalAccess(PlatformSettings.from_env(), _catalog(args).plans)
        try:
            print(access.ensure_dev_key()[0])
        finally:
            access.close()
        return 0
    store = _key_store(args)
    if args.keys_command == "create":
        key, secret = store.create(args.name, args.plan)
        print(f"created {key.key_id} ({key.name}, plan {key.plan}); the key, shown only now:")
        print(secret)
        return 0
    if args.keys_command == "revoke":
        key = store.revoke(args.key_id)
        when = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "?"
        print(f"revoked {key.key_id} ({key.name}) at {when}")
        return 0
    keys = store.list()
    if not keys:
        print("no API keys yet: `aib keys create NAME` (or start `aib dev` for a development key)")
        return 0
    usage: dict[str, int] = {}
    if not args.aws:
        usage = getattr(store, "usage", lambda day: {})(datetime.now(UTC).strftime("%Y-%m-%d"))
    print(f"{'key':12} {'name':20} {'plan':10} {'created (UTC)':20} {'today':>7}  status")
    for k in keys:
        status = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        today = str(usage.get(k.key_id, 0)) if not args.aws else "-"
        print(
            f"{k.key_id:12} {k.name[:20]:20} {k.plan:10} {k.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{today:>7}  {status}"
        )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from aibackend.auth.factory import dev_signing_key

    scopes = [s for part in args.scopes for s in part.replace(",", " ").split()]
    for scope in scopes:
        if not SCOPE.match(scope):
            print(f"aib token: scope {scope!r} must look like 'verb:object'", file=sys.stderr)
            return 2
    print(dev_signing_key(PlatformSettings.from_env()).issue(args.sub, scopes, ttl_s=args.ttl))
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    from aibackend.secrets import set_local_secret

    value = sys.stdin.read().rstrip("\n") if args.value == "-" else args.value
    path = set_local_secret(PlatformSettings.from_env(), args.name, value)
    print(f"secret {args.name!r} set for aib dev in {path} (on AWS: the SSM parameter it names)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aib", description=__doc__)
    p.add_argument("--functions", help="functions folder (default: ./functions)")
    p.add_argument(
        "--state-dir", type=Path, help="local state folder (default: $AIB_STATE_DIR or .aib)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dev", help="serve every function locally")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=int(os.environ.get("AIB_PORT", "8000")))
    d.add_argument(
        "--no-train", action="store_true", help="fail instead of training missing models"
    )
    d.add_argument("--log-level", default="info")
    d.add_argument(
        "--isolate",
        action="store_true",
        help="run each function in its own worker processes (a crash or hang kills only it)",
    )
    d.set_defaults(func=cmd_dev)

    f = sub.add_parser("functions", help="list functions and their triggers; `new` adds one")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_functions)
    fsub = f.add_subparsers(dest="functions_command", metavar="{new}")
    fn = fsub.add_parser(
        "new",
        help="write functions/NAME/ (declaration, handler, test) for one kind of trigger",
        description="Write functions/NAME/: function.toml, a handler that runs as written, and "
        "tests/functions/test_NAME.py. Exactly one trigger.",
    )
    fn.add_argument("name", help="folder, package and route name: lowercase, digits, _")
    kind = fn.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--http", action="store_true", help="an HTTP API under /v1/NAME (FastAPI + Mangum)"
    )
    kind.add_argument("--queue", metavar="QUEUE", help="consume an SQS queue (it owns it + DLQ)")
    kind.add_argument(
        "--event",
        nargs=2,
        metavar=("SOURCE", "DETAIL_TYPE"),
        help="an EventBridge rule on the bus `aib`, e.g. aib.shop 'Product Viewed'",
    )
    kind.add_argument("--schedule", metavar="EXPR", help="rate(5 minutes) or cron(0 6 * * ? *)")
    kind.add_argument("--bucket", metavar="BUCKET", help="Object Created in a bucket")
    fn.add_argument(
        "--scopes",
        nargs="+",
        metavar="SCOPE",
        help="with --http: the echo route also needs a bearer token with these (predict:orders)",
    )
    fn.add_argument(
        "--batch",
        action="store_true",
        help="with --event: a rule fills the queue NAME-events and the function gets its "
        "events in batches of up to 10 (for high rates)",
    )
    fn.add_argument("--prefix", default="", help="with --bucket: only keys under this prefix")
    fn.add_argument("--suffix", default="", help="with --bucket: only keys ending so")
    fn.add_argument("--description", default="", help="one line for function.toml")
    fn.add_argument("--no-test", action="store_true", help="write no tests/functions/test_NAME.py")
    fn.set_defaults(func=cmd_functions_new)

    t = sub.add_parser("train", help="train a model locally (SageMaker training contract)")
    t.add_argument("model")
    t.add_argument("--rows", type=int, default=0, help="training rows to generate")
    t.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="train on this CSV (.csv or .csv.gz) instead of generated data",
    )
    t.add_argument("--seed", type=int, default=7)
    t.add_argument("--no-promote", action="store_true", help="register without promoting")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("models", help="model registry")
    m.add_argument("action", choices=["list", "show", "promote", "rollback", "push", "canary"])
    m.add_argument("name", nargs="?")
    m.add_argument("version", nargs="?", type=int)
    m.add_argument("--version", dest="version_opt", type=int, help="show: this version")
    m.add_argument("--reason", help="promote, rollback: why (recorded in the audit trail)")
    m.add_argument(
        "--force", action="store_true", help="promote: a version the gate rejected (with --reason)"
    )
    m.add_argument("--actor", help="promote, rollback: who (default: your user name)")
    m.add_argument(
        "--canary", action="store_true", help="promote: serve it beside production first"
    )
    m.add_argument(
        "--shadow", action="store_true", help="promote: a canary whose answers are discarded"
    )
    m.add_argument(
        "--percent", type=int, help="promote --canary: share of requests (training.toml: 10)"
    )
    m.add_argument("--window", help="promote --canary: how long, e.g. 90s, 5m (training.toml)")
    m.add_argument(
        "--abort", action="store_true", help="canary: stop it now, production stays (--reason)"
    )
    m.add_argument("--bucket", help="push: the model bucket on AWS")
    m.add_argument("--table", default="aib-model-registry", help="push: registry table")
    m.add_argument("--promote", action="store_true", help="push: also set AWS production")
    m.set_defaults(func=cmd_models)

    q = sub.add_parser("send", help="send messages to a queue")
    q.add_argument("queue")
    q.add_argument("body", nargs="+", help="message body, @file or - for stdin")
    q.add_argument("--lines", action="store_true", help="one message per line (JSON Lines)")
    q.set_defaults(func=cmd_send)

    qs = sub.add_parser(
        "queues",
        help="queue depths: visible, in flight, dead-letter; with a name, its oldest messages",
    )
    qs.add_argument(
        "queue",
        nargs="?",
        help="show this queue's oldest messages without receiving them (a failure queue's "
        "reasons, a DLQ's messages)",
    )
    qs.add_argument("--limit", type=positive_int, default=10, help="messages to show")
    qs.add_argument("--json", action="store_true", help="one JSON object per message")
    qs.set_defaults(func=cmd_queues)

    r = sub.add_parser("redrive", help="move a dead-letter queue's messages back to its source")
    r.add_argument("dlq")
    r.add_argument("--to", help="destination queue (default: the DLQ's source queue)")
    r.set_defaults(func=cmd_redrive)

    pe = sub.add_parser("put-events", help="put events on the event bus")
    pe.add_argument("--source", required=True)
    pe.add_argument("--detail-type", required=True)
    pe.add_argument("--detail", required=True, help="JSON object (or a list), @file or -")
    pe.add_argument("--bus", default="aib")
    pe.set_defaults(func=cmd_put_events)

    sim = sub.add_parser(
        "simulate", help="put a realistic event stream on the bus of a running `aib dev`"
    )
    sim.add_argument("--scenario", choices=("payments", "iot", "shop", "mixed"), required=True)
    sim.add_argument("--rate", type=positive_float, default=500.0, help="events per second")
    sim.add_argument("--duration", type=positive_float, default=60.0, help="seconds of putting")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--drain-timeout", type=float, default=60.0, help="seconds to wait for the consumers"
    )
    sim.add_argument("--json", action="store_true", help="print the report as JSON")
    sim.set_defaults(func=cmd_simulate)

    po = sub.add_parser("put", help="put a file into a bucket (emits Object Created)")
    po.add_argument("bucket")
    po.add_argument("key")
    po.add_argument("file")
    po.set_defaults(func=cmd_put)

    ev = sub.add_parser("events", help="event archive")
    ev_sub = ev.add_subparsers(dest="events_command", required=True)
    rp = ev_sub.add_parser("replay", help="replay archived events in a time window")
    rp.add_argument(
        "--since", required=True, type=iso_time, help="ISO time, e.g. 2026-11-27T10:00:00+00:00"
    )
    rp.add_argument("--until", required=True, type=iso_time)
    rp.add_argument("--name", help="replay name (added to replayed events as replay-name)")
    rp.set_defaults(func=cmd_replay)
    ls = ev_sub.add_parser("list", help="most recent archived events, newest first")
    ls.add_argument("--limit", type=positive_int, default=10)
    ls.add_argument("--source")
    ls.add_argument("--detail-type")
    ls.add_argument("--bus")
    ls.set_defaults(func=cmd_events_list)
    sc = ev_sub.add_parser("schemas", help="write the event contracts' JSON Schema files")
    sc.add_argument("--out", default="events/schemas", help="folder (default: events/schemas)")
    sc.add_argument("--check", action="store_true", help="only say whether the files differ")
    sc.set_defaults(func=cmd_events_schemas)

    k = sub.add_parser("keys", help="API keys: create, list, revoke; `dev` prints the local one")
    k_sub = k.add_subparsers(dest="keys_command", required=True)
    kc = k_sub.add_parser("create", help="a new key on a plan (its secret is shown once)")
    kc.add_argument("name", help="who or what the key is for, e.g. checkout-service")
    kc.add_argument("--plan", default=DEFAULT_PLAN, help=f"usage plan (default {DEFAULT_PLAN})")
    kl = k_sub.add_parser("list", help="keys, plans, today's requests (local) and status")
    kr = k_sub.add_parser("revoke", help="revoke a key: refused from the next request on")
    kr.add_argument("key_id", help="the key's id (ak_...), from `aib keys list`")
    for sp in (kc, kl, kr):
        sp.add_argument("--aws", action="store_true", help="the deployed keys (boto3 credentials)")
        sp.add_argument("--data-stack", default="AibData", help="--aws: the data stack's name")
        sp.add_argument(
            "--api-stack",
            "--services-stack",  # its name before the API had a stack of its own
            dest="api_stack",
            default="AibApi",
            help="--aws: the name of the stack with the REST API's usage plans",
        )
    k_sub.add_parser("dev", help="print the local development key (made by `aib dev`)")
    k.set_defaults(func=cmd_keys)

    tk = sub.add_parser("token", help="a local development bearer token (JWT)")
    tk.add_argument(
        "--scopes", nargs="+", required=True, help="scopes, e.g. predict:fraud models:admin"
    )
    tk.add_argument("--sub", default="developer", help="the token's subject")
    tk.add_argument("--ttl", type=positive_int, default=3600, help="seconds until it expires")
    tk.set_defaults(func=cmd_token)

    se = sub.add_parser("secrets", help="local values of the secrets functions declare")
    se_sub = se.add_subparsers(dest="secrets_command", required=True)
    ss = se_sub.add_parser("set", help="set a secret's local value (state folder, mode 0600)")
    ss.add_argument("name", help="the name in a function.toml [secrets] table")
    ss.add_argument("value", help="the value, or - to read it from stdin (keeps it out of history)")
    ss.set_defaults(func=cmd_secrets)

    i = sub.add_parser("invoke", help="invoke a function's handler with an event file")
    i.add_argument("function")
    i.add_argument("--event", required=True, help="path to an event JSON (see events/)")
    i.set_defaults(func=cmd_invoke)
    from aibackend.embeddings.cli import register as register_embeddings

    register_embeddings(sub)  # `aib build embeddings`, `aib endpoints serve|push`
    from aibackend.byom.cli import register as register_byom

    register_byom(sub)  # `aib model train|import`: bring your own model
    from aibackend.pipeline.cli import register as register_pipeline

    register_pipeline(sub)  # `aib pipeline status [RUN] [--watch]`, `aib pipeline report`
    from aibackend.local.telemetry_cli import register as register_telemetry

    register_telemetry(sub)  # `aib logs FUNCTION [-f]`, `aib metrics`
    from aibackend.monitoring.cli import register as register_monitor

    register_monitor(sub)  # `aib monitor run [--model M] [--window W]`
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "state_dir", None):
        # Every subcommand reads its settings from the environment (`PlatformSettings.from_env`).
        os.environ["AIB_STATE_DIR"] = str(args.state_dir)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Mangum logs every request at INFO; the gateway's access log already does, cheaper.
    logging.getLogger("mangum").setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except AibError as e:
        print(f"aib: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())

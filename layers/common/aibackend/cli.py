"""`aib`: the command line of the backend (local runtime, catalog, training, registry)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aibackend.catalog import Catalog, default_functions_dir, load_catalog
from aibackend.errors import AibError
from aibackend.ports import ModelRegistry
from aibackend.settings import PlatformSettings


def _settings(args: argparse.Namespace) -> PlatformSettings:
    if getattr(args, "state_dir", None):
        os.environ["AIB_STATE_DIR"] = str(args.state_dir)
    return PlatformSettings.from_env()


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
        for m in f.models:
            print(f"  model {m}")
    return 0


def _metrics(m: dict[str, float]) -> str:
    return ", ".join(
        f"{k}={int(v)}" if float(v).is_integer() else f"{k}={v:.4f}" for k, v in sorted(m.items())
    )


def _train(name: str, settings: PlatformSettings, args: argparse.Namespace | None = None) -> None:
    from aibackend.training.local import train_local

    kwargs: dict[str, object] = {}
    if args is not None:
        if args.rows:
            kwargs["rows"] = args.rows
        kwargs["seed"] = args.seed
        kwargs["promote"] = not args.no_promote
    mv = train_local(name, settings, **kwargs)  # type: ignore[arg-type]
    print(
        f"registered {name} v{mv.version}: {_metrics(mv.card.metrics)}"
        + (" (production)" if kwargs.get("promote", True) else "")
    )


def cmd_train(args: argparse.Namespace) -> int:
    _train(args.model, _settings(args), args)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from aibackend.adapters import model_registry

    reg = model_registry(_settings(args))
    if args.action != "list" and not args.name:
        print(f"aib models {args.action} needs a model NAME", file=sys.stderr)
        return 2
    if args.action == "list":
        names = [args.name] if args.name else reg.list_models()
        if not names:
            print("no models registered; train one with `aib train fraud`")
        for name in names:
            prod = reg.production(name)
            for v in reg.list_versions(name):
                mark = "*" if prod and prod.version == v.version else " "
                when = f"{v.registered_at:%Y-%m-%d %H:%M}"
                print(f"{mark} {name} v{v.version}  {when}  {_metrics(v.card.metrics)}")
        return 0
    if args.action == "show":
        version = args.version or (p.version if (p := reg.production(args.name)) else None)
        if version is None:
            print(f"model {args.name!r} has no production version", file=sys.stderr)
            return 1
        print(reg.get(args.name, version).card.model_dump_json(indent=2))
        return 0
    if args.action == "push":
        return _push(reg, args)
    if args.action == "promote":
        if args.version is None:
            print("promote needs a VERSION", file=sys.stderr)
            return 2
        reg.set_production(args.name, args.version)
        print(f"{args.name}: production -> v{args.version}")
        return 0
    return 2


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
    from aibackend.local.host import FunctionHost
    from aibackend.local.runtime import LocalRuntime

    cat = _catalog(args)
    rt = LocalRuntime(cat, _settings(args))
    spec = cat.get(args.function)
    for m in spec.models:
        rt._pin(m)
    host = FunctionHost(spec)
    host.load()
    event = json.loads(Path(args.event).read_text(encoding="utf-8"))
    print(json.dumps(host.invoke(event), indent=2))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    import uvicorn

    from aibackend.local.gateway import build_gateway
    from aibackend.local.runtime import LocalRuntime

    settings = _settings(args)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    rt = LocalRuntime(_catalog(args), settings)
    if args.no_train:
        missing = rt.missing_models()
        if missing:
            print(f"no production version for {missing}; run `aib train <model>`", file=sys.stderr)
            return 1
    else:
        rt.ensure_models(lambda name: _train(name, settings))
    rt.start()
    rt.watch()
    app = build_gateway(rt.catalog, rt.hosts, health=rt.health)
    base = f"http://{args.host}:{args.port}"
    print(f"aib dev: {len(rt.hosts)} function(s), state in {settings.state_dir.resolve()}")
    for spec, r in rt.catalog.routes():
        print(f"  {r.method:6} {base}{r.path}  -> {spec.name}")
    print(f"  GET    {base}/health")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        rt.stop()
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
    d.set_defaults(func=cmd_dev)

    f = sub.add_parser("functions", help="list functions and their triggers")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_functions)

    t = sub.add_parser("train", help="train a model locally (SageMaker training contract)")
    t.add_argument("model")
    t.add_argument("--rows", type=int, default=0, help="training rows to generate")
    t.add_argument("--seed", type=int, default=7)
    t.add_argument("--no-promote", action="store_true", help="register without promoting")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("models", help="model registry")
    m.add_argument("action", choices=["list", "show", "promote", "push"])
    m.add_argument("name", nargs="?")
    m.add_argument("version", nargs="?", type=int)
    m.add_argument("--bucket", help="push: the model bucket on AWS")
    m.add_argument("--table", default="aib-model-registry", help="push: registry table")
    m.add_argument("--promote", action="store_true", help="push: also set AWS production")
    m.set_defaults(func=cmd_models)

    i = sub.add_parser("invoke", help="invoke a function's handler with an event file")
    i.add_argument("function")
    i.add_argument("--event", required=True, help="path to an event JSON (see events/)")
    i.set_defaults(func=cmd_invoke)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.func(args)
    except AibError as e:
        print(f"aib: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())

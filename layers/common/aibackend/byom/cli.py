"""`aib model ...`: bring your own model (`aib models ...` is the registry).

- `aib model train --csv FILE --target COLUMN [--name NAME] [--task auto|classification|regression]`
- `aib model import --onnx FILE --schema FILE [--name NAME]`

Both register the model, promote it to production and scaffold `functions/<name>/`, which a
running `aib dev` picks up within a few seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aibackend.byom import route_prefix
from aibackend.byom.scaffold import check_name, max_body_kb, name_from_path, scaffold_function
from aibackend.catalog import default_functions_dir, load_function
from aibackend.models.card import Feature, ModelCard
from aibackend.settings import PlatformSettings


def _functions_dir(args: argparse.Namespace) -> Path:
    return Path(args.functions) if getattr(args, "functions", None) else default_functions_dir()


def _metrics(card: ModelCard) -> str:
    def fmt(metrics: dict[str, float]) -> str:
        return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "rows")

    line = fmt(card.metrics) or "no metrics given"
    for name, baseline in card.baselines.items():
        line += f" (baseline {name}: {fmt(baseline)})"
    return line


def _example(feature: Feature) -> object:
    if feature.kind == "categorical":
        return feature.categories[0]
    return True if feature.kind == "boolean" else 1.0


def _serve(functions_dir: Path, card: ModelCard, command: str) -> None:
    folder, created = scaffold_function(functions_dir, card, command=command)
    prefix = route_prefix(card.name)
    state = "scaffolded" if created else "kept (it serves the new version)"
    print(f"function {folder} {state}:")
    predict = next((r for r in load_function(folder).routes if r.path == f"{prefix}/predict"), None)
    needed = max_body_kb(card)
    if predict is not None and predict.max_body_kb < needed:
        print(
            f"  note: {predict.method} {predict.path} accepts max_body_kb = {predict.max_body_kb}; "
            f"1,000 records of this version need up to {needed}: raise it in function.toml"
        )
    print(f"  GET  {prefix}/health          public")
    print(f"  POST {prefix}/predict         token with scope predict:{card.name}")
    print(f"  GET  {prefix}/card            api key")
    print(f"  GET  {prefix}/openapi.json    api key")
    body = json.dumps({f.name: _example(f) for f in card.features[:3]})
    print(
        "a running `aib dev` serves it within seconds (else start it); then:\n"
        f'  curl -s -X POST localhost:8000{prefix}/predict -H "x-api-key: $(aib keys dev)" \\\n'
        f'    -H "Authorization: Bearer $(aib token --scopes predict:{card.name})" \\\n'
        f"    -H 'content-type: application/json' -d '{body}'"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from aibackend.byom.training.columns import find_target
    from aibackend.byom.training.csvfile import read_header
    from aibackend.byom.training.local import train_csv
    from aibackend.errors import ConfigError

    functions_dir = _functions_dir(args)
    name = args.name or name_from_path(args.csv)
    check_name(name, functions_dir)
    if not args.csv.is_file():
        raise ConfigError(f"{args.csv}: no such file; pass the CSV to train on with --csv")
    find_target(read_header(args.csv), args.target)  # fail before a training run starts
    mv = train_csv(
        args.csv,
        name=name,
        target=args.target,
        task=args.task,
        seed=args.seed,
        settings=PlatformSettings.from_env(),
    )
    print(f"\n{name} v{mv.version} (production): {_metrics(mv.card)}")
    _serve(functions_dir, mv.card, "train")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from aibackend.byom.importer import import_model, read_schema

    functions_dir = _functions_dir(args)
    name = args.name or read_schema(args.schema).name or name_from_path(args.onnx)
    check_name(name, functions_dir)
    mv, notes = import_model(
        args.onnx, args.schema, name=name, settings=PlatformSettings.from_env()
    )
    print(f"registered {name} v{mv.version} (production) from {args.onnx}: {_metrics(mv.card)}")
    for note in notes:
        print(f"  note: {note}")
    _serve(functions_dir, mv.card, "import")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `aib model` to the `aib` parser's subcommands."""
    m = sub.add_parser(
        "model", help="bring your own model: train one from a CSV or import ONNX, and serve it"
    )
    m_sub = m.add_subparsers(dest="model_command", required=True)
    t = m_sub.add_parser(
        "train",
        help="train a model from a CSV, register it and scaffold its service",
        description="Infers each column's role, trains gradient-boosted trees with the "
        "preprocessing exported inside the ONNX graph, registers and promotes the model, and "
        "scaffolds functions/<name>/ (the generic model service).",
    )
    t.add_argument("--csv", type=Path, required=True, help="the data, with a header row")
    t.add_argument("--target", required=True, help="the column to predict")
    t.add_argument("--name", help="model and function name (default: from the file name)")
    t.add_argument(
        "--task",
        choices=["auto", "classification", "regression"],
        default="auto",
        help="auto: classification for text or at most 10 distinct numbers, else regression",
    )
    t.add_argument("--seed", type=int, default=7, help="holdout split and training seed")
    t.set_defaults(func=cmd_train)
    i = m_sub.add_parser(
        "import",
        help="register an ONNX model trained elsewhere and scaffold its service",
        description="Checks the graph against the schema file (inputs, output kind), runs a "
        "smoke prediction, registers and promotes the model, and scaffolds functions/<name>/.",
    )
    i.add_argument("--onnx", type=Path, required=True, help="the ONNX graph")
    i.add_argument("--schema", type=Path, required=True, help="JSON: inputs, output kind (labels)")
    i.add_argument("--name", help="model name (default: the schema's name, else the file's)")
    i.set_defaults(func=cmd_import)

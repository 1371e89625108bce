"""`functions/<name>/` for a bring-your-own model: its declaration and a two-line handler.

The model name is also the function's name, its Python package and its route segment, so it
is checked before anything is trained or written (`check_name`). The folder is written so that
a running `aib dev` never sees half of it: `function.toml`, which makes a folder a function,
is renamed into place last.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

from aibackend.byom import route_prefix
from aibackend.catalog import DECLARATION, load_catalog, load_function
from aibackend.errors import ConfigError
from aibackend.models.card import ModelCard

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME = 48
#: What marks a handler as the generic model service's.
MARK = "aibackend.byom.service"
#: Records per request the service accepts (`api.MAX_RECORDS`), for the body limit.
_RECORDS = 1000

HANDLER = '''"""Lambda entry point of model {name}: the generic model service, scaffolded by
`aib model {command}`. The model loads at INIT; the request schema comes from its card."""

from aibackend.byom.service import build_handler

handler = build_handler("{name}")
'''

DECLARATION_TEMPLATE = """# Scaffolded by `aib model {command}`: the generic model service
# (aibackend.byom.service) serving registry model "{name}". Retrain with the same command;
# edit routes, memory and access here as for any function.
description = "Serves the {task} model {name} (bring your own model)."
handler = "handler.handler"
# 1,769 MB buys one full vCPU: single-threaded onnxruntime runs at the CPU share memory buys.
memory_mb = 1769
timeout_s = 10
models = ["{name}"]

[[routes]]
method = "GET"
path = "{prefix}/health"
access = "public"

# One record or {{"records": [...]}} with up to 1,000. max_body_kb: 1,000 records of this
# model's features at their longest (numbers as 24 characters, categories as the longest
# known), twice over for whitespace.
[[routes]]
method = "POST"
path = "{prefix}/predict"
access = "token"
scopes = ["predict:{name}"]
max_body_kb = {max_body_kb}

[[routes]]
method = "GET"
path = "{prefix}/card"
access = "api_key"

[[routes]]
method = "GET"
path = "{prefix}/openapi.json"
access = "api_key"
"""


def name_from_path(path: Path) -> str:
    """A model name from a file name: `Churn Data 2024.csv` -> `churn_data_2024`."""
    stem = path.name.split(".")[0].lower()
    name = re.sub(r"[^a-z0-9]+", "_", stem)
    name = re.sub(r"^[0-9_]+", "", name)[:MAX_NAME].strip("_")
    if not name:
        raise ConfigError(
            f"cannot make a model name from {path.name!r}: pass --name NAME (lowercase letters, "
            "digits and _, starting with a letter)"
        )
    return name


def is_generic_service(folder: Path) -> bool:
    """Whether `folder` holds a function scaffolded for the generic model service."""
    handler = folder / "handler.py"
    return handler.is_file() and MARK in handler.read_text(encoding="utf-8")


def shadowed_module(name: str, functions_dir: Path) -> str | None:
    """Where an importable module of this name lives, if a function package would clash."""
    if name in sys.stdlib_module_names:
        return "the standard library"
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:  # nothing, or a namespace package (a plain folder)
        return None
    origin = Path(spec.origin).resolve()
    if functions_dir.resolve() in origin.parents:
        return None
    if origin.name == "__init__.py" and (origin.parent / "function.toml").is_file():
        # A function of another functions folder that this process imported earlier (a test
        # suite's runtimes): no library a new package here would hide.
        return None
    return str(origin)


def check_identifier(name: str, what: str, names: str) -> None:
    """Refuse a `what` name that cannot be a function's folder, package and route segment."""
    if not NAME.match(name) or len(name) > MAX_NAME:
        raise ConfigError(
            f"{what} name {name!r}: use up to {MAX_NAME} lowercase letters, digits and _, "
            f"starting with a letter ({names})"
        )


def check_not_shadowing(name: str, functions_dir: Path, retry: str) -> None:
    """Refuse a function package name that another importable module already has."""
    shadowed = shadowed_module(name, functions_dir)
    if shadowed:
        raise ConfigError(
            f"{name!r} is also a Python module ({shadowed}): as the package functions/{name} "
            f"it would shadow it; {retry}"
        )


def check_name(name: str, functions_dir: Path) -> None:
    """Refuse a name that cannot be a function, or whose model or function belongs to others."""
    check_identifier(name, "model", "it names the function, its package and its routes")
    from aibackend.training.local import TRAINABLE

    if name in TRAINABLE:
        raise ConfigError(f"{name!r} is a built-in model (`aib train {name}`); pick another --name")
    check_not_shadowing(name, functions_dir, "pick another --name")
    if not functions_dir.is_dir():
        return
    others = [
        f.name for f in load_catalog(functions_dir).functions if name in f.models and f.name != name
    ]
    if others:
        raise ConfigError(
            f"model {name!r} is served by {', '.join(others)}: a new model of that name would "
            "replace theirs; pick another --name"
        )
    folder = functions_dir / name
    if folder.exists() and not is_generic_service(folder):
        raise ConfigError(
            f"{folder} exists and is not a generic model service; pick another --name"
        )


def max_body_kb(card: ModelCard) -> int:
    """A predict route's body limit fitting 1,000 records of the card's features, rounded up
    to 64 KiB and kept within API Gateway's 10 MiB."""
    per_record = 2
    for f in card.features:
        longest = max((len(json.dumps(c)) for c in f.categories), default=0)
        per_record += len(json.dumps(f.name)) + 2 + max(24, longest)
    kib = math.ceil(2 * per_record * _RECORDS / 1024)
    return min(10_240, max(64, math.ceil(kib / 64) * 64))


def scaffold_function(functions_dir: Path, card: ModelCard, *, command: str) -> tuple[Path, bool]:
    """Write `functions/<model>/` for the generic service; returns (folder, created). An
    existing generic-service folder is left as it is (it serves the new version as well)."""
    folder = functions_dir / card.name
    ours = is_generic_service(folder)
    if folder.exists() and not ours and any(folder.iterdir()):
        raise ConfigError(f"{folder} exists and is not a generic model service; pick another name")
    if ours and (folder / DECLARATION).is_file():
        return folder, False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("", encoding="utf-8")
    (folder / "handler.py").write_text(
        HANDLER.format(name=card.name, command=command), encoding="utf-8"
    )
    staged = folder / f".{DECLARATION}.tmp"
    staged.write_text(
        DECLARATION_TEMPLATE.format(
            name=card.name,
            command=command,
            task=card.task.replace("_", " "),
            prefix=route_prefix(card.name),
            max_body_kb=max_body_kb(card),
        ),
        encoding="utf-8",
    )
    staged.replace(folder / DECLARATION)
    load_function(folder)  # the scaffold must be a valid declaration, or this is a bug
    return folder, True

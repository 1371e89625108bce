"""`functions/training.toml`: one file, read by the validation gate (`[gate.<model>]`), the
training pipeline (`[pipeline.<model>]`), the retraining trigger (`[retrain.<model>]`) and the
local canary (`[canary.<model>]`).

Outside `aibackend.training` (which the Lambda layer leaves out) because the retraining trigger
reads it on Lambda too. Errors name the file and the key, and say what is wrong.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from aibackend.errors import ConfigError

CONFIG_FILE = "training.toml"
M = TypeVar("M", bound=BaseModel)


def config_path(functions_dir: Path) -> Path:
    return functions_dir / CONFIG_FILE


def sections(functions_dir: Path, table: str) -> dict[str, Any]:
    """The `[<table>.<model>]` sections of the file by model; {} when the file or the table is
    absent."""
    path = config_path(functions_dir)
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    found = doc.get(table, {})
    if not isinstance(found, dict):
        raise ConfigError(f"{path}: [{table}] must be a table of [{table}.<model>] tables")
    return found


def validated(model: type[M], section: Mapping[str, Any], *, key: str, path: Path) -> M:
    """`section` as `model`, or a `ConfigError` naming each bad key under `key`."""
    try:
        return model.model_validate(section)
    except ValidationError as e:
        problems = "; ".join(
            f"{key}.{'.'.join(map(str, err['loc']))}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        )
        raise ConfigError(f"{path}: {problems}") from e


def section_of(model: type[M], functions_dir: Path, table: str, name: str) -> M:
    """`[<table>.<name>]` as `model`, its defaults when the file or the section is absent."""
    section = sections(functions_dir, table).get(name)
    if section is None:
        return model()
    return validated(model, section, key=f"{table}.{name}", path=config_path(functions_dir))

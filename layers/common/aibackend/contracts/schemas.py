"""The contracts as JSON Schema files, `events/schemas/<kebab-detail-type>/v<N>.json`, for
producers outside this code base. Generated from the models (`aib events schemas`); the check
(`aib events schemas --check`, and a test) fails when the committed files differ."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aibackend.contracts.base import Detail, contracts

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def kebab(detail_type: str) -> str:
    """`Transaction Created` -> `transaction-created`."""
    return re.sub(r"[^a-z0-9]+", "-", detail_type.lower()).strip("-")


def relative_path(model: type[Detail]) -> Path:
    return Path(kebab(model.detail_type)) / f"v{model.version}.json"


def json_schema(model: type[Detail]) -> dict[str, Any]:
    """The detail's JSON Schema, with the detail-type and version it belongs to."""
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": DIALECT,
        "$id": f"aib:events/{relative_path(model).as_posix()}",
        "x-detail-type": model.detail_type,
        "x-schema-version": model.version,
        **schema,
    }


def rendered() -> dict[Path, str]:
    """Every contract's file, relative to the schemas folder, as it should read."""
    return {
        relative_path(model): json.dumps(json_schema(model), indent=2, ensure_ascii=False) + "\n"
        for versions in contracts().values()
        for model in versions.values()
    }


def write(root: Path) -> list[Path]:
    """Write the files that are missing or differ; returns them."""
    written = []
    for rel, text in rendered().items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def drift(root: Path) -> list[str]:
    """What differs between `root` and the models, one line per file (empty: in sync)."""
    expected = rendered()
    out = []
    for rel, text in sorted(expected.items()):
        path = root / rel
        if not path.is_file():
            out.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            out.append(f"{path}: differs from {rel.parent.name} v{rel.stem[1:]}'s model")
    for path in sorted(root.glob("*/v*.json")):
        if path.relative_to(root) not in expected:
            out.append(f"{path}: no contract has this detail-type and version")
    return out

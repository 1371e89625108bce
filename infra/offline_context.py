"""CDK context for a synth without trained models, Docker or an AWS account (CI, the tests):
bundling off and every model the catalog serves pinned to one version.

    CDK_CONTEXT_JSON="$(python -m infra.offline_context)" python app.py
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aibackend.catalog import load_catalog
from aibackend.embeddings.endpoints import endpoint_spec


def offline_context(functions_dir: Path, version: int = 1) -> dict[str, Any]:
    """No stack bundled; every model of a function (and of an endpoint a function calls) at
    `version`, so that every stack, AibEndpoints included, is synthesized and checked."""
    catalog = load_catalog(functions_dir)
    endpoint_models = {endpoint_spec(e).model for f in catalog.functions for e in f.endpoints}
    models = sorted({*catalog.model_names, *endpoint_models})
    return {
        "aws:cdk:bundling-stacks": [],
        **{f"model:{m}:version": str(version) for m in models},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.offline_context", description=__doc__)
    parser.add_argument("--functions", type=Path, default=Path("functions"))
    parser.add_argument("--version", type=int, default=1, help="the version every model gets")
    args = parser.parse_args(argv)
    print(json.dumps(offline_context(args.functions, args.version)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""CDK entry point: `cdk synth` / `cdk deploy` run this (see cdk.json), or run it directly:

.venv/bin/python app.py                                   # writes cdk.out/
CDK_CONTEXT_JSON='{"model:fraud:version": "3"}' .venv/bin/python app.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

try:
    from infra.application import build_app
except ModuleNotFoundError as e:  # cdk.json runs `python3`: usually a missing venv
    sys.exit(
        f"app.py: {e.name} is not importable by {sys.executable}.\n"
        "Run cdk with the project's virtual environment active (`source .venv/bin/activate`), "
        "or install the synth extras: pip install -e '.[infra]'"
    )


def main() -> int:
    # The CLI sets CDK_OUTDIR; a direct run writes where the CLI would.
    built = build_app(ROOT, outdir=os.environ.get("CDK_OUTDIR", str(ROOT / "cdk.out")))
    built.app.synth()
    if built.unresolved and "CDK_OUTDIR" not in os.environ:
        # The CLI prints error annotations and refuses to deploy the groups serving these
        # models; a direct run must say it.
        for model, error in sorted(built.unresolved.items()):
            print(f"error: model {model}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

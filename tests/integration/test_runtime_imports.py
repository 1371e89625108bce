"""Every function's handler imports, and runs its INIT, with only what Lambda gives it: its own
folder, the `common` layer, the `api` layer, the `ml` layer when it gets one, and the runtime's
boto3, each installed from the layer's requirements file into its own folder. The interpreter
runs with `-I -S` (no environment, no user or site packages: nothing from the development
virtualenv), so an import that works here only because of a dev or training dependency fails.

Layers are installed for this machine's Python (the deployed ones are built for Lambda's by
infra/bundling.py from the same pinned files) under `build/layer-sites/`, named by the hash of
their requirements, so a second run reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import pytest

from aibackend.catalog import FunctionSpec, load_catalog
from aibackend.local.runtime import LocalRuntime
from tests.support import FUNCTIONS, ROOT, running_runtime

pytestmark = pytest.mark.slow

SITES = ROOT / "build" / "layer-sites"
#: Training-side packages no deployed function may import (too big for Lambda, and training
#: must not share code paths with inference).
TRAINING_ONLY = ("sklearn", "skl2onnx", "torch", "onnx", "sentence_transformers", "pandas")

IMPORT = """
import importlib, json, sys
sys.path[:0] = {paths!r}
module = importlib.import_module({module!r})
handler = getattr(module, {attr!r}, None)
loaded = sorted({{m.split(".")[0] for m in sys.modules}})
print(json.dumps({{"callable": callable(handler), "top_level_modules": loaded}}))
"""


def _site(name: str, requirements: str) -> Path:
    """`pip install --target` of `requirements`, once per distinct requirements text."""
    digest = hashlib.sha256(requirements.encode()).hexdigest()[:16]
    site = SITES / f"{name}-{digest}-py{sys.version_info.major}{sys.version_info.minor}"
    if (site / ".complete").is_file():
        return site
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    reqs = site.with_suffix(".txt")
    reqs.write_text(requirements)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--only-binary=:all:"),
            *("--no-compile", "--target", str(site), "-r", str(reqs)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"installing the {name} layer failed:\n{done.stderr[-3000:]}"
    (site / ".complete").touch()
    return site


@pytest.fixture(scope="module")
def layer_sites() -> dict[str, Path]:
    return {
        "api": _site("api", (ROOT / "layers" / "api" / "requirements.txt").read_text()),
        "ml": _site("ml", (ROOT / "layers" / "ml" / "requirements.txt").read_text()),
        # The Lambda Python runtime provides boto3; the version this project is tested with.
        "runtime": _site("runtime", f"boto3=={version('boto3')}\n"),
    }


@pytest.fixture(scope="module")
def runtime(
    project_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRuntime]:
    """A runtime over the project's functions: the environment each function's INIT reads."""
    state = tmp_path_factory.mktemp("runtime-imports") / "state"
    with running_runtime(FUNCTIONS, state, seed_state=project_state, sources=False) as rt:
        yield rt


def _asset(spec: FunctionSpec, root: Path) -> Path:
    """The function's code asset as CDK packages it: its own folder under an empty root."""
    shutil.copytree(
        spec.directory, root / spec.package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return root


def _import_isolated(
    spec: FunctionSpec, sites: dict[str, Path], asset_root: Path
) -> subprocess.CompletedProcess[str]:
    paths = [str(asset_root), str(ROOT / "layers" / "common"), str(sites["api"])]
    if spec.models or "ml" in spec.layers:
        paths.append(str(sites["ml"]))
    paths.append(str(sites["runtime"]))
    module, attr = spec.lambda_handler.rsplit(".", 1)
    env = {**os.environ, **spec.environment, "POWERTOOLS_SERVICE_NAME": spec.name}
    return subprocess.run(
        [
            getattr(sys, "_base_executable", sys.executable),
            *("-I", "-S", "-c", IMPORT.format(paths=paths, module=module, attr=attr)),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=asset_root,
        timeout=120,
        check=False,
    )


def test_every_handler_imports_with_only_its_lambda_layers(
    runtime: LocalRuntime, layer_sites: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN every declared function, packaged as CDK packages it, and its layers installed
    specs = load_catalog(FUNCTIONS).functions
    assets = {s.name: _asset(s, tmp_path / s.name) for s in specs}
    # WHEN each handler module is imported (INIT included) by an isolated interpreter
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(
            zip(
                [s.name for s in specs],
                pool.map(lambda s: _import_isolated(s, layer_sites, assets[s.name]), specs),
                strict=True,
            )
        )
    # THEN every one imports and exposes a callable handler
    failed = {n: p.stderr.strip().splitlines()[-3:] for n, p in done.items() if p.returncode}
    assert failed == {}, f"handlers that do not import with their layers alone: {failed}"
    results = {n: json.loads(p.stdout.strip().splitlines()[-1]) for n, p in done.items()}
    assert all(r["callable"] for r in results.values()), results
    # AND none of them loaded a training library
    training = {
        n: sorted(set(r["top_level_modules"]) & set(TRAINING_ONLY)) for n, r in results.items()
    }
    assert {n: t for n, t in training.items() if t} == {}


def test_an_import_of_a_dev_only_package_fails_under_the_same_isolation(
    layer_sites: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN a function whose handler imports scikit-learn (installed in the dev virtualenv)
    pkg = tmp_path / "leaky"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "handler.py").write_text(
        "import sklearn\n\n\ndef handler(event, context):\n    return 1\n"
    )
    (pkg / "function.toml").write_text('handler = "handler.handler"\n')
    spec = load_catalog(tmp_path).functions[0]
    # WHEN it is imported the way the test above imports every function
    done = _import_isolated(spec, layer_sites, tmp_path)
    # THEN it fails: the check can tell a handler that depends on the dev environment
    assert done.returncode != 0 and "No module named 'sklearn'" in done.stderr

"""The Lambda layers every function is assembled from.

- `common`: the `aibackend` package (pure Python, so one layer fits every runtime and
  architecture), without `training/`: training code never ships to Lambda.
- `api`: pydantic, FastAPI, Mangum, Powertools (`layers/api/requirements.txt`).
- `ml`: onnxruntime, numpy and datasketches (`layers/ml/requirements.txt`).

`api` and `ml` hold compiled wheels (`cp312-...-aarch64.so`), which load only on the runtime
and architecture they were built for, so they are built per `Platform`, on first use.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.bundling import Platform, package_layer_bundling, pip_layer_bundling

#: What the common layer leaves out of `aibackend`.
COMMON_EXCLUDES = ("training", "__pycache__", "*.pyc")

_RUNTIMES = {r.name: r for r in (lambda_.Runtime.PYTHON_3_12, lambda_.Runtime.PYTHON_3_13)}
_ARCHITECTURES = {a.name: a for a in (lambda_.Architecture.ARM_64, lambda_.Architecture.X86_64)}


def runtime(name: str) -> lambda_.Runtime:
    return _RUNTIMES[name]


def architecture(name: str) -> lambda_.Architecture:
    return _ARCHITECTURES[name]


class Layers(Construct):
    """Attributes: `common`; `api(platform)` and `ml(platform)` return one layer per platform."""

    def __init__(self, scope: Construct, construct_id: str, *, layers_dir: Path) -> None:
        super().__init__(scope, construct_id)
        self._layers_dir = layers_dir
        self._built: dict[tuple[str, Platform], lambda_.LayerVersion] = {}
        package = layers_dir / "common" / "aibackend"
        self.common = lambda_.LayerVersion(
            self,
            "Common",
            description="aibackend shared library (no training code)",
            compatible_runtimes=list(_RUNTIMES.values()),
            compatible_architectures=list(_ARCHITECTURES.values()),
            code=lambda_.Code.from_asset(
                str(layers_dir / "common"),
                # Only the package, minus training: these also keep them out of the asset hash.
                exclude=["*", "!aibackend", "!aibackend/**"]
                + [f"aibackend/**/{p}" for p in COMMON_EXCLUDES],
                bundling=package_layer_bundling(package, COMMON_EXCLUDES),
            ),
        )

    def api(self, platform: Platform) -> lambda_.LayerVersion:
        return self._requirements_layer("api", "FastAPI, Mangum, pydantic, Powertools", platform)

    def ml(self, platform: Platform) -> lambda_.LayerVersion:
        return self._requirements_layer("ml", "onnxruntime, numpy, datasketches", platform)

    def _requirements_layer(
        self, name: str, contents: str, platform: Platform
    ) -> lambda_.LayerVersion:
        key = (name, platform)
        if key not in self._built:
            folder = self._layers_dir / name
            suffix = platform.runtime.replace("python", "Py").replace(".", "")
            self._built[key] = lambda_.LayerVersion(
                self,
                f"{name.capitalize()}{suffix}{platform.architecture.capitalize().replace('_', '')}",
                description=f"{contents} for {platform.runtime} {platform.architecture}",
                compatible_runtimes=[runtime(platform.runtime)],
                compatible_architectures=[architecture(platform.architecture)],
                code=lambda_.Code.from_asset(
                    str(folder),
                    exclude=["*", "!requirements.txt"],
                    bundling=pip_layer_bundling(folder / "requirements.txt", platform),
                ),
            )
        return self._built[key]

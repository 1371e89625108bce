"""Local (Docker-free) bundling of the Lambda layers.

`cdk synth` runs these on the developer's machine; the Docker image in `BundlingOptions` is a
placeholder CDK requires and never pulls, because `try_bundle` either succeeds or raises.
Tests skip bundling altogether with the context `aws:cdk:bundling-stacks=[]`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii

#: pip resolves `--platform` tags literally: a wheel tagged manylinux_2_17 is not picked for
#: manylinux_2_28 unless that tag is listed too. onnxruntime's aarch64 wheels are 2_28 only;
#: pydantic-core's are 2_17 only. Lambda's Amazon Linux 2023 has glibc 2.34: both load.
_MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
#: Build images that match Lambda's; named only because CDK needs an image for bundling.
_PLACEHOLDER_IMAGE = "public.ecr.aws/sam/build-{runtime}:latest-{arch}"


@dataclass(frozen=True)
class Platform:
    """What a layer's compiled wheels are built for: a Lambda runtime and architecture."""

    runtime: str  # "python3.12"
    architecture: str  # "arm64"

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")

    @property
    def pip_platforms(self) -> tuple[str, ...]:
        return tuple(f"{tag}_{_ARCH[self.architecture]}" for tag in _MANYLINUX)


def pip_install_args(requirements: str, target: str, platform: Platform) -> list[str]:
    """`pip install` arguments that fetch binary wheels for Lambda, never for this machine."""
    args = ["install", "--quiet", "--no-compile", "--only-binary=:all:", "--implementation", "cp"]
    for tag in platform.pip_platforms:
        args += ["--platform", tag]
    args += ["--python-version", platform.python_version, "--target", target, "-r", requirements]
    return args


@jsii.implements(cdk.ILocalBundling)
class PipInstallLayer:
    """Installs a requirements file into `<output>/python` with this interpreter's pip."""

    def __init__(self, requirements: Path, platform: Platform) -> None:
        self.requirements = requirements
        self.platform = platform

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_: Any) -> bool:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            *pip_install_args(str(self.requirements), f"{output_dir}/python", self.platform),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"bundling {self.requirements} for {self.platform.runtime}/"
                f"{self.platform.architecture} failed (pip exit {done.returncode}):\n"
                f"{done.stderr[-4000:]}"
            )
        return True


@jsii.implements(cdk.ILocalBundling)
class CopyPackageLayer:
    """Copies a pure-Python package to `<output>/python/<name>`, leaving out what never ships."""

    def __init__(self, package_dir: Path, ignore: Sequence[str]) -> None:
        self.package_dir = package_dir
        self.ignore = tuple(ignore)

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_: Any) -> bool:
        target = Path(output_dir) / "python" / self.package_dir.name
        shutil.copytree(self.package_dir, target, ignore=shutil.ignore_patterns(*self.ignore))
        return True


def pip_layer_bundling(requirements: Path, platform: Platform) -> cdk.BundlingOptions:
    image = _PLACEHOLDER_IMAGE.format(runtime=platform.runtime, arch=platform.architecture)
    # The command is what the image would run; it also feeds the asset hash, so changing a
    # pip flag re-bundles the layer.
    command = [
        "bash",
        "-c",
        "pip "
        + " ".join(
            pip_install_args(f"/asset-input/{requirements.name}", "/asset-output/python", platform)
        ),
    ]
    return cdk.BundlingOptions(
        image=cdk.DockerImage.from_registry(image),
        command=command,
        local=PipInstallLayer(requirements, platform),
    )


def package_layer_bundling(package_dir: Path, ignore: Sequence[str]) -> cdk.BundlingOptions:
    return cdk.BundlingOptions(
        image=cdk.DockerImage.from_registry(
            _PLACEHOLDER_IMAGE.format(runtime="python3.12", arch="arm64")
        ),
        command=[
            "bash",
            "-c",
            f"mkdir -p /asset-output/python && cp -r /asset-input/{package_dir.name} "
            "/asset-output/python/ && cd /asset-output/python && rm -rf "
            + " ".join(f"{package_dir.name}/{p}" for p in ignore),
        ],
        local=CopyPackageLayer(package_dir, ignore),
    )

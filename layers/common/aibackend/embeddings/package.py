"""A built model folder as SageMaker wants it: `model.tar.gz` in the model bucket.

`aib endpoints push embeddings --bucket <ModelBucketName>` registers the local production
version in the AWS registry (as `aib models push` does: the AWS version number may differ)
and uploads `<model>/<aws version>/model.tar.gz`: the whole folder, the card rewritten with
the AWS version, files at the archive's root (SageMaker unpacks it into /opt/ml/model). The
`AibEndpoints` stack points the SageMaker model at that key for the version it pins.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aibackend.embeddings.artifact import read_artifact
from aibackend.embeddings.backends import onnx_session
from aibackend.errors import ModelLoadError
from aibackend.models.card import ARTIFACT_FILES, CARD_FILE, MODEL_FILE, ModelCard
from aibackend.ports import ModelRegistry
from aibackend.settings import PlatformSettings

TARBALL = "model.tar.gz"


def tarball_key(model: str, version: int) -> str:
    """Where the endpoint's model data lives in the model bucket."""
    return f"{model}/{version}/{TARBALL}"


def local_folder(
    model: str, settings: PlatformSettings, version: int | None = None
) -> tuple[int, Path]:
    """The local registry's folder of `version` (default: production), complete and verified."""
    from aibackend.adapters import model_registry
    from aibackend.models.runtime import artifact_dir

    registry = model_registry(settings)
    if version is None:
        mv = registry.production(model)
        if mv is None:
            raise ModelLoadError(
                f"model {model!r} has no production version in {settings.state_dir}; build it "
                "with `make embeddings`"
            )
        version = mv.version
    folder = artifact_dir(model, version, settings)
    meta = onnx_session(folder / MODEL_FILE).get_modelmeta().custom_metadata_map
    artifact = read_artifact(folder, meta)
    artifact.verify(artifact.files)
    return version, folder


def write_tarball(folder: Path, dest: Path, *, card: ModelCard | None = None) -> Path:
    """`folder`'s model files (the card replaced by `card` if given) as a gzipped tar."""
    meta = onnx_session(folder / MODEL_FILE).get_modelmeta().custom_metadata_map
    artifact = read_artifact(folder, meta)
    names = sorted({*ARTIFACT_FILES, *artifact.files})
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        for name in names:
            if name == CARD_FILE and card is not None:
                data = (card.model_dump_json(indent=2) + "\n").encode()
                info = tarfile.TarInfo(CARD_FILE)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.add(folder / name, arcname=name, recursive=False)
    return dest


def push(
    model: str,
    *,
    local_settings: PlatformSettings,
    bucket: str,
    table: str,
    version: int | None = None,
    promote: bool = False,
    s3: Any | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Publish a local version to AWS with its `model.tar.gz`; returns the AWS version."""
    from aibackend.adapters import model_registry

    local_version, folder = local_folder(model, local_settings, version)
    remote: ModelRegistry = model_registry(
        PlatformSettings(adapters="aws", model_bucket=bucket, registry_table=table)
    )
    mv = remote.register(folder)
    key = tarball_key(model, mv.version)
    with tempfile.TemporaryDirectory() as tmp:
        archive = write_tarball(folder, Path(tmp) / TARBALL, card=mv.card)
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        # Multipart for the ~170 MB archive; the bucket's default encryption (SSE-KMS) applies.
        s3.upload_file(str(archive), bucket, key, ExtraArgs={"ContentType": "application/gzip"})
    echo(f"pushed {model} local v{local_version} -> s3://{bucket}/{key} as v{mv.version}")
    if promote:
        remote.set_production(model, mv.version)
        echo(f"{model}: AWS production -> v{mv.version}")
    return mv.version

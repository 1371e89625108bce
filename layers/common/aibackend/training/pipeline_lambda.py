"""The training pipeline's Lambda steps on AWS: `evaluate` and `register`.

Each state machine of the AibTraining stack (`infra/stacks/training.py`) calls them after its
SageMaker training job with the job's `model.tar.gz`, the run's train channel and the model's
gate configuration (written into the state machine from `[gate.<model>]` at synth time):

- `evaluate`: unpacks the candidate, rebuilds its holdout from the channel, scores it and the
  production version (`aibackend.training.gate.run_gate`, numpy + onnxruntime only), and
  returns the verdict and the gate's decision, which the state machine's Choice reads;
- `register`: registers the candidate in the DynamoDB registry with that verdict and acts on
  it as `aib train` does (approved: staging, or production for a model without one).

They ship with their own code asset (the `aibackend` package with `training/`, none of whose
imports needs scikit-learn at these entry points) and the `api` and `ml` layers.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import Any

from aibackend.adapters import model_registry, object_store
from aibackend.errors import ConfigError
from aibackend.ports import GateVerdict
from aibackend.settings import PlatformSettings
from aibackend.training.gate import GateConfig, run_gate
from aibackend.training.pipeline import CHANNEL, MODEL
from aibackend.training.step import decide

#: The actor the registry's audit trail names for versions this pipeline registers.
ACTOR = "aib-training"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); `ConfigError` for anything else."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ConfigError(f"{uri!r}: expected s3://<bucket>/<key>")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def unpack_model(artifact: str, run_dir: Path, settings: PlatformSettings) -> Path:
    """Download the training job's `model.tar.gz` and unpack it into `<run>/model/`."""
    bucket, key = split_s3_uri(artifact)
    archive = object_store(bucket, settings).download_file(key, run_dir / "model.tar.gz")
    model_dir = run_dir / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    archive.unlink()
    return model_dir


def download_channel(channel: str, run_dir: Path, settings: PlatformSettings) -> Path:
    """Every object under the channel's S3 prefix, into `<run>/input/data/train/`."""
    bucket, prefix = split_s3_uri(channel)
    store = object_store(bucket, settings)
    folder = run_dir / CHANNEL
    folder.mkdir(parents=True, exist_ok=True)
    for info in store.list(prefix):
        name = info.key[len(prefix) :].lstrip("/")
        if name and not name.endswith("/"):
            store.download_file(info.key, folder / name)
    return folder


def evaluate(event: dict[str, Any], _context: object = None) -> dict[str, Any]:
    """`{model, artifact, channel, gate}` -> `{approved, failed, verdict}`."""
    settings = PlatformSettings.from_env()
    config = GateConfig.model_validate(event.get("gate") or {})
    with tempfile.TemporaryDirectory(prefix="aib-evaluate-") as tmp:
        run_dir = Path(tmp)
        model_dir = unpack_model(event["artifact"], run_dir, settings)
        channel = download_channel(event["channel"], run_dir, settings)
        verdict = run_gate(model_registry(settings), model_dir, config, channel=channel)
    return {**decide(verdict), "verdict": verdict.model_dump(mode="json")}


def register(event: dict[str, Any], _context: object = None) -> dict[str, Any]:
    """`{model, artifact, evaluation: {verdict}}` -> `{model, version, stage, approval}`."""
    from aibackend.training.local import act_on_verdict

    settings = PlatformSettings.from_env()
    registry = model_registry(settings)
    verdict = GateVerdict.model_validate(event["evaluation"]["verdict"])
    with tempfile.TemporaryDirectory(prefix="aib-register-") as tmp:
        model_dir = unpack_model(event["artifact"], Path(tmp), settings)
        mv = registry.register(model_dir, parent_version=verdict.compared_with, actor=ACTOR)
    mv = registry.record_gate(mv.name, mv.version, verdict)
    mv = act_on_verdict(registry, mv, promote=True, actor=ACTOR, echo=print)
    return {
        "model": mv.name,
        "version": mv.version,
        "stage": mv.stage,
        "approval": mv.approval.status,
    }

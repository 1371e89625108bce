"""Train a model from a CSV on this machine, with the SageMaker contract, then register it.

The CSV is copied into a run folder laid out like a training container's `/opt/ml`
(`<state>/training/<name>-<UTC time>-<random>/input/data/train/`), the entry point
`aibackend.byom.training.train` runs as a subprocess with the `SM_*` variables set (the same
program a SageMaker training job runs, and scikit-learn stays out of the caller's process), and
the model folder it writes is registered and, unless told otherwise, promoted to production.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from aibackend.errors import ConfigError
from aibackend.ports import ModelVersion
from aibackend.settings import PlatformSettings
from aibackend.training.common import HyperValue
from aibackend.training.local import run_entry_point

ENTRY_POINT = "aibackend.byom.training.train"


def _channel_name(csv: Path) -> str:
    """The file's name in the channel, which takes `*.csv` and `*.csv.gz` only."""
    if csv.name.endswith((".csv", ".csv.gz")):
        return csv.name
    if csv.name.endswith(".gz"):
        return f"{csv.name.split('.')[0]}.csv.gz"
    return f"{csv.name.split('.')[0]}.csv"


def train_csv(
    csv: Path,
    *,
    name: str,
    target: str,
    settings: PlatformSettings,
    task: str = "auto",
    seed: int = 7,
    hyperparameters: Mapping[str, HyperValue] | None = None,
    promote: bool = True,
    echo: Callable[[str], None] = print,
) -> ModelVersion:
    """Train model `name` to predict column `target` of `csv`; returns the registered version.

    Raises `ConfigError` for a missing file and `TrainingError` (quoting the entry point's last
    lines, which say what to fix) when training fails.
    """
    if not csv.is_file():
        raise ConfigError(f"{csv}: no such file; pass the CSV to train on with --csv")
    from aibackend.adapters import model_registry

    root = (settings.state_dir / "training").resolve()
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-{stamp}-", dir=root))
    channel = run_dir / "input" / "data" / "train"
    channel.mkdir(parents=True)
    shutil.copyfile(csv, channel / _channel_name(csv))
    echo(f"training {name!r} on {csv} (run folder {run_dir})")
    hps: dict[str, HyperValue] = {"name": name, "target": target, "task": task, "seed": seed}
    hps.update(hyperparameters or {})
    model_dir = run_entry_point(ENTRY_POINT, run_dir=run_dir, hyperparameters=hps, echo=echo)
    registry = model_registry(settings)
    mv = registry.register(model_dir)
    echo(f"registered {mv.name} version {mv.version} (sha256 {mv.sha256[:12]})")
    if promote:
        registry.set_production(mv.name, mv.version)
        echo(f"{mv.name} version {mv.version} is now production")
    return mv

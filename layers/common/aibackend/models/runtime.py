"""Load a model version once per container and run it.

`load_model(name)` resolves the version this process serves (pinned in the environment on
AWS, the registry's production pointer locally), fetches the artifact folder, verifies its
sha256 and builds one onnxruntime session with `intra_op_num_threads=1`. Every failure is a
`ModelLoadError` whose message says what to fix.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from aibackend.errors import ModelLoadError
from aibackend.models.card import BASELINE_FILE, MODEL_FILE, ModelCard, check_artifact
from aibackend.settings import PlatformSettings, model_version_env, platform_settings

PROVIDERS = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class LoadedModel:
    """An onnxruntime session plus the card that describes its inputs and outputs."""

    card: ModelCard
    path: Path
    session: Any = field(repr=False)
    input_name: str = ""
    #: Index of the output holding class probabilities (or the regression value).
    _output_names: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    @property
    def n_features(self) -> int:
        return len(self.card.features)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Raw `session.run` on a float32 matrix with one row per instance."""
        out: list[np.ndarray] = self.session.run(self._output_names, {self.input_name: x})
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Positive-class probability for binary classifiers, shape (n,)."""
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a (n, {self.n_features}) matrix, got {x.shape}")
        probs = self.run(x)[-1]
        return np.asarray(probs[:, 1] if probs.ndim == 2 else probs, dtype=np.float64)


def create_session(model_path: Path) -> Any:
    """One onnxruntime session: one intra-op thread (Lambda gives ~1 vCPU per 1,769 MB)."""
    import onnxruntime as ort  # heavy: imported when a model is actually loaded

    missing = [p for p in PROVIDERS if p not in ort.get_available_providers()]
    if missing:
        raise ModelLoadError(
            f"onnxruntime {ort.__version__} lacks {missing}; install the CPU build "
            f"(`pip install onnxruntime`), available: {ort.get_available_providers()}"
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(model_path), sess_options=so, providers=list(PROVIDERS))
    except Exception as e:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(
            f"{model_path}: onnxruntime cannot load the graph ({e}); re-export it with an opset "
            f"this onnxruntime ({ort.__version__}) supports"
        ) from e


def load_model_dir(folder: Path) -> LoadedModel:
    """Verify and load an artifact folder (model.onnx + model.json + baseline.json)."""
    card = check_artifact(folder)
    session = create_session(folder / MODEL_FILE)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelLoadError(
            f"{folder / MODEL_FILE}: expected one input tensor, found "
            f"{[i.name for i in inputs]}; export the graph with a single float matrix input"
        )
    inp = inputs[0]
    width = inp.shape[1] if len(inp.shape) == 2 else None
    if inp.type != "tensor(float)" or width != len(card.features):
        raise ModelLoadError(
            f"{folder / MODEL_FILE}: input {inp.name!r} is {inp.type} {inp.shape}, but model.json "
            f"declares {len(card.features)} float features; retrain or fix model.json"
        )
    outputs = session.get_outputs()
    for o in outputs:
        if o.type.startswith("seq"):
            raise ModelLoadError(
                f"{folder / MODEL_FILE}: output {o.name!r} is {o.type} (a ZipMap); re-export with "
                "skl2onnx options {'zipmap': False} so probabilities come back as one tensor"
            )
    return LoadedModel(
        card=card,
        path=folder,
        session=session,
        input_name=inp.name,
        _output_names=tuple(o.name for o in outputs),
    )


def pinned_version(name: str, env: dict[str, str] | None = None) -> int | None:
    raw = (os.environ if env is None else env).get(model_version_env(name))
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise ModelLoadError(
            f"{model_version_env(name)}={raw!r} is not a version number; set it to an integer "
            "version from `aib models list`"
        ) from e


def resolve_version(name: str, settings: PlatformSettings) -> int:
    """The version to serve: the pin if any; locally, else the registry's production pointer."""
    pinned = pinned_version(name)
    if pinned is not None:
        return pinned
    if settings.adapters == "aws":
        raise ModelLoadError(
            f"{model_version_env(name)} is not set; on AWS the version is pinned at deploy time "
            f"(set a production version with `aib models promote {name} VERSION --reason ...`, "
            "then cdk deploy)"
        )
    from aibackend.adapters import model_registry

    mv = model_registry(settings).production(name)
    if mv is None:
        raise ModelLoadError(
            f"model {name!r} has no production version in {settings.state_dir}; "
            f"train one with `aib train {name}`"
        )
    return mv.version


def artifact_dir(name: str, version: int, settings: PlatformSettings) -> Path:
    """Folder holding the version's files: in place locally, downloaded to /tmp on AWS."""
    if settings.adapters == "local":
        folder = settings.state_dir / "buckets" / settings.model_bucket / name / str(version)
        if not (folder / MODEL_FILE).is_file():
            raise ModelLoadError(
                f"{folder}: model {name!r} version {version} is not in the local registry; "
                "list versions with `aib models list`"
            )
        return folder
    from aibackend.adapters import model_registry

    dest = settings.model_cache_dir / name / str(version)
    return model_registry(settings).download(name, version, dest)


class _Versioned(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...


M = TypeVar("M", bound=_Versioned)

#: Loaded models by (kind, name, version, folder): one per version and place, whatever opens it.
_cache: dict[tuple[str, str, int, Path], Any] = {}
_lock = threading.Lock()


def load_versioned(
    name: str,
    open_dir: Callable[[Path], M],
    *,
    kind: str,
    settings: PlatformSettings | None = None,
) -> M:
    """The version of model `name` this process serves, opened by `open_dir` once per version
    and location (`kind` names the opener: a text model and a tabular one never share an
    entry). The version is the pin on AWS, the registry's production pointer locally."""
    s = settings or platform_settings()
    version = resolve_version(name, s)
    folder = artifact_dir(name, version, s)
    key = (kind, name, version, folder.resolve())
    with _lock:
        model = _cache.get(key)
        if model is None:
            model = open_dir(folder)
            if model.name != name or model.version != version:
                raise ModelLoadError(
                    f"{folder}: model.json says {model.name} v{model.version}, expected "
                    f"{name} v{version}; the registry's files were moved or edited"
                )
            _cache[key] = model
    return cast(M, model)


def load_model(name: str, settings: PlatformSettings | None = None) -> LoadedModel:
    """The model this process serves under `name`, loaded once per version and location."""
    return load_versioned(name, load_model_dir, kind="tabular", settings=settings)


__all__ = ["BASELINE_FILE", "LoadedModel", "load_model", "load_model_dir", "load_versioned"]

"""Functions declare the endpoints they call; `aib dev` knows each endpoint's server."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from aibackend.catalog import FunctionSpec
from aibackend.embeddings import build
from aibackend.embeddings.endpoints import ENDPOINTS, endpoint_spec
from aibackend.embeddings.local import LocalEndpoints
from aibackend.errors import ConfigError
from aibackend.settings import PlatformSettings


def test_a_function_declares_the_endpoints_it_calls() -> None:
    spec = FunctionSpec.model_validate({"name": "search", "endpoints": ["embeddings"]})
    assert spec.endpoints == ("embeddings",)


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        (["embeddings", "embeddings"], "listed more than once"),
        (["Embeddings"], "should match pattern"),
        (["my-endpoint"], "should match pattern"),
    ],
)
def test_bad_endpoint_lists_are_refused(endpoints: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FunctionSpec.model_validate({"name": "search", "endpoints": endpoints})


def test_unknown_endpoints_name_the_ones_that_exist() -> None:
    assert endpoint_spec("embeddings") is ENDPOINTS["embeddings"]
    with pytest.raises(ConfigError, match="this project runs embeddings"):
        endpoint_spec("whisper")


def test_an_endpoint_whose_model_is_not_built_is_reported_with_its_build_hint(
    tmp_path: Path,
) -> None:
    from aibackend.adapters import model_registry

    settings = PlatformSettings(state_dir=tmp_path)
    endpoints = LocalEndpoints(["embeddings"], model_registry(settings), settings)
    # WHEN aib dev syncs with a registry that has no embeddings model
    assert endpoints.sync() == []
    # THEN nothing runs, the functions get an empty address, and health says what to do
    assert endpoints.environment() == {"AIB_ENDPOINT_EMBEDDINGS": ""}
    assert endpoints.health() == {"embeddings": "not built (make embeddings)"}


def test_building_without_the_extra_says_to_run_make_embeddings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def without_torch(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "torch" else real(name, package)

    monkeypatch.setattr(build.importlib.util, "find_spec", without_torch)
    # (on a machine without the extra the message lists every missing package, torch first)
    with pytest.raises(ConfigError, match=r"needs torch(, [a-z0-9-]+)*: run `make embeddings`"):
        build.require_build_extra()

"""Model registry API (FastAPI): read-only views of every model's versions, their stage,
approval, lineage, validation-gate evidence and audit trail. Changes go through `aib models`
(promote, rollback) or the training pipeline, never through this API."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Metrics
from fastapi import APIRouter, Path
from pydantic import BaseModel

from aibackend.adapters import model_registry
from aibackend.errors import ModelNotFoundError
from aibackend.http import problem_responses, serve_openapi, service_app
from aibackend.masking import masked_logger

from .views import ModelList, VersionDetail, VersionList, model_list, version_detail, version_list

logger = masked_logger()
metrics = Metrics()

REGISTRY = model_registry()


class RegistryHealth(BaseModel):
    status: str = "ok"


DESCRIPTION = (
    "Registered models and their versions: stage (candidate, staging, production, archived), "
    "approval, lineage, validation-gate evidence and the audit trail."
)
app = service_app("Model registry", DESCRIPTION)

v1 = APIRouter(prefix="/v1/models", responses=problem_responses(401, 403))

ModelName = Annotated[
    str,
    Path(
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=64,
        description="A model name, as `GET /v1/models` lists it (e.g. `fraud`)",
    ),
]
Version = Annotated[int, Path(ge=1, le=1_000_000, description="A version number (1, 2, ...)")]


@v1.get("", response_model=ModelList)
async def models() -> ModelList:
    """Every registered model: its production version, latest version and version count."""
    return model_list(REGISTRY)


@v1.get("/{name}/versions", response_model=VersionList, responses=problem_responses(404, 422))
async def versions(name: ModelName) -> VersionList:
    """Every version of a model, oldest first: stage, approval, metrics and gate verdict."""
    found = REGISTRY.list_versions(name)
    if not found:
        raise ModelNotFoundError(
            f"no model {name!r} is registered; GET /v1/models lists the models there are"
        )
    return version_list(name, found)


@v1.get(
    "/{name}/versions/{version}",
    response_model=VersionDetail,
    responses=problem_responses(404, 422),
)
async def version_of(name: ModelName, version: Version) -> VersionDetail:
    """One version: stage, approval, lineage, the gate's evidence per check, the card's
    inputs and outputs, and its audit trail (oldest first)."""
    mv = REGISTRY.get(name, version)  # ModelNotFoundError -> 404, naming the known versions
    return version_detail(mv, REGISTRY.history(name, version))


@v1.get("/health", response_model=RegistryHealth)
async def health() -> RegistryHealth:
    """Liveness (public: no key needed)."""
    return RegistryHealth()


app.include_router(v1)
serve_openapi(
    app, "/v1/models/openapi.json", v1, title="Model registry", version="1", description=DESCRIPTION
)

__all__ = ["app", "logger", "metrics"]

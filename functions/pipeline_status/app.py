"""Pipeline run status API (FastAPI): `GET /v1/pipeline/runs/{run_id}` (`latest` for the most
recently started run)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Metrics
from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from aibackend.errors import AibError
from aibackend.http import problem_responses, service_app
from aibackend.masking import masked_logger
from aibackend.pipeline.runs import RunStatus, run_store, status

logger = masked_logger()
metrics = Metrics()

RUNS = run_store()


class RunNotFoundError(AibError):
    status = 404
    title = "Run not found"


class PipelineHealth(BaseModel):
    status: str = "ok"


DESCRIPTION = (
    "Where each transactions file stands in the pipeline (ingest, validate, score, store), "
    "and how it completed."
)
app = service_app("Pipeline status", DESCRIPTION)

v1 = APIRouter(prefix="/v1/pipeline", responses=problem_responses(404, 422))

RunId = Annotated[
    str,
    Path(
        pattern=r"^([0-9a-f]{24}|latest)$",
        description="A run id (24 hex digits, from `aib pipeline status`), or `latest`",
    ),
]


@v1.get("/runs/{run_id}", response_model=RunStatus)
async def run_status(run_id: RunId) -> RunStatus:
    """Counts per stage (received, valid, quarantined, scored, stored, failed, and failed by
    stage), chunks done, progress (0 to 1) and elapsed seconds of one run; once it completed,
    its state (`succeeded`, or `failed` with `run.failure.reason` when ingest could not read
    the file), `completed_at` and `report_key`, its quarantine report in the run's bucket."""
    wanted = RUNS.latest() if run_id == "latest" else run_id
    found = status(RUNS, wanted) if wanted else None
    if found is None:
        raise RunNotFoundError(
            f"no pipeline run {run_id!r}; runs start when a file lands under raw/transactions/"
        )
    return found


@v1.get("/health", response_model=PipelineHealth)
async def health() -> PipelineHealth:
    """Liveness (public: no key needed)."""
    return PipelineHealth()


app.include_router(v1)

_doc: dict[str, Any] = {}


@app.get("/v1/pipeline/openapi.json", include_in_schema=False)
async def openapi_v1() -> JSONResponse:
    if not _doc:
        from fastapi.openapi.utils import get_openapi  # only when a document is asked for

        doc = get_openapi(
            title="Pipeline status", version="1", description=DESCRIPTION, routes=v1.routes
        )
        _doc.update(doc)
    return JSONResponse(_doc)


__all__ = ["app", "logger", "metrics"]

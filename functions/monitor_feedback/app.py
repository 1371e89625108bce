"""Feedback API (FastAPI): `POST /v1/feedback` puts up to 1,000 labels of one model's captured
predictions into its label ledger, where the monitor joins them on inference id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aibackend.adapters import object_store
from aibackend.capture import BUCKET
from aibackend.http import problem_responses, request_id, serve_openapi, service_app
from aibackend.masking import masked_logger
from aibackend.monitoring.config import settings_from_env
from aibackend.monitoring.feedback import MAX_LABELS, FeedbackAccepted, FeedbackItem, record_labels
from aibackend.monitoring.labels import LabelStore
from aibackend.monitoring.ledger import open_ledger
from aibackend.settings import physical_name

logger = masked_logger()
metrics = Metrics()

#: Monitored models (`functions/monitoring.toml`): the only ones that have a ledger.
MODELS = tuple(sorted(settings_from_env()))


def _none_monitored(model: str) -> str:
    raise ValueError(
        f"model {model!r} is not monitored: no model is (functions/monitoring.toml has no "
        "[capture.<model>] table)"
    )


#: The schema lists them, so a client (and the fuzz test) sees the real constraint; with no
#: monitored model every request is refused (422) rather than the function failing to start.
ModelName: Any = (
    Literal[MODELS]  # type: ignore[valid-type]
    if MODELS
    else Annotated[str, AfterValidator(_none_monitored), Field(description="none is monitored")]
)
_LEDGERS: dict[str, LabelStore] = {}
#: Every accepted request is archived as sent (audit trail; the ledger can be rebuilt from it).
STORE = object_store(physical_name("bucket", BUCKET))


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName = Field(description="The model whose predictions these labels are for")
    labels: Annotated[list[FeedbackItem], Field(min_length=1, max_length=MAX_LABELS)]


class FeedbackHealth(BaseModel):
    status: str = "ok"
    models: list[str]


DESCRIPTION = "Ground-truth labels for captured predictions, joined on inference id."
app = service_app("Model feedback", DESCRIPTION)
v1 = APIRouter(prefix="/v1/feedback", responses=problem_responses(400, 413, 422))


def _ledger(model: str) -> LabelStore:
    if model not in _LEDGERS:
        _LEDGERS[model] = open_ledger(model)
    return _LEDGERS[model]


@v1.post("", status_code=202, response_model=FeedbackAccepted)
async def post_feedback(request: Request, body: Annotated[FeedbackRequest, Body()]) -> Any:
    """Labels (0/1) of up to 1,000 predictions by inference id. A label for a prediction not
    captured yet is kept and joins when it is (`unknown_yet`); the same label twice counts
    once; a different label with a later `observed_at` corrects the earlier one."""
    now = datetime.now(UTC)
    done = record_labels(_ledger(body.model), body.model, body.labels, now)
    STORE.put(
        f"feedback/{body.model}/{now:%Y-%m-%d}/{request_id(request)}.json",
        body.model_dump_json().encode(),
        content_type="application/json",
    )
    metrics.add_metric(name="LabelsAccepted", unit=MetricUnit.Count, value=done.accepted)
    metrics.add_metric(name="LabelsUnknownYet", unit=MetricUnit.Count, value=done.unknown_yet)
    return JSONResponse(done.model_dump(mode="json"), status_code=202)


@v1.get("/health", response_model=FeedbackHealth)
async def health() -> FeedbackHealth:
    """Liveness and the models labels are accepted for (public: no key needed)."""
    return FeedbackHealth(models=list(MODELS))


app.include_router(v1)
serve_openapi(
    app,
    "/v1/feedback/openapi.json",
    v1,
    title="Model feedback",
    version="1",
    description=DESCRIPTION,
)

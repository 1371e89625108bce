"""Fraud scoring API (FastAPI). The model is loaded once, when the container starts.

Two versions side by side on one model: `/v1` (stable, deprecated: lifecycle headers on every
response) and `/v2` (risk bands and a three-way decision). Each version has its own OpenAPI
document, `/v<n>/fraud/openapi.json`.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Body, Request
from pydantic import Discriminator, Tag

from aibackend.capture import Capture
from aibackend.fraud.decision import DecisionSettings
from aibackend.fraud.schema import Transaction
from aibackend.http import problem_responses, request_id, serve_openapi, service_app
from aibackend.masking import masked_logger
from aibackend.models.card import ModelCard
from aibackend.models.runtime import load_model
from aibackend.serving import ModelHealth

from .scoring import MAX_BATCH, ScoreBatch, ScoreResponse, score
from .v2 import RiskPolicy, ScoreResponseV2, score_v2
from .versions import LifecycleHeaders, lifecycle_from_env

logger = masked_logger()
metrics = Metrics()

MODEL = load_model("fraud")
SETTINGS = DecisionSettings.from_env()
POLICY = RiskPolicy.from_env()
V1_LIFECYCLE = lifecycle_from_env("v1", successor="/v2/fraud/score")
#: Off unless functions/monitoring.toml declares `[capture.fraud]`.
CAPTURE = Capture.from_env("fraud")
logger.append_keys(model_name=MODEL.name, model_version=MODEL.version)


def _shape(v: Any) -> str:
    return "batch" if isinstance(v, dict) and "transactions" in v else "single"


ScoreRequest = Annotated[
    Annotated[Transaction, Tag("single")] | Annotated[ScoreBatch, Tag("batch")],
    Discriminator(_shape),
]

DESCRIPTION = "Scores card transactions with the production fraud model."
app = service_app("Fraud scoring", DESCRIPTION, version="2")
if V1_LIFECYCLE is not None:
    app.add_middleware(LifecycleHeaders, prefix="/v1/", lifecycle=V1_LIFECYCLE)

# 400: a body that is not UTF-8 JSON; 413: over the route's max_body_kb (gateway); 422: invalid.
ERRORS = problem_responses(400, 413, 422)
v1 = APIRouter(prefix="/v1/fraud", deprecated=V1_LIFECYCLE is not None, responses=ERRORS)
v2 = APIRouter(prefix="/v2/fraud", responses=ERRORS)


def _record(scores: list[float], declined: int, reviewed: int | None = None) -> None:
    """Predictions by decision, and the score of each: CloudWatch keeps every value of `Score`
    (EMF arrays, flushed per 100), so its percentiles over any period are the score histogram."""
    scored = len(scores)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=scored)
    for s in scores:
        metrics.add_metric(name="Score", unit=MetricUnit.NoUnit, value=s)
    metrics.add_metric(name="Declines", unit=MetricUnit.Count, value=declined)
    if reviewed is not None:
        metrics.add_metric(name="Reviews", unit=MetricUnit.Count, value=reviewed)
    if declined:
        logger.info("declined transactions", extra={"declined": declined, "scored": scored})


def _capture(
    txns: list[Transaction], outputs: list[tuple[str, dict[str, Any]]], correlation_id: str
) -> None:
    if CAPTURE.enabled:
        items = [
            (iid, txn.model_dump(mode="json"), out)
            for txn, (iid, out) in zip(txns, outputs, strict=True)
        ]
        CAPTURE.send(MODEL.version, items, correlation_id)


@v1.post("/score", response_model=ScoreResponse)
async def score_transactions(
    request: Request, body: Annotated[ScoreRequest, Body()]
) -> ScoreResponse:
    """Score one transaction or a batch of up to 1,000 (`{"transactions": [...]}`).

    Deprecated: responses carry `Deprecation`, `Sunset` and a `Link` to `/v2/fraud/score`.
    """
    txns = body.transactions if isinstance(body, ScoreBatch) else [body]
    result = score(txns, MODEL, SETTINGS, request_id(request))
    _record([r.score for r in result.results], sum(r.decision == "decline" for r in result.results))
    _capture(
        txns,
        [(r.inference_id, {"score": r.score, "decision": r.decision}) for r in result.results],
        result.request_id,
    )
    return result


@v1.get("/health", response_model=ModelHealth)
async def health() -> ModelHealth:
    """Liveness and the model version served (public: no key needed)."""
    return ModelHealth.of(MODEL)


@v1.get("/model", response_model=ModelCard)
async def model_card() -> ModelCard:
    """The model card (model.json) of the version this function serves."""
    return MODEL.card


@v2.post("/score", response_model=ScoreResponseV2)
async def score_transactions_v2(
    request: Request, body: Annotated[ScoreRequest, Body()]
) -> ScoreResponseV2:
    """Score one transaction or a batch of up to 1,000, as v1 takes them; each result carries
    `risk` (`score`, `band`: low / medium / high) and `decision` (`action`: approve / review /
    decline, and the `threshold` that decided it); `policy` lists every cut-off applied.

    Breaking changes from v1: no top-level `threshold`; `score` and `decision` moved into
    `risk` and `decision` objects; `review` is a new action.
    """
    txns = body.transactions if isinstance(body, ScoreBatch) else [body]
    result = score_v2(txns, MODEL, POLICY, request_id(request))
    actions = [r.decision.action for r in result.results]
    _record(
        [r.risk.score for r in result.results], actions.count("decline"), actions.count("review")
    )
    _capture(
        txns,
        [
            (r.inference_id, {"score": r.risk.score, "decision": r.decision.action})
            for r in result.results
        ],
        result.request_id,
    )
    return result


app.include_router(v1)
app.include_router(v2)


serve_openapi(
    app, "/v1/fraud/openapi.json", v1, title="Fraud scoring", version="1", description=DESCRIPTION
)
serve_openapi(
    app, "/v2/fraud/openapi.json", v2, title="Fraud scoring", version="2", description=DESCRIPTION
)


__all__ = ["MAX_BATCH", "app", "logger", "metrics"]

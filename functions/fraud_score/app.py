"""Fraud scoring API (FastAPI). The model is loaded once, when the container starts."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import Body, FastAPI, Request
from pydantic import Discriminator, Tag

from aibackend.fraud.decision import DecisionSettings
from aibackend.fraud.schema import Transaction
from aibackend.http import install_problem_handlers, request_id
from aibackend.models.card import ModelCard
from aibackend.models.runtime import load_model

from .scoring import MAX_BATCH, ScoreBatch, ScoreResponse, score

logger = Logger()
metrics = Metrics()

MODEL = load_model("fraud")
SETTINGS = DecisionSettings.from_env()
logger.append_keys(model_name=MODEL.name, model_version=MODEL.version)


def _shape(v: Any) -> str:
    return "batch" if isinstance(v, dict) and "transactions" in v else "single"


ScoreRequest = Annotated[
    Annotated[Transaction, Tag("single")] | Annotated[ScoreBatch, Tag("batch")],
    Discriminator(_shape),
]

app = FastAPI(
    title="Fraud scoring",
    version="1",
    description="Scores card transactions with the production fraud model.",
    # Served under the function's own prefix so API Gateway can route it; `aib dev` merges
    # every function's document into /openapi.json.
    openapi_url="/v1/fraud/openapi.json",
    docs_url=None,
    redoc_url=None,
)
install_problem_handlers(app)


@app.post("/v1/fraud/score", response_model=ScoreResponse)
async def score_transactions(
    request: Request, body: Annotated[ScoreRequest, Body()]
) -> ScoreResponse:
    """Score one transaction or a batch of up to 1,000 (`{"transactions": [...]}`)."""
    txns = body.transactions if isinstance(body, ScoreBatch) else [body]
    result = score(txns, MODEL, SETTINGS, request_id(request))
    declined = sum(r.decision == "decline" for r in result.results)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(txns))
    metrics.add_metric(name="Declines", unit=MetricUnit.Count, value=declined)
    if declined:
        logger.info("declined transactions", extra={"declined": declined, "scored": len(txns)})
    return result


@app.get("/v1/fraud/model", response_model=ModelCard)
async def model_card() -> ModelCard:
    """The model card (model.json) of the version this function serves."""
    return MODEL.card


__all__ = ["MAX_BATCH", "app", "logger", "metrics"]

"""Sentiment API (FastAPI). The model is loaded once, when the container starts."""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Request

from aibackend.http import problem_responses, request_id, serve_openapi, service_app
from aibackend.masking import masked_logger
from aibackend.models.card import ModelCard
from aibackend.sentiment.model import LABELS, load_text_model
from aibackend.serving import ModelHealth

from .scoring import MAX_CHARS, MAX_TEXTS, SentimentRequest, SentimentResponse, classify

logger = masked_logger()
metrics = Metrics()

MODEL = load_text_model("sentiment", classes=LABELS)
logger.append_keys(model_name=MODEL.name, model_version=MODEL.version)

TITLE = "Customer sentiment"
DESCRIPTION = (
    "Classifies English review texts as positive or negative with the production sentiment "
    f"model: up to {MAX_TEXTS} texts of up to {MAX_CHARS:,} characters per request."
)
app = service_app(TITLE, DESCRIPTION)

# 400: a body that is not UTF-8 JSON; 413: over the route's max_body_kb (gateway); 422: invalid.
v1 = APIRouter(prefix="/v1/sentiment", responses=problem_responses(400, 413, 422))


@v1.post("", response_model=SentimentResponse)
async def classify_texts(request: Request, body: SentimentRequest) -> SentimentResponse:
    """Classify 1 to 100 texts (`{"texts": [...]}`); one result per text, in input order,
    with its `label`, the `probability` of that label and both class `probabilities`."""
    result = classify(body.texts, MODEL, request_id(request))
    positive = sum(r.label == "positive" for r in result.results)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(result.results))
    metrics.add_metric(name="Positive", unit=MetricUnit.Count, value=positive)
    metrics.add_metric(name="Negative", unit=MetricUnit.Count, value=len(result.results) - positive)
    return result


@v1.get("/health", response_model=ModelHealth)
async def health() -> ModelHealth:
    """Liveness and the model version served (public: no key needed)."""
    return ModelHealth.of(MODEL)


@v1.get("/model", response_model=ModelCard)
async def model_card() -> ModelCard:
    """The model card (model.json): holdout metrics next to the majority-class and lexicon
    baselines, training data, hyperparameters."""
    return MODEL.card


app.include_router(v1)

serve_openapi(
    app, "/v1/sentiment/openapi.json", v1, title=TITLE, version="1", description=DESCRIPTION
)


__all__ = ["app", "logger", "metrics"]

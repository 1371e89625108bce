"""Embeddings API (FastAPI): texts in, unit vectors out, computed by the embeddings endpoint.

The function holds no model: it validates requests, calls the SageMaker-contract endpoint
(SageMaker on AWS, the loopback server of `aib dev` locally) through a client with retries and
a circuit breaker, and answers the shared envelope. While the endpoint is unavailable (not
built locally, down, circuit open) it answers 503 `application/problem+json`.
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Request

from aibackend.embeddings.service import (
    EndpointHealth,
    embeddings_client,
    endpoint_health,
    install_unavailable_handler,
)
from aibackend.http import problem_responses, request_id, serve_openapi, service_app
from aibackend.masking import masked_logger

from .embed import MAX_TEXTS, EmbedRequest, EmbedResponse, embed

logger = masked_logger()
metrics = Metrics()

CLIENT = embeddings_client()

DESCRIPTION = (
    "Sentence embeddings of all-MiniLM-L6-v2 (384 dimensions, unit length), computed by the "
    "embeddings endpoint."
)
app = service_app("Embeddings", DESCRIPTION)
install_unavailable_handler(app)

# 400: not UTF-8 JSON; 413: over the route's max_body_kb; 422: invalid; 502: the endpoint
# refused or garbled the call; 503: the endpoint is unavailable (Retry-After while paused).
v1 = APIRouter(prefix="/v1/embeddings", responses=problem_responses(400, 413, 422, 502, 503))


@v1.post("", response_model=EmbedResponse)
async def embed_texts(request: Request, body: EmbedRequest) -> EmbedResponse:
    """Embed 1 to 64 texts (`{"texts": [...]}`); results in input order."""
    # A blocking call in an async route on purpose: like Lambda, every invocation has its
    # own event loop and carries one request, so nothing else waits on this loop.
    result = embed(body.texts, CLIENT, request_id(request))
    metrics.add_metric(name="Embeddings", unit=MetricUnit.Count, value=len(body.texts))
    truncated = sum(r.truncated for r in result.results)
    if truncated:
        metrics.add_metric(name="TruncatedTexts", unit=MetricUnit.Count, value=truncated)
    return result


@v1.get("/health", response_model=EndpointHealth)
async def health() -> EndpointHealth:
    """Liveness and what the function knows of its endpoint (public: no key needed)."""
    return endpoint_health(CLIENT)


app.include_router(v1)

serve_openapi(
    app, "/v1/embeddings/openapi.json", v1, title="Embeddings", version="1", description=DESCRIPTION
)


__all__ = ["MAX_TEXTS", "app", "logger", "metrics"]

"""Semantic product search API (FastAPI): `GET /v1/search?q=...&k=10`.

The embeddings endpoint embeds the query and ranks the product index it was built with; this
function validates the query, calls it through a client with retries and a circuit breaker,
and answers the shared envelope (one result per product, best first). While the endpoint is
unavailable it answers 503 `application/problem+json`.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Query, Request

from aibackend.embeddings.service import (
    EndpointHealth,
    embeddings_client,
    endpoint_health,
    install_unavailable_handler,
)
from aibackend.http import problem_responses, request_id, serve_openapi, service_app
from aibackend.masking import masked_logger

from .search import MAX_K, SearchResponse, search
from .search import Query as QueryText

logger = masked_logger()
metrics = Metrics()

CLIENT = embeddings_client()

DESCRIPTION = "Semantic search over the product catalog, by meaning rather than shared words."
app = service_app("Product search", DESCRIPTION)
install_unavailable_handler(app)

# 422: invalid query; 502: the endpoint refused or garbled the call; 503: it is unavailable.
v1 = APIRouter(prefix="/v1/search", responses=problem_responses(422, 502, 503))


@v1.get("", response_model=SearchResponse)
async def search_products(
    request: Request,
    q: Annotated[QueryText, Query(description="What the shopper is looking for")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many products")] = 10,
) -> SearchResponse:
    """The `k` catalog products closest in meaning to `q` (1 to 512 characters), best first."""
    # A blocking call in an async route on purpose: like Lambda, every invocation has its
    # own event loop and carries one request, so nothing else waits on this loop.
    result = search(q, k, CLIENT, request_id(request))
    metrics.add_metric(name="Searches", unit=MetricUnit.Count, value=1)
    if result.results:
        metrics.add_metric(name="TopScore", unit=MetricUnit.NoUnit, value=result.results[0].score)
    return result


@v1.get("/health", response_model=EndpointHealth)
async def health() -> EndpointHealth:
    """Liveness and what the function knows of its endpoint (public: no key needed)."""
    return endpoint_health(CLIENT)


app.include_router(v1)

serve_openapi(
    app, "/v1/search/openapi.json", v1, title="Product search", version="1", description=DESCRIPTION
)


__all__ = ["app", "logger", "metrics"]

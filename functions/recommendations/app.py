"""Recommendations API (FastAPI). The model is loaded once, when the container starts.

`GET /v1/recommendations/{user_id}` ranks items for a user the model was trained with (and
the most popular items for anyone else); `POST /v1/recommendations` ranks them for an
anonymous session's recent items. Seen items are never recommended.
"""

from __future__ import annotations

import time
from typing import Annotated

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Path, Query, Request

from aibackend.http import problem_responses, request_id, serve_openapi, service_app
from aibackend.masking import masked_logger
from aibackend.recommend.recommender import load_recommender
from aibackend.recommend.sessions import session_store
from aibackend.serving import ModelHealth

from .recommending import (
    DEFAULT_K,
    MAX_ID_LENGTH,
    MAX_K,
    SessionRecommendations,
    SessionRequest,
    UserRecommendations,
    recommend_for_session,
    recommend_for_user,
)

logger = masked_logger()
metrics = Metrics()

MODEL = load_recommender()
#: Live session profiles (`[resources] tables`), written by functions/shop_events.
SESSIONS = session_store()
logger.append_keys(model_name=MODEL.name, model_version=MODEL.version)

TITLE = "Recommendations"
DESCRIPTION = (
    "Product recommendations from item embeddings: personalized for known users and for "
    "anonymous sessions' recent items, popular items otherwise."
)
app = service_app(TITLE, DESCRIPTION)

v1 = APIRouter(prefix="/v1/recommendations")


def _record(result: UserRecommendations | SessionRecommendations) -> None:
    metrics.add_metric(name="Recommendations", unit=MetricUnit.Count, value=len(result.results))
    if result.strategy == "popularity":
        metrics.add_metric(name="PopularityFallbacks", unit=MetricUnit.Count, value=1)


# Declared before `/{user_id}`: FastAPI matches routes in order.
@v1.get("/health", response_model=ModelHealth)
async def health() -> ModelHealth:
    """Liveness and the model version served (public: no key needed)."""
    return ModelHealth.of(MODEL)


UserId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="The user's id")]


@v1.get("/{user_id}", response_model=UserRecommendations, responses=problem_responses(422))
async def for_user(
    request: Request,
    user_id: UserId,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many items (at most)")] = DEFAULT_K,
    session: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9._:-]+$",
            description="A shop session id: rank from the items it viewed (its live profile, "
            "fed by `Product Viewed` events), when the model knows any of them",
        ),
    ] = None,
) -> UserRecommendations:
    """Top `k` items the user has not interacted with yet. A user the model does not know
    gets the most popular items, with `strategy` = `popularity`. With `session`, the
    session's recently viewed items (decayed: `aibackend.recommend.sessions`) rank instead,
    excluded from the answer; `session_items` says how many were used."""
    live = SESSIONS.profile(session, time.time()) if session else []
    result = recommend_for_user(user_id, k, MODEL, request_id(request), live)
    _record(result)
    return result


# 400: a body that is not UTF-8 JSON; 413: over the route's max_body_kb (gateway); 422: invalid.
@v1.post("", response_model=SessionRecommendations, responses=problem_responses(400, 413, 422))
async def for_session(request: Request, body: SessionRequest) -> SessionRecommendations:
    """Top `k` items for an anonymous session, from the items it touched (which are excluded);
    unknown item ids are ignored and listed in `unknown_items`."""
    result = recommend_for_session(body, MODEL, request_id(request))
    _record(result)
    return result


serve_openapi(
    app,
    "/v1/recommendations/openapi.json",
    v1,
    title=TITLE,
    version="1",
    description=DESCRIPTION,
)
app.include_router(v1)

__all__ = ["app", "logger", "metrics"]

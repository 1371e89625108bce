"""Recommendation requests and responses: typed in, typed out; no HTTP, no AWS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from aibackend.recommend.recommender import Ranked, Recommender, Strategy
from aibackend.serving import Envelope, Prediction, inference_id, model_ref

#: Largest `k`: the length of the ranked answer the graph computes.
MAX_K = 100
DEFAULT_K = 10
#: A session's recent items (clicks, views, carts) taken per request.
MAX_RECENT_ITEMS = 200
MAX_ID_LENGTH = 128

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
K = Annotated[int, Field(ge=1, le=MAX_K, description="How many items to return (at most)")]

STRATEGY = (
    "`personalized`: ranked from the user's (or session's) items; `popularity`: the most "
    "popular items, because the model knows no item of this user or session"
)


class SessionRequest(BaseModel):
    """An anonymous session: the items it touched, most recent last."""

    model_config = ConfigDict(extra="forbid")

    recent_items: Annotated[
        list[ItemId],
        Field(
            max_length=MAX_RECENT_ITEMS,
            description="Item ids the session interacted with; unknown ids are ignored and "
            "listed in `unknown_items`; none known (or an empty list): popular items",
        ),
    ]
    k: K = DEFAULT_K


class RecommendedItem(Prediction):
    rank: Annotated[int, Field(ge=1, description="1 is the best")]
    item_id: str
    score: Annotated[
        float,
        Field(
            description="Higher is better; comparable within one response (personalized "
            "affinity, or the item's share of users for `popularity`)"
        ),
    ]


Results = Annotated[
    list[RecommendedItem],
    Field(
        description="Best first; never an item already seen; fewer than `k` when fewer "
        "unseen items remain"
    ),
]


class UserRecommendations(Envelope):
    user_id: str
    strategy: Annotated[Strategy, Field(description=STRATEGY)]
    session_items: Annotated[
        int,
        Field(
            ge=0,
            description="Items of the `session`'s live profile the ranking used (0: no session, "
            "or none of its items known: ranked for the user)",
        ),
    ] = 0
    results: Results


class SessionRecommendations(Envelope):
    strategy: Annotated[Strategy, Field(description=STRATEGY)]
    unknown_items: Annotated[
        list[str], Field(description="`recent_items` the model does not know, ignored")
    ]
    results: Results


def _results(ranked: Ranked) -> list[RecommendedItem]:
    return [
        RecommendedItem(inference_id=inference_id(), rank=rank, item_id=item, score=score)
        for rank, (item, score) in enumerate(zip(ranked.item_ids, ranked.scores, strict=True), 1)
    ]


def recommend_for_user(
    user_id: str,
    k: int,
    model: Recommender,
    request_id: str,
    session_items: Sequence[str] = (),
) -> UserRecommendations:
    """Top `k` items for the session's live profile (`session_items`, those excluded) when the
    model knows any of them; otherwise a known user's top `k` unseen items, and the most
    popular ones for an unknown user."""
    used = 0
    ranked = model.for_items(session_items, k) if session_items else None
    if ranked is not None and ranked.strategy == "personalized":
        used = len(session_items) - len(ranked.unknown_items)
    else:
        ranked = model.for_user(user_id, k)
    return UserRecommendations(
        request_id=request_id,
        model=model_ref(model),
        user_id=user_id,
        strategy=ranked.strategy,
        session_items=used,
        results=_results(ranked),
    )


def recommend_for_session(
    body: SessionRequest, model: Recommender, request_id: str
) -> SessionRecommendations:
    """Top `k` items for an anonymous session's recent items (those excluded)."""
    ranked = model.for_items(body.recent_items, body.k)
    return SessionRecommendations(
        request_id=request_id,
        model=model_ref(model),
        strategy=ranked.strategy,
        unknown_items=list(ranked.unknown_items),
        results=_results(ranked),
    )

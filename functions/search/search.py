"""Product search logic: a query in, the closest catalog products out; no HTTP, no AWS."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from aibackend.embeddings.client import EndpointClient, EndpointResponseError
from aibackend.embeddings.contract import (
    PRODUCTS_INDEX,
    InvocationRequest,
    Match,
    Search,
    valid_unicode,
)
from aibackend.serving import Envelope, ModelRef, Prediction, inference_id

MAX_QUERY_CHARS = 512
MAX_K = 50

Query = Annotated[
    str, Field(min_length=1, max_length=MAX_QUERY_CHARS), AfterValidator(valid_unicode)
]


class ProductFields(BaseModel):
    """What the index keeps of each product."""

    name: str
    category: str
    description: str
    price: Annotated[float, Field(description="US dollars")]


class ProductHit(Prediction):
    rank: Annotated[int, Field(ge=1, description="1 is the closest product")]
    score: Annotated[float, Field(description="Cosine similarity of query and product, -1 to 1")]
    product_id: str
    name: str
    category: str
    description: str
    price: Annotated[float, Field(description="US dollars")]


class SearchResponse(Envelope):
    query: str
    results: list[ProductHit]


def _hit(rank: int, match: Match) -> ProductHit:
    try:
        fields = ProductFields.model_validate(match.document)
    except ValidationError as e:
        raise EndpointResponseError(
            f"the {PRODUCTS_INDEX!r} index holds a document that is not a product "
            f"({match.id}: {e.errors()[0]['msg']}); rebuild the model with `make embeddings`"
        ) from e
    return ProductHit(
        inference_id=inference_id(),
        rank=rank,
        product_id=match.id,
        score=match.score,
        **fields.model_dump(),
    )


def search(query: str, k: int, client: EndpointClient, request_id: str) -> SearchResponse:
    """One endpoint call: embed the query and rank the products index, best first."""
    answer = client.invoke(
        InvocationRequest(
            inputs=[query],
            search=Search(index=PRODUCTS_INDEX, top_k=k),
            return_embeddings=False,
        )
    )
    (matches,) = answer.matches or [[]]  # one list per input: the client checks the shape
    return SearchResponse(
        request_id=request_id,
        model=ModelRef(name=answer.model.name, version=answer.model.version),
        query=query,
        results=[_hit(rank, m) for rank, m in enumerate(matches, start=1)],
    )

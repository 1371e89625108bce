"""Embedding logic: typed in, typed out; the endpoint does the inference."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aibackend.embeddings.client import EndpointClient
from aibackend.embeddings.contract import InvocationRequest, valid_unicode
from aibackend.serving import Envelope, ModelRef, Prediction, inference_id

MAX_TEXTS = 64
MAX_CHARS = 2048

Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARS), AfterValidator(valid_unicode)]


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: Annotated[
        list[Text],
        Field(
            min_length=1,
            max_length=MAX_TEXTS,
            description=f"1 to {MAX_TEXTS} texts of 1 to {MAX_CHARS} characters",
        ),
    ]


class Embedding(Prediction):
    index: Annotated[int, Field(ge=0, description="Position of the text in the request")]
    embedding: Annotated[
        list[float], Field(description="Unit length: the dot product of two is their cosine")
    ]
    tokens: Annotated[int, Field(ge=0, description="Word pieces of the text, [CLS]/[SEP] included")]
    truncated: Annotated[
        bool, Field(description="The model read only the first `max_tokens` word pieces")
    ]


class EmbedResponse(Envelope):
    dimension: int
    max_tokens: int
    results: list[Embedding]


def embed(texts: list[str], client: EndpointClient, request_id: str) -> EmbedResponse:
    """One endpoint call for the whole request (the server batches it by 32)."""
    answer = client.invoke(InvocationRequest(inputs=texts))
    vectors = answer.embeddings or []  # one per text: the client checks the answer's shape
    limit = answer.model.max_tokens
    return EmbedResponse(
        request_id=request_id,
        model=ModelRef(name=answer.model.name, version=answer.model.version),
        dimension=answer.model.dimension,
        max_tokens=limit,
        results=[
            Embedding(
                inference_id=inference_id(),
                index=i,
                embedding=vector,
                tokens=count,
                truncated=count > limit,
            )
            for i, (vector, count) in enumerate(zip(vectors, answer.tokens, strict=True))
        ],
    )

"""The JSON contract of the embeddings server's `POST /invocations`, shared by the server (which
validates requests with it) and the Lambda-side client (which validates answers with it).

```json
{"inputs": ["a red cotton t-shirt", "..."]}
-> {"embeddings": [[0.01, ...], ...], "tokens": [9, ...],
    "model": {"name": "embeddings", "version": 3, "sha256": "...", "dimension": 384,
              "max_tokens": 256}}

{"inputs": ["something to keep coffee hot"], "search": {"index": "products", "top_k": 5},
 "return_embeddings": false}
-> {"embeddings": null, "tokens": [9], "model": {...},
    "matches": [[{"id": "p-0042", "score": 0.61, "document": {...}}, ...]]}
```

Embeddings are L2-normalized, so a dot product is their cosine similarity. A text longer than
`model.max_tokens` word pieces is truncated (its `tokens` count says so).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: Texts the server runs through the model at once; a request with more is split.
MAX_BATCH = 32
#: Texts one invocation may carry (SageMaker's real-time payload limit is 25 MB).
MAX_INPUTS = 512
#: Characters of one text the server accepts; the model reads at most `max_tokens` of them.
MAX_TEXT_CHARS = 20_000
#: Matches one search may ask for.
MAX_TOP_K = 100
#: Name of the index the build step embeds the product catalog into.
PRODUCTS_INDEX = "products"


def valid_unicode(text: str) -> str:
    """Refuse strings that cannot be encoded (lone surrogates from `\\ud800` escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"text is not valid Unicode (a lone surrogate at position {e.start}); send "
            "well-formed UTF-8"
        ) from e
    return text


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS), AfterValidator(valid_unicode)]


class Search(BaseModel):
    """Nearest neighbours of each input in one of the model's indexes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")] = PRODUCTS_INDEX
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = 10


class InvocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
    search: Search | None = None
    #: Embeddings are always returned unless a search asks to leave them out.
    return_embeddings: bool = True


class ModelInfo(BaseModel):
    """Which artifact answered: the registry's name and version and the graph's sha256."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    version: int
    sha256: str
    dimension: int
    max_tokens: int


class Match(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    score: Annotated[float, Field(description="Cosine similarity, -1 to 1")]
    document: dict[str, Any]


class InvocationResponse(BaseModel):
    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model: ModelInfo
    embeddings: list[list[float]] | None
    #: Word pieces of each input, [CLS] and [SEP] included, before truncation to max_tokens.
    tokens: list[int]
    matches: list[list[Match]] | None = None

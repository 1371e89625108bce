"""What the functions in front of the embeddings endpoint share: the client, the 503 answer
with `Retry-After` and the health document."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from aibackend.embeddings.client import (
    CircuitState,
    EndpointClient,
    EndpointUnavailableError,
    endpoint_client,
)
from aibackend.embeddings.endpoints import EMBEDDINGS
from aibackend.http import ProblemResponse, problem

#: Told to callers while the endpoint is not configured: only `aib dev` leaves it so.
UNAVAILABLE_HINT = (
    f"Locally: build the model with `{EMBEDDINGS.build_hint}`; `aib dev` then starts its "
    "server. On AWS: deploy the AibEndpoints stack."
)


def embeddings_client() -> EndpointClient:
    """The client of the embeddings endpoint this function is configured for (once per
    container: its circuit breaker must see every call)."""
    return endpoint_client(EMBEDDINGS.name, unavailable_hint=UNAVAILABLE_HINT)


def install_unavailable_handler(app: FastAPI) -> None:
    """503 problems for an unavailable endpoint, with `Retry-After` while the circuit is open
    (after `install_problem_handlers`: this more specific handler wins)."""

    async def on_unavailable(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, EndpointUnavailableError)
        headers = (
            {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
            if exc.retry_after_s
            else None
        )
        return problem(503, exc.title, str(exc), instance=request.url.path, headers=headers)

    app.add_exception_handler(EndpointUnavailableError, on_unavailable)


class EndpointHealth(BaseModel):
    """Liveness of the function and what it knows of its endpoint, without calling it (a
    public health check must not spend GPU time)."""

    status: Literal["ok"] = "ok"
    endpoint: str
    configured: Annotated[bool, Field(description="Whether this function knows the endpoint")]
    circuit: Annotated[
        Literal["closed", "open", "half_open"],
        Field(description="open: recent calls failed, calls are paused"),
    ]


def endpoint_health(client: EndpointClient) -> EndpointHealth:
    state: CircuitState = client.breaker.state
    return EndpointHealth(endpoint=client.name, configured=client.configured, circuit=state.value)

"""The endpoints this project can run, by the name functions declare in `endpoints = [...]`.

An endpoint is a SageMaker-contract inference server (`GET /ping`, `POST /invocations`)
hosting one registry model: a SageMaker endpoint on AWS (`infra/constructs/endpoint.py`,
image built from `container`), a loopback process of `aib dev` locally (`server_module`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aibackend.errors import ConfigError


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    #: The registry model the server loads (its production version).
    model: str
    #: `python -m <server_module> --model-dir DIR --port N` serves it.
    server_module: str
    #: Folder (from the project root) of the serving image's Dockerfile.
    container: str
    #: What builds the model, for messages ("not built (make embeddings)").
    build_hint: str


EMBEDDINGS = EndpointSpec(
    name="embeddings",
    model="embeddings",
    server_module="aibackend.embeddings.server",
    container="containers/embeddings",
    build_hint="make embeddings",
)

ENDPOINTS: dict[str, EndpointSpec] = {EMBEDDINGS.name: EMBEDDINGS}


def endpoint_spec(name: str) -> EndpointSpec:
    spec = ENDPOINTS.get(name)
    if spec is None:
        raise ConfigError(
            f"no endpoint named {name!r}: this project runs {', '.join(sorted(ENDPOINTS))}"
        )
    return spec

"""The embeddings inference server, following the SageMaker inference-container contract.

- `GET /ping`: 200 once the model is loaded and the batcher runs (SageMaker's health check);
  503 otherwise.
- `POST /invocations`: `application/json` in and out (see `aibackend.embeddings.contract`).
  Requests are cut into batches of up to 32 texts; concurrent requests share batches.

Run it as `python -m aibackend.embeddings.server [serve] [--model-dir DIR] [--port N]`: the
model folder defaults to /opt/ml/model (where SageMaker unpacks model.tar.gz), the port to
`SAGEMAKER_BIND_TO_PORT` or 8080, the backend to `AIB_EMBEDDINGS_BACKEND` (onnx | torch).
The container's entry point runs exactly this; `aib dev` runs it on a loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from aibackend.embeddings.artifact import SAGEMAKER_MODEL_DIR, index_file
from aibackend.embeddings.backends import (
    THREADS_ENV,
    Backend,
    BackendKind,
    backend_kind,
    load_backend,
)
from aibackend.embeddings.batching import Batcher
from aibackend.embeddings.contract import (
    MAX_BATCH,
    InvocationRequest,
    InvocationResponse,
    ModelInfo,
)
from aibackend.embeddings.index import VectorIndex, load_index
from aibackend.http import install_problem_handlers, problem

log = logging.getLogger("aib.embeddings")

JSON = "application/json"
#: SageMaker sets this for multi-container endpoints; 8080 otherwise.
PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
DEFAULT_PORT = 8080
#: How long a batch that is not full waits for texts of concurrent requests.
MAX_WAIT_ENV = "AIB_EMBEDDINGS_MAX_WAIT_MS"


@dataclass(frozen=True)
class Loaded:
    backend: Backend
    batcher: Batcher
    indexes: dict[str, VectorIndex]
    info: ModelInfo


def _load(backend: Backend, max_wait_s: float) -> Loaded:
    artifact = backend.artifact
    names = artifact.index_names()
    artifact.verify(index_file(n) for n in names)
    indexes = {
        n: load_index(artifact.path(index_file(n)), dimension=artifact.dimension) for n in names
    }
    batcher = Batcher(backend.encode, max_batch=MAX_BATCH, max_wait_s=max_wait_s).start()
    return Loaded(backend=backend, batcher=batcher, indexes=indexes, info=artifact.info())


def create_app(load: Callable[[], Backend], *, max_wait_s: float = 0.002) -> FastAPI:
    """The server app; `load` builds the backend when the app starts (before it takes traffic)."""
    loaded: list[Loaded] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded.append(_load(load(), max_wait_s))
        try:
            yield
        finally:
            loaded.pop().batcher.stop()

    app = FastAPI(
        title="Embeddings server (SageMaker inference contract)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_problem_handlers(app)

    @app.get("/ping")
    async def ping() -> Response:
        """200 while the model is loaded and batches run; SageMaker's health check."""
        if not loaded or not loaded[0].batcher.alive:
            return problem(503, "Service Unavailable", "the model is not loaded")
        state = loaded[0]
        return JSONResponse(
            {
                "status": "ok",
                "model": state.info.model_dump(),
                "device": state.backend.device,
                "indexes": sorted(state.indexes),
                # Forward passes and texts since start: texts / batches is the batch fill.
                "batches": state.batcher.batches,
                "texts": state.batcher.texts,
            }
        )

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        """Embed `inputs`; with `search`, also their nearest documents in an index."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != JSON:
            return problem(
                415,
                "Unsupported Media Type",
                f"send the request as {JSON} (got {content_type or 'no content type'})",
                instance="/invocations",
            )
        try:
            body = InvocationRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from e
        state = loaded[0]
        index = None
        if body.search is not None:
            index = state.indexes.get(body.search.index)
            if index is None:
                known = ", ".join(sorted(state.indexes)) or "none"
                return problem(
                    404,
                    "Not Found",
                    f"this model has no index {body.search.index!r} (indexes: {known})",
                    instance="/invocations",
                )
        encoded = await asyncio.wrap_future(state.batcher.submit(body.inputs))
        response = InvocationResponse.model_construct(
            model=state.info,
            embeddings=encoded.vectors.tolist() if body.return_embeddings else None,
            tokens=encoded.tokens,
            matches=(
                index.search(encoded.vectors, body.search.top_k)
                if index is not None and body.search is not None
                else None
            ),
        )
        return Response(response.model_dump_json(), media_type=JSON)

    return app


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m aibackend.embeddings.server", description=__doc__.split("\n\n")[0]
    )
    # SageMaker starts a serving container as `docker run <image> serve`.
    p.add_argument("command", nargs="?", choices=["serve"], default="serve")
    p.add_argument("--model-dir", type=Path, default=SAGEMAKER_MODEL_DIR)
    p.add_argument("--host", default="0.0.0.0")  # a container's port is its API
    p.add_argument("--port", type=int, default=int(os.environ.get(PORT_ENV, DEFAULT_PORT)))
    p.add_argument("--backend", choices=["onnx", "torch"], default=None)
    p.add_argument("--threads", type=int, default=int(os.environ.get(THREADS_ENV, "0")))
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--parent-pid",
        type=int,
        help="stop when this process is gone (`aib dev` passes its own: a killed parent "
        "must not leave the server behind)",
    )
    return p


def _exit_with_parent(pid: int, period_s: float = 1.0) -> None:
    """SIGTERM this process (a graceful uvicorn shutdown) once `pid` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(period_s)
        log.warning("parent process %d is gone: stopping", pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="aib-parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    kind: BackendKind = args.backend or backend_kind()
    max_wait_s = float(os.environ.get(MAX_WAIT_ENV, "2")) / 1000

    def load() -> Backend:
        return load_backend(args.model_dir, kind, threads=args.threads)

    app = create_app(load, max_wait_s=max_wait_s)
    if args.parent_pid is not None:
        _exit_with_parent(args.parent_pid)
    # SageMaker's front end keeps connections open: outlive its idle timeout (60 s).
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, timeout_keep_alive=75
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

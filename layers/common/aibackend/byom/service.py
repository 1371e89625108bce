"""The one generic model service: every bring-your-own model is served by this code.

A scaffolded `functions/<name>/handler.py` is two lines, `handler = build_handler("<name>")`.
At INIT the model version is loaded (`runtime.load_served_model`), its request and response
models are built from its card (`api.build_schema`) and these routes are served:

- `GET  /v1/models/<name>/health`: liveness and the version served (public);
- `POST /v1/models/<name>/predict`: one record or `{"records": [...]}` (up to 1,000);
- `GET  /v1/models/<name>/card`: the model card (model.json);
- `GET  /v1/models/<name>/openapi.json`: this model's OpenAPI document, from the same schema.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations
# at run time, and the request type is a local built per model.

import warnings
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import JSONResponse

from aibackend.byom import route_prefix
from aibackend.byom.api import MAX_RECORDS, ModelHealth, build_schema, predict, records_of
from aibackend.byom.runtime import ServedModel, load_served_model
from aibackend.http import install_problem_handlers, problem_responses, request_id
from aibackend.masking import masked_logger
from aibackend.models.card import ModelCard

# GET routes record no metrics by design; Powertools would warn about that on every call.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _description(model: ServedModel) -> str:
    card = model.card
    if model.contract.is_classifier:
        what = f"classifies records into {', '.join(repr(c) for c in card.classes)}"
    else:
        what = "predicts a value per record"
    text = f"Model {card.name!r} (version {card.version}) {what}."
    return f"{text} {card.description}" if card.description else text


def build_app(model: ServedModel, metrics: Metrics | None = None) -> FastAPI:
    """The FastAPI app serving `model`, its request schema built from the model's card."""
    schema = build_schema(model)
    description = _description(model)
    app = FastAPI(
        title=f"Model {model.name}",
        version=str(model.version),
        description=description,
        # Served under the model's own prefix instead (below), so API Gateway can route it.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    # 400: a body that is not UTF-8 JSON; 413: over the route's max_body_kb; 422: invalid.
    router = APIRouter(prefix=route_prefix(model.name), responses=problem_responses(400, 413, 422))

    @router.post(
        "/predict",
        response_model=schema.response,
        summary=f"Predict with model {model.name}",
        description=(
            f'Score one record, or up to {MAX_RECORDS:,} as `{{"records": [...]}}`, in one '
            f"`session.run`; results come back in request order. Each result has "
            + (
                "`label` (the most probable class) and `probabilities` (every class's)."
                if model.contract.is_classifier
                else "`value`, the prediction."
            )
        ),
    )
    # The body's type is built per model: mypy cannot follow a type held in a variable.
    async def predict_records(
        request: Request,
        body: Annotated[schema.request, Body()],  # type: ignore[name-defined]
    ) -> Any:
        records, batch = records_of(body, schema)
        result = predict(model, schema, records, request_id(request), batch=batch)
        if metrics is not None:
            metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(records))
        return result

    @router.get("/health", response_model=ModelHealth)
    async def health() -> ModelHealth:
        """Liveness and the model version served (public: no key needed)."""
        return ModelHealth(model=model.name, version=model.version)

    @router.get("/card", response_model=ModelCard)
    async def card() -> ModelCard:
        """The model card (model.json): features, metrics next to their baselines, data."""
        return model.card

    app.include_router(router)
    document: dict[str, Any] = {}

    @app.get(f"{route_prefix(model.name)}/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        if not document:
            from fastapi.openapi.utils import get_openapi  # only when a document is asked for

            document.update(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=description,
                    routes=router.routes,
                )
            )
        return JSONResponse(document)

    return app


def build_handler(name: str) -> Handler:
    """The Lambda handler of model `name`'s service: Powertools around Mangum around FastAPI.

    Loads the model now (call it at module level: INIT pays the load, not the first request).
    """
    from mangum import Mangum

    logger = masked_logger()
    metrics = Metrics()
    model = load_served_model(name)
    logger.append_keys(model_name=model.name, model_version=model.version)
    # lifespan="off": otherwise Mangum runs the ASGI lifespan on every invocation.
    asgi = Mangum(build_app(model, metrics), lifespan="off")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return asgi(event, context)

    return handler

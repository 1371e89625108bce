"""Lambda entry point: API Gateway REST proxy event -> FastAPI via Mangum."""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from .app import app, logger, metrics

warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

_asgi = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _asgi(event, context)  # type: ignore[no-any-return]

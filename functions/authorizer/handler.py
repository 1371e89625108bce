"""API Gateway REQUEST authorizer: `aibackend.auth` decides, this wires it to the environment.

CDK sets `AIB_ROUTES` (every declared route's access and scopes), `AIB_TABLE_API_KEYS` and the
`AIB_TOKEN_*` issuer settings (the Cognito user pool). Under `aib invoke authorizer` the
routes come from the catalog and tokens from the development signing key instead.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.auth import apigateway
from aibackend.auth.decision import Authorizer
from aibackend.auth.factory import key_store, token_verifier
from aibackend.catalog import Route, default_functions_dir, load_catalog
from aibackend.masking import masked_logger
from aibackend.settings import platform_settings

logger = masked_logger()


@cache
def _setup() -> tuple[Authorizer, dict[tuple[str, str], Route]]:
    settings = platform_settings()
    raw = os.environ.get(apigateway.ROUTES_ENV)
    if raw is not None:
        routes = apigateway.decode_routes(raw)
        plans = None
    else:
        catalog = load_catalog(default_functions_dir())
        routes = {(r.method, r.path): r for _, r in catalog.routes()}
        plans = catalog.plans
    return Authorizer(key_store(settings, plans), token_verifier(settings)), routes


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    authorizer, routes = _setup()
    result = apigateway.authorize_event(event, authorizer, routes)
    # Never log the key or the token: the principal id and the outcome are enough.
    logger.info(
        "authorized",
        extra={
            "route": f"{event.get('httpMethod')} {event.get('resource')}",
            "principal": result["principalId"],
            "effect": result["policyDocument"]["Statement"][0]["Effect"],
            "reason": result.get("context", {}).get("reason"),
        },
    )
    return result

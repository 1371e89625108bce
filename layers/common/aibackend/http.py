"""HTTP edge helpers: RFC 9457 problem details for every error a FastAPI service returns.

Logic raises `AibError`s; only this module turns them (and FastAPI's validation errors) into
`application/problem+json` responses that say what to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aibackend.errors import AibError

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger(__name__)

#: Location segments that are pydantic union tags, not field names.
_TAGS = {"single", "batch"}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


#: JSON Schema of the problem documents every error of the API is answered with (RFC 9457).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "One entry per invalid field (422 only)",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the problem documents a route may answer with (replacing
    FastAPI's default 422, which documents a shape this API never sends)."""
    return {
        s: {"description": _title(s), "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
        for s in statuses
    }


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def field_path(loc: Sequence[int | str]) -> str:
    """`("body", "batch", "transactions", 3, "amount")` -> `transactions[3].amount`."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _TAGS:
            out += f".{part}" if out else str(part)
    return out or str(loc[0] if loc else "body")


#: pydantic's error types for "the input is not an object with fields".
_NOT_AN_OBJECT = {"model_attributes_type", "model_type", "dict_type"}
_JSON_TYPES = {
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def _body_message(e: Any) -> str | None:
    """What to fix when the body as a whole is wrong (pydantic's own words describe Python
    types: "a valid dictionary or object to extract fields from")."""
    kind, loc, value = e.get("type"), tuple(e.get("loc", ())), e.get("input")
    if kind == "json_invalid":
        reason = (e.get("ctx") or {}).get("error") or "not valid JSON"
        at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        return f"the body is not valid JSON: {reason}{at}"
    if not loc or loc[0] != "body" or field_path(loc) != "body":  # a field inside the body
        return None
    if kind == "missing":
        return "a JSON body is required"
    if kind not in _NOT_AN_OBJECT:
        return None
    if isinstance(value, bytes | bytearray):
        # FastAPI parses a body as JSON only when the request says it is JSON.
        return "the body was not read as JSON: send it with `content-type: application/json`"
    if value is None:
        return "the body must be a JSON object, not null"
    return f"the body must be a JSON object, not {_JSON_TYPES.get(type(value), 'a scalar')}"


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        item = {"field": field_path(e.get("loc", ())), "message": e.get("msg", "invalid")}
        if (message := _body_message(e)) is not None:
            item = {"field": "body", "message": message}
        out.append(item)
    return out


def service_app(title: str, description: str, version: str = "1") -> FastAPI:
    """A function's FastAPI app, with problem+json errors and no documents of its own: each
    API version serves its OpenAPI under its own prefix (`serve_openapi`), so API Gateway can
    route it, and `aib dev` merges them into /v<n>/openapi.json and /openapi.json."""
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    return app


def install_problem_handlers(app: FastAPI) -> None:
    """Register handlers so every error leaves the app as `application/problem+json`."""

    async def on_validation(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(exc.errors())
        fields = ", ".join(sorted({e["field"] for e in errors}))
        return problem(
            422,
            "Invalid request",
            f"{len(errors)} invalid field(s): {fields}",
            instance=request.url.path,
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem(
            exc.status_code,
            _title(exc.status_code),
            str(exc.detail),
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    async def on_aib(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, AibError)
        return problem(exc.status, exc.title, str(exc), instance=request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> ProblemResponse:
        _log.exception("unhandled error on %s", request.url.path)
        return problem(
            500,
            "Internal error",
            "The service failed unexpectedly; retry later and report the request id if it persists",
            instance=request.url.path,
        )

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(AibError, on_aib)
    app.add_exception_handler(Exception, on_unexpected)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def request_id(request: Request) -> str:
    """API Gateway's request id (also set by the local gateway), else the caller's, else new."""
    event = request.scope.get("aws.event") or {}
    rid = (event.get("requestContext") or {}).get("requestId")
    if rid:
        return str(rid)
    header = request.headers.get("x-request-id")
    if header:
        return header
    import uuid

    return str(uuid.uuid4())


def serve_openapi(
    app: FastAPI, path: str, router: APIRouter, *, title: str, version: str, description: str
) -> None:
    """Serve the OpenAPI document of `router`'s routes at `GET path` (one per API version, so
    API Gateway can route it like any other path; `aib dev` merges them). Built on the first
    request: most invocations never ask for it, and cold starts should not pay for it."""
    doc: dict[str, Any] = {}

    async def openapi() -> JSONResponse:
        if not doc:
            from fastapi.openapi.utils import get_openapi

            doc.update(
                get_openapi(
                    title=title, version=version, description=description, routes=router.routes
                )
            )
        return JSONResponse(doc)

    app.add_api_route(path, openapi, methods=["GET"], include_in_schema=False)

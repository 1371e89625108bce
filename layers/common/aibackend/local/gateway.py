"""The local API Gateway: HTTP requests -> REST proxy events -> the same Lambda handlers."""

from __future__ import annotations

import difflib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from aibackend.auth.decision import Denied
from aibackend.auth.local import LocalAccess, OverLimitError
from aibackend.catalog import Access, Catalog, Route
from aibackend.http import PROBLEM_SCHEMA
from aibackend.local.apigw import RouteTemplate, build_event, parse_response
from aibackend.local.dashboard_page import dashboard_routes
from aibackend.local.host import Host

log = logging.getLogger("aib.gateway")
PROBLEM = "application/problem+json"
#: A function that declares `GET <prefix>/openapi.json` contributes to the merged /openapi.json,
#: and to `/<version>/openapi.json` when its path starts with that version (`/v2/fraud/...`).
OPENAPI = "openapi.json"
_VERSION = re.compile(r"^v[0-9]+$")


def _problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


@dataclass(frozen=True)
class Binding:
    template: RouteTemplate
    route: Route
    host: Host


class BodyTooLargeError(Exception):
    """A request body over its route's `max_body_kb`; `seen` is how many bytes were counted."""

    def __init__(self, seen: int, declared: bool) -> None:
        super().__init__(seen)
        self.seen = seen
        self.declared = declared


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past `limit` bytes without reading (much) more than that.

    A `Content-Length` over the limit is refused before a byte is read; a chunked body, or
    one longer than its `Content-Length` says, is counted while it arrives and dropped at the
    first chunk that crosses the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(int(declared), declared=True)
    chunks: list[bytes] = []
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLargeError(seen, declared=False)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(binding: Binding, err: BodyTooLargeError) -> Response:
    route, limit = binding.route, binding.route.max_body_bytes
    size = (
        f"Content-Length {err.seen:,} bytes"
        if err.declared
        else f"the body passed {limit:,} bytes (stopped reading at {err.seen:,})"
    )
    return _problem(
        413,
        "Request body too large",
        f"{route.method} {route.path} accepts at most max_body_kb = {route.max_body_kb} "
        f"({limit:,} bytes; {binding.host.spec.name}'s function.toml): {size}",
        headers={"Connection": "close"},
        route=f"{route.method} {route.path}",
        max_body_kb=route.max_body_kb,
    )


#: How the merged OpenAPI documents describe `x-api-key` and bearer tokens.
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}
_ACCESS_ERRORS = {
    "401": "A credential is missing",
    "403": "The key or token is invalid, revoked, expired or lacks a scope",
    "429": "Over the key's usage plan (rate or daily quota); see Retry-After",
}


def document_access(doc: dict[str, Any], routes: list[Route]) -> None:
    """Each operation's `security` and access errors, from its route's declaration."""
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    for r in routes:
        op = doc["paths"].get(r.path, {}).get(r.method.lower())
        if op is None:
            continue
        if r.access is Access.PUBLIC:
            op["security"] = []
            continue
        op["security"] = [
            {"apiKey": [], "bearer": list(r.scopes)} if r.access is Access.TOKEN else {"apiKey": []}
        ]
        for status, description in _ACCESS_ERRORS.items():
            op.setdefault("responses", {}).setdefault(
                status,
                {"description": description, "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}},
            )


class RouteTable:
    """Routes of every function; literal segments win over `{param}` ones, like API Gateway."""

    def __init__(self, bindings: list[Binding]) -> None:
        self.bindings = sorted(
            bindings, key=lambda b: (b.template.resource.count("{"), -len(b.template.resource))
        )
        #: The declared resources, for `suggest`.
        self.resources = sorted({b.template.resource for b in bindings})

    def match(self, method: str, path: str) -> tuple[Binding | None, dict[str, str], list[str]]:
        allowed: list[str] = []
        for b in self.bindings:
            params = b.template.match(path)
            if params is None:
                continue
            if b.route.method == method:
                return b, params, []
            allowed.append(b.route.method)
        return None, {}, allowed

    def suggest(self, path: str) -> str | None:
        """A declared route a mistyped `path` was probably meant for: the same path without a
        trailing slash, or the closest declared resource."""
        trimmed = path.rstrip("/")
        if trimmed != path and any(b.template.match(trimmed) is not None for b in self.bindings):
            return trimmed
        close = difflib.get_close_matches(path, self.resources, n=1, cutoff=0.8)
        return close[0] if close else None


def build_gateway(
    catalog: Catalog,
    hosts: Mapping[str, Host],
    *,
    health: Callable[[], dict[str, Any]],
    access: LocalAccess,
) -> Starlette:
    """The gateway in front of `hosts`: routes, access (keys, tokens, usage plans: `access`),
    body limits, timeouts and problem responses, in API Gateway's order."""
    table = RouteTable(
        [
            Binding(RouteTemplate(r.method, r.path), r, hosts[spec.name])
            for spec, r in catalog.routes()
        ]
    )
    # A function hosted in this process is one execution environment, and Lambda never gives
    # one environment two requests at once: its requests wait their turn here (their timeout
    # counts the wait). Sixteen threads running one function's handler at once gave it no
    # parallelism (one GIL) but ~50 context switches a request and Powertools' module-level
    # logger and metrics to share. A hung invocation frees its turn at its timeout. Worker
    # processes (`--isolate`) bound concurrency themselves: their pool.
    turns = {name: anyio.CapacityLimiter(1) for name, h in hosts.items() if not h.enforces_timeout}

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        binding, params, allowed = table.match(request.method, path)
        if binding is None:
            if allowed:
                allow = ", ".join(sorted(allowed))
                return _problem(
                    405,
                    "Method not allowed",
                    f"{request.method} is not declared for {path}; use {allow}",
                    headers={"Allow": allow},
                )
            meant = table.suggest(path)
            hint = f"; did you mean {meant}?" if meant else ""
            return _problem(404, "Not found", f"no function declares a route for {path}{hint}")
        try:
            principal, authorizer = access.admit(binding.route, request.headers)
        except Denied as e:
            log.info("%s %s refused: %s %s", request.method, path, e.status, e.detail)
            return _problem(
                e.status,
                e.title,
                e.detail,
                headers={"WWW-Authenticate": e.challenge} if e.challenge else None,
            )
        except OverLimitError as e:
            lim = e.limited
            return _problem(
                429,
                "Too many requests",
                f"{lim.detail}; retry after {lim.retry_after_s} s",
                headers={"Retry-After": str(lim.retry_after_s)},
                limit=lim.reason,
            )
        try:
            body = await read_body(request, binding.route.max_body_bytes)
        except BodyTooLargeError as e:
            log.warning(
                "%s %s refused: body over max_body_kb = %s",
                request.method,
                path,
                binding.route.max_body_kb,
            )
            return _too_large(binding, e)
        event = build_event(
            method=request.method,
            path=path,
            resource=binding.route.path,
            path_parameters=params,
            headers=request.headers.items(),
            query=request.query_params.multi_items(),
            body=body,
            source_ip=request.client.host if request.client else "127.0.0.1",
            authorizer=authorizer,
            api_key_id=principal.key.key_id if principal is not None else None,
        )
        rid = event["requestContext"]["requestId"]
        host = binding.host
        t0 = time.perf_counter()
        # A worker process kills an invocation at its timeout itself (and does not count its
        # cold start, like Lambda); in process, the gateway stops waiting at the timeout.
        limit = None if host.enforces_timeout else host.spec.timeout_s
        try:
            with anyio.fail_after(limit):
                result = await anyio.to_thread.run_sync(
                    host.invoke,
                    event,
                    rid,
                    abandon_on_cancel=True,
                    limiter=turns.get(host.spec.name),
                )
        except TimeoutError:
            log.error("function %s timed out after %s s", host.spec.name, host.spec.timeout_s)
            return _problem(
                504,
                "Function timed out",
                f"{host.spec.name} ran past its timeout_s = {host.spec.timeout_s} (function.toml)",
                request_id=rid,
            )
        except Exception as e:  # a failing function must never take the gateway down
            log.exception("function %s failed", host.spec.name)
            return _problem(
                502,
                "Function error",
                f"{host.spec.name} raised {type(e).__name__}: {e}",
                request_id=rid,
            )
        try:
            status, headers, payload = parse_response(result)
        except ValueError as e:
            return _problem(502, "Malformed function response", str(e), request_id=rid)
        headers.append(("x-amzn-requestid", rid))
        log.debug(
            "%s %s -> %s in %.1f ms",
            request.method,
            path,
            status,
            (time.perf_counter() - t0) * 1000,
        )
        resp = Response(payload, status_code=status)
        resp.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in headers
            if k.lower() != "content-length"
        ] + [(b"content-length", str(len(payload)).encode())]
        return resp

    async def health_route(request: Request) -> Response:
        return Response(json.dumps(health(), indent=2), media_type="application/json")

    async def jwks_route(request: Request) -> Response:
        """The development issuer's public keys (what a Cognito user pool serves on AWS)."""
        return JSONResponse(access.jwks())

    docs = [b for b in table.bindings if b.route.method == "GET" and b.route.path.endswith(OPENAPI)]

    async def merged(
        request: Request, sources: list[Binding], title: str, version: str = "1"
    ) -> Response:
        """Functions' own OpenAPI documents, merged (paths and component schemas)."""
        out: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": {},
            "components": {"schemas": {}},
        }
        for b in sources:
            event = build_event(
                method="GET",
                path=b.route.path,
                resource=b.route.path,
                path_parameters=None,
                headers=request.headers.items(),
                query=(),
                body=b"",
            )
            try:
                status, _, payload = parse_response(
                    await anyio.to_thread.run_sync(b.host.invoke, event, None)
                )
            except Exception:  # one broken function must not hide every other one's routes
                log.exception("function %s failed to serve %s", b.host.spec.name, b.route.path)
                continue
            if status != 200:
                continue
            doc = json.loads(payload)
            out["paths"].update(doc.get("paths", {}))
            out["components"]["schemas"].update(doc.get("components", {}).get("schemas", {}))
        document_access(out, [b.route for b in table.bindings])
        return Response(json.dumps(out), media_type="application/json")

    async def openapi_route(request: Request) -> Response:
        """Every function's own OpenAPI document, merged."""
        return await merged(request, docs, "aibackend (local)")

    def version_route(version: str) -> StarletteRoute:
        """`/<version>/openapi.json`: the documents served under `/<version>/...`, merged."""
        sources = [b for b in docs if b.route.path.startswith(f"/{version}/")]

        async def serve(request: Request) -> Response:
            return await merged(
                request, sources, f"aibackend {version} (local)", version.removeprefix("v")
            )

        return StarletteRoute(f"/{version}/{OPENAPI}", serve, methods=["GET"])

    declared = {b.route.path for b in table.bindings}
    versions = sorted(
        {
            v
            for b in docs
            if _VERSION.match(v := b.route.path.split("/")[1])
            # a function that declares `/<version>/openapi.json` itself keeps it
            and f"/{v}/{OPENAPI}" not in declared
        }
    )

    # Every method reaches `dispatch`, so an undeclared one gets our 405 with its Allow header.
    methods = [
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "HEAD",
        "OPTIONS",
        "TRACE",
        "QUERY",
        "CONNECT",
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        """Errors Starlette raises before a route runs leave as problems too."""
        status = getattr(exc, "status_code", 500)
        return _problem(status, HTTPStatus(status).phrase, str(getattr(exc, "detail", exc)))

    return Starlette(
        exception_handlers={HTTPException: http_error},
        routes=[
            StarletteRoute("/health", health_route, methods=["GET"]),
            StarletteRoute("/.well-known/jwks.json", jwks_route, methods=["GET"]),
            StarletteRoute(f"/{OPENAPI}", openapi_route, methods=["GET"]),
            *(version_route(v) for v in versions),
            *dashboard_routes(access.settings),
            StarletteRoute("/{path:path}", dispatch, methods=methods),
        ],
    )

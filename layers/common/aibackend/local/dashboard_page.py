"""`aib dev`'s monitoring dashboard: `GET /dashboard` (the page), `GET /dashboard/dashboard.js`
(its script: SVG charts drawn in the browser, no library, nothing fetched from the internet)
and `GET /dashboard/data.json?model=fraud&hours=24&span=hour` (`aibackend.local.dashboard`).

Local tooling, like `/health` and `/openapi.json`: no API key, but answered only to loopback
clients, so `aib dev --host 0.0.0.0` does not publish the monitoring data to the network.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from importlib.resources import files
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aibackend.settings import PlatformSettings

if TYPE_CHECKING:
    from aibackend.local.dashboard import Dashboard, Query

PROBLEM = "application/problem+json"
MAX_HOURS = 24 * 31
_MODEL = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_STATIC = files("aibackend.local") / "static"


class QueryError(ValueError):
    """A query parameter the dashboard cannot use; the message says what it accepts."""


def parse_query(params: dict[str, str]) -> Query:
    from aibackend.local.dashboard import Query

    unknown = sorted(set(params) - {"model", "hours", "span"})
    if unknown:
        raise QueryError(f"unknown parameter(s) {', '.join(unknown)}; use model, hours, span")
    model = params.get("model") or None
    if model is not None and not _MODEL.match(model):
        raise QueryError(f"model {model!r}: a registry name such as fraud ([a-z][a-z0-9_-]*)")
    raw = params.get("hours", "24")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_HOURS:
        raise QueryError(f"hours {raw!r}: a whole number of hours from 1 to {MAX_HOURS}")
    span = params.get("span", "hour")
    if span not in ("hour", "day"):
        raise QueryError(f"span {span!r}: hour (hourly reports) or day (day-so-far reports)")
    return Query(model=model, hours=int(raw), span="hour" if span == "hour" else "day")


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _problem(status: int, title: str, detail: str) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _refused(request: Request) -> Response | None:
    host = request.client.host if request.client else None
    if is_loopback(host):
        return None
    return _problem(
        403,
        "Forbidden",
        f"the dashboard is served to loopback clients only (this request came from {host}); "
        "open it on the machine running `aib dev`, or tunnel: ssh -L 8000:127.0.0.1:8000",
    )


class _Lazy:
    """The read model, built on the first data request: the gateway is rebuilt whenever a
    function is added, and the monitoring code it imports is not needed before."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self._board: Dashboard | None = None
        self._lock = threading.Lock()

    def get(self) -> Dashboard:
        with self._lock:
            if self._board is None:
                from aibackend.local.dashboard import Dashboard

                self._board = Dashboard(self.settings)
            return self._board


def dashboard_routes(settings: PlatformSettings) -> list[Route]:
    """The dashboard's routes over the state folder of `settings`."""
    board = _Lazy(settings)

    async def page(request: Request) -> Response:
        return _refused(request) or Response(
            (_STATIC / "dashboard.html").read_bytes(), media_type="text/html; charset=utf-8"
        )

    async def script(request: Request) -> Response:
        return _refused(request) or Response(
            (_STATIC / "dashboard.js").read_bytes(),
            media_type="text/javascript; charset=utf-8",
        )

    async def data(request: Request) -> Response:
        refused = _refused(request)
        if refused is not None:
            return refused
        try:
            query = parse_query(dict(request.query_params))
        except QueryError as e:
            return _problem(400, "Bad dashboard query", str(e))
        got = await anyio.to_thread.run_sync(lambda: board.get().data(query))
        return Response(
            got.model_dump_json(),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return [
        Route("/dashboard", page, methods=["GET"]),
        Route("/dashboard/dashboard.js", script, methods=["GET"]),
        Route("/dashboard/data.json", data, methods=["GET"]),
    ]

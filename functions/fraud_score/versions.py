"""API version lifecycle: `/v1` answers with RFC 9745 `Deprecation`, RFC 8594 `Sunset` and a
`Link` to its successor, on every response (errors included), so clients notice before it goes.

The dates come from function.toml `[environment]` (`FRAUD_V1_DEPRECATED_AT`,
`FRAUD_V1_SUNSET_AT`: ISO dates, or date-times with a UTC offset) and are validated at load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aibackend.errors import ConfigError


def _instant(raw: Any) -> Any:
    """`2026-12-01` (midnight UTC) or `2026-12-01T09:00:00+01:00`; a naive time is refused."""
    if not isinstance(raw, str):
        return raw
    try:
        return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(raw)
    except ValueError as e:
        raise ValueError(f"{raw!r} is not an ISO date (YYYY-MM-DD) or date-time") from e
    if at.tzinfo is None:
        raise ValueError(f"{raw!r} has no UTC offset; write e.g. {raw}Z or a plain date")
    return at.astimezone(UTC)


Instant = Annotated[datetime, BeforeValidator(_instant)]


class Lifecycle(BaseModel):
    """When a version was (or will be) deprecated, when it stops answering, what replaces it."""

    model_config = ConfigDict(frozen=True)

    deprecated_at: Instant
    sunset_at: Instant | None = None
    successor: str

    @model_validator(mode="after")
    def _sunset_after_deprecation(self) -> Lifecycle:
        if self.sunset_at is not None and self.sunset_at <= self.deprecated_at:
            raise ValueError(
                f"the sunset ({self.sunset_at:%Y-%m-%d}) must come after the deprecation "
                f"({self.deprecated_at:%Y-%m-%d}): clients need time to move (RFC 9745 §3)"
            )
        return self

    def headers(self) -> list[tuple[bytes, bytes]]:
        """`Deprecation: @<unix seconds>`, `Sunset: <HTTP-date>`, `Link: <successor>`."""
        out = [
            (b"deprecation", f"@{int(self.deprecated_at.timestamp())}".encode()),
            (b"link", f'<{self.successor}>; rel="successor-version"'.encode()),
        ]
        if self.sunset_at is not None:
            out.append((b"sunset", format_datetime(self.sunset_at, usegmt=True).encode()))
        return out


def lifecycle_from_env(
    version: str, successor: str, env: Mapping[str, str] | None = None
) -> Lifecycle | None:
    """`FRAUD_<VERSION>_DEPRECATED_AT` / `_SUNSET_AT`; None while the version is not deprecated."""
    env = os.environ if env is None else env
    names = {
        "deprecated_at": f"FRAUD_{version.upper()}_DEPRECATED_AT",
        "sunset_at": f"FRAUD_{version.upper()}_SUNSET_AT",
    }
    raw = {field: env[var] for field, var in names.items() if env.get(var)}
    if not raw:
        return None
    if "deprecated_at" not in raw:
        raise ConfigError(
            f"{names['sunset_at']} is set but {names['deprecated_at']} is not: a sunset needs a "
            "deprecation date first (function.toml [environment])"
        )
    try:
        return Lifecycle.model_validate({**raw, "successor": successor})
    except ValidationError as e:
        problems = "; ".join(
            (f"{names[str(err['loc'][0])]}: " if err["loc"] else "")
            + err["msg"].removeprefix("Value error, ")
            for err in e.errors()
        )
        raise ConfigError(
            f"invalid {version} lifecycle (function.toml [environment]): {problems}"
        ) from e


class LifecycleHeaders:
    """ASGI middleware adding a version's lifecycle headers to every response under `prefix`."""

    def __init__(self, app: ASGIApp, *, prefix: str, lifecycle: Lifecycle) -> None:
        self.app = app
        self.prefix = prefix
        self.headers = lifecycle.headers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

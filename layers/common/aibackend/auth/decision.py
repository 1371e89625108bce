"""The access decision for one request to one declared route: the code both topologies run.

`aib dev`'s gateway calls `Authorizer.check` in process; on AWS the Lambda REQUEST authorizer
(`aibackend.auth.apigateway`) calls the same `authenticate` and `permits` and turns the answer
into an IAM policy. Status codes are the same in both: 401 when a credential is missing
(API Gateway answers that itself when an identity source header is absent), 403 with a reason
for a credential that is wrong, revoked, expired or lacks a scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aibackend.auth.keys import ApiKey
from aibackend.auth.tokens import TokenError, TokenVerifier
from aibackend.catalog import Access, Route

KEY_HEADER = "x-api-key"
AUTH_HEADER = "authorization"


class KeyLookup(Protocol):
    def lookup(self, secret: str) -> ApiKey | None: ...


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key, and the token's subject and scopes when one was presented."""

    key: ApiKey
    subject: str | None = None
    scopes: frozenset[str] = frozenset()

    def context(self) -> dict[str, str]:
        """What the function sees in `requestContext.authorizer` (strings, as on AWS)."""
        out = {"keyId": self.key.key_id, "keyName": self.key.name, "plan": self.key.plan}
        if self.subject is not None:
            out["sub"] = self.subject
            out["scope"] = " ".join(sorted(self.scopes))
        return out


class Denied(Exception):  # noqa: N818 - a decision, not a failure
    def __init__(
        self, status: int, title: str, detail: str, *, challenge: str | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.challenge = challenge


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup (API Gateway passes header names as the client sent them)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def describe(route: Route) -> str:
    return f"{route.method} {route.path}"


class Authorizer:
    def __init__(self, keys: KeyLookup, tokens: TokenVerifier | None) -> None:
        self.keys = keys
        self.tokens = tokens

    def key(self, headers: Mapping[str, str] | None) -> tuple[ApiKey, str]:
        """The caller's valid API key and its secret."""
        secret = (header(headers, KEY_HEADER) or "").strip()
        if not secret:
            raise Denied(
                401,
                "API key required",
                f"send your API key in the {KEY_HEADER} header (`aib keys create NAME` makes "
                "one; locally `aib keys dev` prints the development key)",
                challenge=f'ApiKey header="{KEY_HEADER}"',
            )
        key = self.keys.lookup(secret)
        if key is None:
            raise Denied(403, "Invalid API key", f"the {KEY_HEADER} value is not a key of this API")
        if key.revoked_at is not None:
            raise Denied(
                403,
                "API key revoked",
                f"key {key.key_id} ({key.name}) was revoked at "
                f"{key.revoked_at.isoformat(timespec='seconds')}; ask for a new key",
            )
        return key, secret

    def authenticate(
        self, headers: Mapping[str, str] | None, *, token: bool, scopes: Sequence[str] = ()
    ) -> Principal:
        """The caller, with the token's claims when `token` (a bearer token is then required).

        `scopes`: what the route asks for, named in the answer when the token is missing."""
        key, _ = self.key(headers)
        if not token:
            return Principal(key)
        raw = header(headers, AUTH_HEADER) or ""
        scheme, _, value = raw.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Denied(
                401,
                "Bearer token required",
                "this route needs `Authorization: Bearer <token>` as well as the API key "
                f"(locally: `aib token --scopes {' '.join(scopes) or 'SCOPE'}`)",
                challenge='Bearer realm="aibackend"',
            )
        if self.tokens is None:
            raise Denied(
                403, "Invalid bearer token", "this API is configured without a token issuer"
            )
        try:
            claims = self.tokens.verify(value.strip())
        except TokenError as e:
            raise Denied(
                403,
                "Invalid bearer token",
                str(e),
                challenge=f'Bearer realm="aibackend", error="invalid_token", '
                f'error_description="{e}"'.replace("\n", " "),
            ) from e
        return Principal(key, claims.subject, claims.scopes)

    @staticmethod
    def permits(principal: Principal, route: Route) -> str | None:
        """None if `principal` may call `route`, else the reason it may not."""
        if route.access is not Access.TOKEN:
            return None
        missing = sorted(set(route.scopes) - principal.scopes)
        if not missing:
            return None
        has = ", ".join(sorted(principal.scopes)) or "none"
        return (
            f"{describe(route)} needs scope(s) {', '.join(route.scopes)}; the token lacks "
            f"{', '.join(missing)} (it has: {has})"
        )

    def check(self, route: Route, headers: Mapping[str, str] | None) -> Principal | None:
        """The principal allowed to call `route` (None for a public route), or `Denied`."""
        if route.access is Access.PUBLIC:
            return None
        principal = self.authenticate(
            headers, token=route.access is Access.TOKEN, scopes=route.scopes
        )
        reason = self.permits(principal, route)
        if reason is not None:
            scope = " ".join(route.scopes)
            raise Denied(
                403,
                "Insufficient scope",
                reason,
                challenge=f'Bearer realm="aibackend", error="insufficient_scope", scope="{scope}"',
            )
        return principal

"""The Lambda REQUEST authorizer's side of the decision: event in, IAM policy out.

Two authorizers on the REST API share one function: `key` (identity source `x-api-key`) on
`api_key` routes and `token` (`x-api-key` and `Authorization`) on `token` routes. API Gateway
caches a result per identity for the authorizer's TTL and reuses it for every route behind the
same authorizer, so the policy lists every route that principal may call, not just the one
asked for. The result carries the presented key as `usageIdentifierKey`, so that API Gateway
meters it under its usage plan (`apiKeySource: AUTHORIZER`), and the reason for a refusal in
`context.reason`, which the `ACCESS_DENIED` gateway response puts in its problem body.

The routes come from the catalog, through the `AIB_ROUTES` variable CDK writes
(`encode_routes`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from aibackend.auth.decision import KEY_HEADER, Authorizer, Denied, Principal, describe, header
from aibackend.catalog import Access, Route

ROUTES_ENV = "AIB_ROUTES"
#: Refusal reasons listed in one authorizer result (the context value stays small).
MAX_REASONS = 5


def encode_routes(routes: Iterable[Route]) -> str:
    """Compact `{"METHOD /path": ["access", scope...]}` for the authorizer's environment."""
    table = {describe(r): [r.access.value, *r.scopes] for r in routes}
    return json.dumps(table, separators=(",", ":"), sort_keys=True)


def decode_routes(raw: str) -> dict[tuple[str, str], Route]:
    out: dict[tuple[str, str], Route] = {}
    for name, (access, *scopes) in json.loads(raw).items():
        method, path = name.split(" ", 1)
        out[(method, path)] = Route(
            method=method, path=path, access=Access(access), scopes=tuple(scopes)
        )
    return out


def _resource_arn(base: str, route: Route) -> str:
    path = re.sub(r"\{[^}]+\}", "*", route.path)
    return f"{base}/{route.method}{path}"


def _policy(effect: str, resources: list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resources}],
    }


def authorize_event(
    event: Mapping[str, Any], authorizer: Authorizer, routes: Mapping[tuple[str, str], Route]
) -> dict[str, Any]:
    """The authorizer response for one REQUEST event.

    Raises `Unauthorized` (API Gateway's 401) when a credential is missing; answers a deny
    policy with `context.reason` (403) when one is wrong.
    """
    arn = str(event["methodArn"])
    # arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/<METHOD>/<path...>
    base = "/".join(arn.split("/")[:2])
    route = routes.get((str(event.get("httpMethod", "")), str(event.get("resource", ""))))
    if route is None:
        return _deny(
            base,
            f"{event.get('httpMethod')} {event.get('resource')} is not a declared route",
        )
    headers = event.get("headers") or {}
    want_token = route.access is Access.TOKEN
    try:
        principal = authorizer.authenticate(headers, token=want_token)
    except Denied as e:
        if e.status == 401:
            # The one string API Gateway maps to 401 (its UNAUTHORIZED gateway response).
            raise Unauthorized("Unauthorized") from e
        return _deny(base, e.detail)
    secret = (header(headers, KEY_HEADER) or "").strip()
    # Same authorizer, same cache: list every route of this kind the principal may call.
    kind = Access.TOKEN if want_token else Access.API_KEY
    allowed = [
        r for r in routes.values() if r.access is kind and authorizer.permits(principal, r) is None
    ]
    context = principal.context()
    # The cached result answers every route behind this authorizer, so the reason covers all
    # the routes this principal may not call, not just the one asked for now.
    refusals = [
        reason
        for r in routes.values()
        if r.access is kind and (reason := authorizer.permits(principal, r)) is not None
    ]
    if refusals:
        more = f" (and {len(refusals) - MAX_REASONS} more)" if len(refusals) > MAX_REASONS else ""
        context["reason"] = _json_safe(" | ".join(refusals[:MAX_REASONS]) + more)
    return {
        "principalId": principal.key.key_id,
        "policyDocument": _policy("Allow", [_resource_arn(base, r) for r in allowed])
        if allowed
        else _policy("Deny", [f"{base}/*"]),
        "context": context,
        "usageIdentifierKey": secret,
    }


def _deny(base: str, reason: str) -> dict[str, Any]:
    return {
        "principalId": "anonymous",
        "policyDocument": _policy("Deny", [f"{base}/*"]),
        "context": {"reason": _json_safe(reason)},
    }


def _json_safe(text: str) -> str:
    """`text` escaped for a JSON string: API Gateway pastes `$context.authorizer.reason` into
    the ACCESS_DENIED problem body as it is (gateway responses are not VTL), and a reason may
    quote what the caller sent."""
    return json.dumps(text)[1:-1]


class Unauthorized(Exception):  # noqa: N818 - API Gateway matches the message, not the name
    """Raised with the message `Unauthorized`: API Gateway answers 401."""


__all__ = ["Principal", "Unauthorized", "authorize_event", "decode_routes", "encode_routes"]

"""API Gateway REST API (v1) proxy events, built exactly like AWS builds them."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aibackend.local.context import new_request_id

_TEXTUAL = re.compile(r"^(text/|application/([\w.+-]*json|xml|x-www-form-urlencoded))")


@dataclass(frozen=True)
class RouteTemplate:
    """`/v1/models/{name}/predict` compiled to a matcher that yields path parameters."""

    method: str
    resource: str

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compile(self.resource)

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.match(path)
        return None if m is None else m.groupdict()


_cache: dict[str, re.Pattern[str]] = {}


def _compile(resource: str) -> re.Pattern[str]:
    pat = _cache.get(resource)
    if pat is None:
        regex = ""
        for seg in resource.strip("/").split("/"):
            if not seg:
                continue
            if seg.startswith("{") and seg.endswith("+}"):
                regex += rf"/(?P<{seg[1:-2]}>.+)"
            elif seg.startswith("{"):
                regex += rf"/(?P<{seg[1:-1]}>[^/]+)"
            else:
                regex += "/" + re.escape(seg)
        pat = _cache[resource] = re.compile(f"^{regex or '/'}$")
    return pat


def build_event(
    *,
    method: str,
    path: str,
    resource: str,
    path_parameters: dict[str, str] | None,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str = "127.0.0.1",
    stage: str = "local",
    request_id: str | None = None,
    authorizer: dict[str, str] | None = None,
    api_key_id: str | None = None,
) -> dict[str, Any]:
    """A REST API proxy integration event (payload format 1.0).

    `authorizer`: what the authorizer let through (`principalId` and its context), as
    `requestContext.authorizer`; `api_key_id` as `requestContext.identity.apiKeyId`.
    """
    hdrs: dict[str, str] = {}
    mv_hdrs: dict[str, list[str]] = {}
    for k, v in headers:
        hdrs[k] = v  # like API Gateway: the last value wins in `headers`
        mv_hdrs.setdefault(k, []).append(v)
    qs: dict[str, str] = {}
    mv_qs: dict[str, list[str]] = {}
    for k, v in query:
        qs[k] = v
        mv_qs.setdefault(k, []).append(v)
    ctype = next((v for k, v in hdrs.items() if k.lower() == "content-type"), "")
    textual = not body or bool(_TEXTUAL.match(ctype)) or not ctype
    try:
        text = body.decode("utf-8") if textual else None
    except UnicodeDecodeError:
        text = None
    rid = request_id or new_request_id()
    now = time.time()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": hdrs or None,
        "multiValueHeaders": mv_hdrs or None,
        "queryStringParameters": qs or None,
        "multiValueQueryStringParameters": mv_qs or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": rid,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{path}",
            "accountId": "000000000000",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": rid,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": hdrs.get("user-agent"),
                "apiKeyId": api_key_id,
            },
            "domainName": "localhost",
            "apiId": "local",
            **({"authorizer": authorizer} if authorizer is not None else {}),
        },
        "body": (text if text is not None else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": bool(body) and text is None,
    }


def parse_response(resp: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Lambda proxy response -> (status, headers, body), validated like API Gateway does."""
    if not isinstance(resp, dict) or "statusCode" not in resp:
        raise ValueError(
            "Malformed Lambda proxy response: expected a dict with statusCode, headers, body"
        )
    status = int(resp["statusCode"])
    headers: list[tuple[str, str]] = []
    mv = resp.get("multiValueHeaders") or {}
    for k, v in (resp.get("headers") or {}).items():
        if k not in mv:
            headers.append((k, str(v)))
    for k, vs in mv.items():
        headers.extend((k, str(v)) for v in vs)
    raw = resp.get("body") or ""
    body = base64.b64decode(raw) if resp.get("isBase64Encoded") else str(raw).encode()
    return status, headers, body

"""Personal data and credentials never reach a log line.

`masked_logger()` is a Powertools `Logger` whose formatter erases the value of every field
named in `SENSITIVE_FIELDS` (plus `AIB_LOG_MASK`, comma-separated, from a function's
`[environment]`), at any depth and in any letter case, replacing it with `*****` as Powertools'
`DataMasking.erase` does. It walks the record by key name instead of evaluating JSONPath per
line: the same result for named fields, at a fraction of the cost on a hot path, and it also
covers `log_event=True` (request headers carry the API key and the bearer token).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

MASK = "*****"
MASK_ENV = "AIB_LOG_MASK"
#: Credentials, and the personal data the platform's schemas carry (card transactions, their
#: bias-monitoring attributes, contact details a user model may add).
SENSITIVE_FIELDS = frozenset(
    {
        # An API Gateway event's body is a JSON *string*: fields inside it cannot be picked
        # out, so the whole body goes (like data tracing, which the API stage keeps off).
        "body",
        "x-api-key",
        "authorization",
        "cookie",
        "set-cookie",
        "apikey",
        "card_id",
        "card_number",
        "pan",
        "iban",
        "customer_age_band",
        "region",
        "email",
        "phone",
        "ip_address",
    }
)


def sensitive_fields(env: Mapping[str, str] | None = None) -> frozenset[str]:
    extra = (os.environ if env is None else env).get(MASK_ENV, "")
    return SENSITIVE_FIELDS | {f.strip().lower() for f in extra.split(",") if f.strip()}


def erase(value: Any, fields: Iterable[str]) -> Any:
    """A copy of `value` with the value of every key in `fields` (any case) replaced by `MASK`."""
    names = fields if isinstance(fields, frozenset) else frozenset(f.lower() for f in fields)
    return _erase(value, names)


def _erase(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and k.lower() in names else _erase(v, names)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_erase(v, names) for v in value]
    return value


class MaskingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, with sensitive fields erased before serialization."""

    def __init__(self, fields: Iterable[str] | None = None, **kwargs: Any) -> None:
        self.fields = frozenset(f.lower() for f in fields) if fields else sensitive_fields()
        super().__init__(**kwargs)

    def serialize(self, log: Any) -> str:
        return super().serialize(_erase(log, self.fields))


def masked_logger(**kwargs: Any) -> Logger:
    """`Logger(**kwargs)` that erases sensitive fields (see the module docstring)."""
    return Logger(logger_formatter=MaskingFormatter(), **kwargs)

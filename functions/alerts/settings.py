"""The alerting service's settings: function.toml `[environment]`, read once at cold start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aibackend.errors import ConfigError

SinkName = Literal["log", "webhook", "sns"]

#: Setting -> its variable.
ENV = {
    "sinks": "ALERT_SINKS",
    "webhook_url": "ALERT_WEBHOOK_URL",
    "webhook_timeout_s": "ALERT_WEBHOOK_TIMEOUT_S",
    "webhook_attempts": "ALERT_WEBHOOK_ATTEMPTS",
    "dedup_window_s": "ALERT_DEDUP_WINDOW_S",
    "rate_limit": "ALERT_RATE_LIMIT",
    "rate_window_s": "ALERT_RATE_WINDOW_S",
}


class AlertSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Where alerts go, comma-separated in `ALERT_SINKS`.
    sinks: tuple[SinkName, ...] = ("log",)
    webhook_url: str = ""
    webhook_timeout_s: Annotated[float, Field(gt=0, le=30)] = 2.0
    #: Tries per invocation (5xx, timeouts, refused connections), the first one included.
    webhook_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    #: One alert per key (transaction, device) within this many seconds.
    dedup_window_s: Annotated[int, Field(ge=1)] = 3600
    #: At most this many alerts per rate key (card, device) per `rate_window_s` window.
    rate_limit: Annotated[int, Field(ge=1, le=1000)] = 5
    rate_window_s: Annotated[int, Field(ge=1)] = 3600

    @field_validator("sinks", mode="before")
    @classmethod
    def _comma_separated(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = tuple(s.strip() for s in v.split(",") if s.strip())
        if not v:
            raise ValueError("list one or more of log, webhook, sns")
        return v

    @model_validator(mode="after")
    def _webhook_has_a_url(self) -> AlertSettings:
        if "webhook" in self.sinks and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError(
                f"ALERT_WEBHOOK_URL={self.webhook_url!r}: the webhook sink needs an http(s) "
                "URL, or leave 'webhook' out of ALERT_SINKS"
            )
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        env = os.environ if env is None else env
        given = {name: env[var] for name, var in ENV.items() if var in env}
        try:
            return cls.model_validate(given)
        except ValidationError as e:
            problems = "; ".join(_describe(err, given) for err in e.errors())
            raise ConfigError(f"alerts settings (function.toml [environment]): {problems}") from e


def _describe(err: Any, given: Mapping[str, str]) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:  # a rule over several settings: its message names them
        return message
    name = str(err["loc"][0])
    return f"{ENV[name]}={given.get(name)!r}: {message}"

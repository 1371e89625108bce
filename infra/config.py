"""Deploy-time settings, read once from CDK context (`cdk.json`, or `-c key=value`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from constructs import Node
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from aibackend.errors import ConfigError

#: Context key -> field name. Every key is documented in cdk.json with its default.
CONTEXT_KEYS = {
    "aib:registry": "registry",
    "aib:registry-table": "registry_table",
    "aib:state-dir": "state_dir",
    "aib:stage-name": "stage_name",
    "aib:log-level": "log_level",
    "aib:log-retention-days": "log_retention_days",
    "aib:api-throttle-rate": "api_throttle_rate",
    "aib:api-throttle-burst": "api_throttle_burst",
    "aib:authorizer-cache-s": "authorizer_cache_s",
    "aib:waf-rate-limit": "waf_rate_limit",
    "aib:apigw-account-role": "apigw_account_role",
    "aib:bus-name": "bus_name",
    "aib:archive-retention-days": "archive_retention_days",
    "aib:budget-monthly-usd": "budget_monthly_usd",
    "aib:budget-email": "budget_email",
}


def _not_default_bus(name: str) -> str:
    if name == "default":
        raise ValueError("'default' is the account's own bus; the platform bus needs its own name")
    return name


class InfraConfig(BaseModel):
    """Everything about a deployment that is not in a function declaration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Where synth looks up production model versions when no `model:<name>:version` is given.
    registry: Literal["local", "aws"] = "local"
    #: Physical name of the registry table: fixed so the resolver and the `aib` CLI can find it.
    registry_table: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{3,255}$")] = "aib-model-registry"
    #: State folder of the local runtime (relative to the project root).
    state_dir: str = ".aib"
    stage_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,128}$")] = "prod"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_retention_days: Annotated[int, Field(ge=1)] = 30
    api_throttle_rate: Annotated[float, Field(gt=0)] = 50
    api_throttle_burst: Annotated[int, Field(gt=0)] = 100
    #: Seconds API Gateway reuses an authorizer's answer for the same credentials (x-api-key,
    #: plus Authorization on token routes); 0 asks the authorizer on every request. A revoked
    #: key or a token's new scopes take effect after at most this long.
    authorizer_cache_s: Annotated[int, Field(ge=0, le=3600)] = 60
    #: Requests per client IP per 5 minutes before WAF blocks it.
    waf_rate_limit: Annotated[int, Field(ge=10, le=2_000_000_000)] = 2_000
    #: API Gateway's CloudWatch role is one per account and region. `true`: this app owns it
    #: (retained on destroy, so other APIs keep logging); `false`: the account already has one.
    apigw_account_role: bool = True
    #: Physical name of the platform event bus (the catalog's logical bus `aib`). Fixed, so
    #: producers outside this app can put events on it by name.
    bus_name: Annotated[
        str, Field(pattern=r"^[A-Za-z0-9._-]{1,256}$"), AfterValidator(_not_default_bus)
    ] = "aib"
    #: Days the bus's archive keeps every event for replay; 0 keeps them indefinitely.
    archive_retention_days: Annotated[int, Field(ge=0)] = 30
    #: Monthly AWS cost budget of the account (USD): AibShared's budget notifies the alarm
    #: topic (and `budget_email`) at 80% of it spent and at 100% forecast.
    budget_monthly_usd: Annotated[float, Field(gt=0)] = 50
    #: E-mail address the budget also notifies directly ("" for the alarm topic only).
    budget_email: Annotated[str, Field(pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")] = ""

    @classmethod
    def from_node(cls, node: Node) -> InfraConfig:
        """Read every `aib:*` key; `-c` values arrive as strings and are coerced here."""
        raw: dict[str, Any] = {}
        for key, field in CONTEXT_KEYS.items():
            value = node.try_get_context(key)
            if value is not None:
                raw[field] = _coerce(value)
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            by_field = {f: k for k, f in CONTEXT_KEYS.items()}
            lines = ["invalid CDK context (cdk.json or -c key=value):"]
            for err in e.errors():
                field = str(err["loc"][0]) if err["loc"] else ""
                lines.append(f"  - {by_field.get(field, field)}: {err['msg']}")
            raise ConfigError("\n".join(lines)) from e


def _coerce(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value

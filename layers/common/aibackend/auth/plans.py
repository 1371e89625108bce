"""Usage plans: how fast and how much one API key may call.

Declared once, in `functions/plans.toml` (or these defaults when the file is absent). CDK
makes one API Gateway usage plan per entry; `aib dev` enforces the same numbers itself.

```toml
[plans.standard]
description = "Production clients"
rate_per_s = 50
burst = 100
quota_per_day = 100000
```
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aibackend.errors import ConfigError

PLANS_FILE = "plans.toml"
#: The plan `aib keys create` uses without `--plan`.
DEFAULT_PLAN = "standard"
#: The plan of the key `aib dev` creates on first start (generous: load tests use it).
DEV_PLAN = "dev"


class Plan(BaseModel):
    """A rate (token bucket: `rate_per_s` refill, `burst` capacity) and a daily quota.

    The quota counts requests per UTC day, like API Gateway's `DAY` period; `None` means none.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    description: str = ""
    rate_per_s: Annotated[float, Field(gt=0, le=10_000)]
    burst: Annotated[int, Field(ge=1, le=5_000)]
    quota_per_day: Annotated[int, Field(ge=1)] | None = None
    #: Only for `aib dev` (the development key's plan): AWS gets no usage plan for it, so no
    #: deployed key can be put on it.
    local_only: bool = False


DEFAULT_PLANS: dict[str, Plan] = {
    p.name: p
    for p in (
        Plan(
            name="free",
            description="Trials and demos",
            rate_per_s=5,
            burst=10,
            quota_per_day=1_000,
        ),
        Plan(
            name="standard",
            description="Production clients",
            rate_per_s=50,
            burst=100,
            quota_per_day=100_000,
        ),
        Plan(
            name="dev",
            description="The local development key (aib dev); load tests run on it",
            rate_per_s=5_000,
            burst=5_000,
            local_only=True,
        ),
    )
}


def load_plans(functions_root: Path) -> dict[str, Plan]:
    """`functions_root/plans.toml` validated (errors name the file, plan and field), or the
    defaults when there is no such file."""
    path = functions_root / PLANS_FILE
    if not path.is_file():
        return dict(DEFAULT_PLANS)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    unknown = set(raw) - {"plans"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; only [plans.<name>]")
    tables = raw.get("plans", {})
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: declares no plans; add at least one [plans.<name>] table")
    plans: dict[str, Plan] = {}
    for name, body in tables.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: plans.{name} must be a table")
        try:
            plans[name] = Plan.model_validate({**body, "name": name})
        except ValidationError as e:
            lines = [f"{path}: invalid plan {name!r}"]
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "(plan)"
                lines.append(f"  - plans.{name}.{loc}: {err['msg']}")
            raise ConfigError("\n".join(lines)) from e
    return plans

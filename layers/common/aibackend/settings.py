"""Platform settings, read once from the environment at the edge.

Functions get these variables from CDK on AWS and from the local runtime on one machine, so
the same handler code runs unchanged in both topologies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "AIB_"


class PlatformSettings(BaseModel):
    """Which adapter set to use and where state lives."""

    model_config = ConfigDict(frozen=True)

    #: `local`: SQLite + files under `state_dir`; `aws`: boto3 adapters.
    adapters: Literal["local", "aws"] = "local"
    state_dir: Path = Path(".aib")
    model_bucket: str = "models"
    registry_table: str = "aib-model-registry"
    #: Where model artifacts are unpacked on AWS (Lambda's writable /tmp).
    model_cache_dir: Path = Path("/tmp/aib-models")
    #: Seconds between checks of the registry's production pointer (local runtime only).
    model_poll_s: float = Field(default=2.0, gt=0)
    #: Local bus retention: archived events (as the CDK archive's `aib:archive-retention-days`)
    #: and delivered rows (`stats()` counts deliveries within it). Failed deliveries stay.
    bus_archive_days: float = Field(default=30.0, gt=0)
    bus_delivered_hours: float = Field(default=24.0, gt=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PlatformSettings:
        env = os.environ if env is None else env
        fields = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env:
                fields[name] = env[key]
        return cls.model_validate(fields)


@lru_cache(maxsize=1)
def platform_settings() -> PlatformSettings:
    """Settings of this process, read once (a Lambda container's environment never changes)."""
    return PlatformSettings.from_env()


def model_version_env(model_name: str) -> str:
    """Name of the variable that pins the version a function serves, e.g. `AIB_MODEL_FRAUD_VERSION`.

    CDK writes it at deploy time (a new model version is a new Lambda version); the local
    runtime sets it from the registry's production pointer.
    """
    return f"{ENV_PREFIX}MODEL_{re.sub(r'[^A-Za-z0-9]', '_', model_name).upper()}_VERSION"


def resource_env(kind: str, name: str) -> str:
    """Variable holding a resource's physical name on AWS, e.g. `AIB_QUEUE_TRANSACTIONS`.

    CDK sets one per declared queue (its URL), bus and bucket (their names); without it the
    logical name is used as is, which is what the local adapters do.
    """
    return f"{ENV_PREFIX}{kind.upper()}_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}"


def physical_name(kind: str, name: str, env: Mapping[str, str] | None = None) -> str:
    return (os.environ if env is None else env).get(resource_env(kind, name), name)

"""Adapter sets for the ports, chosen by configuration (`AIB_ADAPTERS`), never by `if local:`."""

from __future__ import annotations

from functools import lru_cache

from aibackend.ports import ModelRegistry, ObjectStore
from aibackend.settings import PlatformSettings, platform_settings


def object_store(bucket: str, settings: PlatformSettings | None = None) -> ObjectStore:
    s = settings or platform_settings()
    if s.adapters == "aws":
        from aibackend.adapters.aws import S3ObjectStore

        return S3ObjectStore(bucket)
    from aibackend.adapters.local import LocalObjectStore

    return LocalObjectStore(s.state_dir / "buckets" / bucket, bucket=bucket)


def model_registry(settings: PlatformSettings | None = None) -> ModelRegistry:
    s = settings or platform_settings()
    store = object_store(s.model_bucket, s)
    if s.adapters == "aws":
        from aibackend.adapters.aws import DynamoModelRegistry

        return DynamoModelRegistry(s.registry_table, store)
    from aibackend.adapters.local import SqliteModelRegistry

    return SqliteModelRegistry(s.state_dir / "registry.db", store)


@lru_cache(maxsize=1)
def default_registry() -> ModelRegistry:
    """The registry of this process's settings, created once."""
    return model_registry()

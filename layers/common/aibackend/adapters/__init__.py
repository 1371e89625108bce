"""Adapter sets for the ports, chosen by configuration (`AIB_ADAPTERS`), never by `if local:`."""

from __future__ import annotations

from functools import lru_cache

from aibackend.ports import EventBus, ModelRegistry, ObjectStore, QueueService
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


def queue_service(settings: PlatformSettings | None = None) -> QueueService:
    s = settings or platform_settings()
    if s.adapters == "aws":
        from aibackend.adapters.sqs import SqsQueueService

        return SqsQueueService()
    from aibackend.adapters.local_queue import SqliteQueueService

    return SqliteQueueService(s.state_dir / "queues.db")


def publish_only(target: object, payload: object) -> None:
    raise RuntimeError("this process only publishes; `aib dev` delivers local events")


def event_bus(settings: PlatformSettings | None = None) -> EventBus:
    """The bus functions publish to. Locally it records events and their deliveries durably;
    the `aib dev` process (which owns the dispatcher) delivers them."""
    s = settings or platform_settings()
    if s.adapters == "aws":
        from aibackend.adapters.eventbridge import EventBridgeBus

        return EventBridgeBus()
    from aibackend.adapters.local_bus import LocalEventBus

    return LocalEventBus(s.state_dir / "events.db", deliver=publish_only, queues=queue_service(s))

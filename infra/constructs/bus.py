"""The platform event bus (the catalog's logical bus `aib`) and the archive of its events."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from constructs import Construct

from aibackend.catalog import PLATFORM_BUS


class PlatformBus(Construct):
    """Attributes: `bus` (events.EventBus), `archive` (events.Archive of every event on it).

    The archive is what makes a bad deployment recoverable: fix the consumer, then replay the
    window it mishandled (`aws events start-replay`). It keeps event payloads for weeks, so it
    is encrypted under `archive_key`; CDK adds the key policy statements that let EventBridge
    use the key for this bus's events only. The bus itself keeps EventBridge's AWS owned key:
    events stay on it only while they are matched and delivered, and a key of our own there is
    a change of its own (a key policy for EventBridge, a bus dead-letter queue for key errors).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bus_name: str,
        archive_retention_days: int,
        archive_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(
            self,
            "Bus",
            event_bus_name=bus_name,
            description=f"aibackend platform events (logical bus {PLATFORM_BUS!r})",
        )
        # `EventBus.archive()` passes no key on, so the Archive is built here; as the bus's
        # child, as that method makes it, which keeps its logical id.
        self.archive = events.Archive(
            self.bus,
            "Archive",
            source_event_bus=self.bus,
            description=f"Every event of the {bus_name} bus, for replay",
            # No pattern at all: the archive keeps every event, from any account or source.
            event_pattern=events.EventPattern(),
            # 0 days: EventBridge keeps archived events indefinitely.
            retention=cdk.Duration.days(archive_retention_days),
            kms_key=archive_key,
        )

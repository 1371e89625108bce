"""The platform event bus (the catalog's logical bus `aib`) and the archive of its events."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from constructs import Construct

from aibackend.catalog import PLATFORM_BUS


class PlatformBus(Construct):
    """Attributes: `bus` (events.EventBus), `archive` (events.Archive of every event on it).

    The archive is what makes a bad deployment recoverable: fix the consumer, then replay the
    window it mishandled (`aws events start-replay`).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, bus_name: str, archive_retention_days: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(
            self,
            "Bus",
            event_bus_name=bus_name,
            description=f"aibackend platform events (logical bus {PLATFORM_BUS!r})",
        )
        self.archive = self.bus.archive(
            "Archive",
            description=f"Every event of the {bus_name} bus, for replay",
            # No pattern at all: the archive keeps every event, from any account or source.
            event_pattern=events.EventPattern(),
            # 0 days: EventBridge keeps archived events indefinitely.
            retention=cdk.Duration.days(archive_retention_days),
        )

"""AWS adapter of the event bus port: EventBridge `PutEvents` (boto3, imported lazily).

Entries are checked the same way the local bus checks them before anything is sent, so a
caller sees the same per-entry failures in both topologies; EventBridge's own per-entry
errors (throttling, internal failures) are mapped into `PutEventsResult` too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from aibackend.adapters.local_bus import (
    EntryRefusedError,
    check_entry_count,
    check_total_size,
    encode_entry,
)
from aibackend.ports import PutEvent, PutEventsResult
from aibackend.settings import physical_name


@cache
def _client() -> Any:
    import boto3  # heavy (~180 ms): only functions that publish pay for it

    return boto3.client("events")


class EventBridgeBus:
    """Publishes to EventBridge; a bus's physical name comes from `AIB_BUS_<NAME>` (set by
    CDK), else the logical name is used as is."""

    def __init__(self, client: Any = None, *, env: Mapping[str, str] | None = None) -> None:
        self._events = client if client is not None else _client()
        self._env = env

    def put_events(self, entries: Sequence[PutEvent]) -> PutEventsResult:
        """Publish 1 to 10 events; refused entries come back in `failures`, in entry order."""
        entries = list(entries)
        check_entry_count(entries)
        event_ids: list[str | None] = [None] * len(entries)
        failures: list[tuple[int, str, str]] = []
        request: list[dict[str, Any]] = []
        sent: list[int] = []  # request position -> entry index
        total = 0
        for i, entry in enumerate(entries):
            try:
                detail, size = encode_entry(entry)
            except EntryRefusedError as e:
                failures.append((i, e.code, e.message))
                continue
            total += size
            item: dict[str, Any] = {
                "Source": entry.source,
                "DetailType": entry.detail_type,
                "Detail": detail,
                "Resources": list(entry.resources),
                "EventBusName": physical_name("bus", entry.bus, self._env),
            }
            if entry.time is not None:
                item["Time"] = entry.time
            request.append(item)
            sent.append(i)
        check_total_size(total)
        if request:
            response = self._events.put_events(Entries=request)
            for i, result in zip(sent, response.get("Entries", []), strict=False):
                if result.get("ErrorCode"):
                    failures.append((i, result["ErrorCode"], result.get("ErrorMessage", "")))
                else:
                    event_ids[i] = result.get("EventId")
        failures.sort()
        return PutEventsResult(event_ids=tuple(event_ids), failures=tuple(failures))

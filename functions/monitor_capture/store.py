"""One capture message (a JSON list of records of one model) -> one JSON Lines object."""

from __future__ import annotations

import json
from datetime import datetime

from aibackend.capture import capture_key
from aibackend.ports import ObjectStore


class CaptureMessageError(ValueError):
    """The message is not a list of capture records of one model."""


def store_message(store: ObjectStore, message_id: str, body: str) -> tuple[str, int]:
    """Write the message's records; returns (object key, record count)."""
    try:
        records = json.loads(body)
    except ValueError as e:
        raise CaptureMessageError(f"message {message_id}: not JSON: {e}") from None
    if not isinstance(records, list) or not records:
        raise CaptureMessageError(f"message {message_id}: expected a non-empty list of records")
    try:
        models = {r["model"]["name"] for r in records}
        at = datetime.fromisoformat(records[0]["at"])
    except (KeyError, TypeError, ValueError) as e:
        raise CaptureMessageError(
            f"message {message_id}: a record lacks model or at: {e}"
        ) from None
    if len(models) != 1:
        raise CaptureMessageError(f"message {message_id}: records of several models {models}")
    key = capture_key(models.pop(), at, message_id)
    data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
    store.put(key, data, content_type="application/x-ndjson")
    return key, len(records)

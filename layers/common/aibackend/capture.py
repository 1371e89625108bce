"""Inference capture: a sample of each model's predictions, kept for monitoring.

Declared per model in `functions/monitoring.toml`, next to the function declarations:

    [capture.fraud]
    rate = 1.0                 # share of predictions captured (1.0: all, 0: none)
    mask = ["card_id"]         # input fields erased before they leave the function
    retention_days = 30        # captured objects expire after this many days

Every function that serves a captured model sends, once per invocation, one queue message per
ten records to the `inference-capture` queue (the catalog grants it), and the
`monitor_capture` function writes them to the `monitoring` bucket under
`capture/<model>/<YYYY-MM-DD>/<HH>/`, where a lifecycle rule (AWS) or its own sweep (locally)
expires them. A record is the inference id, the correlation id of the request or event, the
model's name and version, the time, the inputs (masked) and the output.

Sampling is decided by the inference id (a hash, not a coin toss), so every function that sees
the same inference makes the same choice. The configuration reaches a function as one JSON
variable (`AIB_CAPTURE`) holding every model's settings: identical for all functions, so the
functions `aib dev` runs in one process agree on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from aibackend.errors import ConfigError
from aibackend.masking import erase
from aibackend.ports import Queue

FILE = "monitoring.toml"
ENV = "AIB_CAPTURE"
QUEUE = "inference-capture"
BUCKET = "monitoring"
PREFIX = "capture/"
#: Records per queue message (each message stays far below SQS's 256 KiB for model inputs of
#: a few KB; a record that alone is larger is dropped with a warning, never the invocation).
PER_MESSAGE = 10
MAX_MESSAGE_BYTES = 250 * 1024

log = logging.getLogger("aib.capture")


class CaptureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    mask: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = ()
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30


_SETTINGS = TypeAdapter(dict[str, CaptureSettings])


M = TypeVar("M", bound=BaseModel)


def load_section(root: Path, section: str, adapter: TypeAdapter[dict[str, M]]) -> dict[str, M]:
    """The `[<section>.<model>]` tables of `<functions>/monitoring.toml`, validated (no file or
    no section: none), or a `ConfigError` naming the file, the key and what is wrong."""
    path = root / FILE
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return adapter.validate_python(raw.get(section, {}))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in (section, *first["loc"]))
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def settings_json(settings: Mapping[str, BaseModel]) -> str:
    """Per-model settings as one compact, key-ordered JSON value (an environment variable that
    every function of one process can share)."""
    return json.dumps(
        {m: s.model_dump(mode="json") for m, s in sorted(settings.items())},
        separators=(",", ":"),
    )


def load_capture(root: Path) -> dict[str, CaptureSettings]:
    """The `[capture.<model>]` tables of `<functions>/monitoring.toml` (none: no capture)."""
    return load_section(root, "capture", _SETTINGS)


def capture_env(settings: Mapping[str, CaptureSettings]) -> str:
    """The `AIB_CAPTURE` value: every model's settings, compact and key-ordered."""
    return settings_json(settings)


def sampled(inference_id: str, rate: float) -> bool:
    """Whether this inference is captured: a stable function of its id."""
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(inference_id.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < rate


class Capture:
    """One function's capture of one model's predictions."""

    def __init__(
        self,
        model: str,
        settings: CaptureSettings | None,
        queue: Queue | Callable[[], Queue] | None,
    ) -> None:
        """`queue`: the capture queue, or how to get it on first use (a function's INIT runs
        before `aib dev` has created its queues)."""
        self.model = model
        self.settings = settings
        self._queue = queue
        self._mask = frozenset(f.lower() for f in settings.mask) if settings else frozenset()

    @classmethod
    def from_env(cls, model: str, queue: Queue | None = None) -> Capture:
        """The capture `AIB_CAPTURE` declares for `model` (off when it declares none)."""
        raw = os.environ.get(ENV, "")
        settings = _SETTINGS.validate_json(raw).get(model) if raw else None
        if settings is None or settings.rate == 0:
            return cls(model, None, None)
        return cls(model, settings, queue or _capture_queue)

    @property
    def enabled(self) -> bool:
        return self.settings is not None and self._queue is not None

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            raise RuntimeError(f"capture of {self.model!r} is off")
        if callable(self._queue):  # resolved on first use
            self._queue = self._queue()
        return self._queue

    def records(
        self,
        version: int | str,
        items: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]],
        correlation_id: str | Sequence[str | None] | None,
        at: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The capture records of (inference id, inputs, output) triples, sampled and masked;
        `correlation_id` is the chain's id of them all, or one per item (a batch of events)."""
        if self.settings is None:
            return []
        when = (at or datetime.now(UTC)).isoformat(timespec="milliseconds")
        rate = self.settings.rate
        ids = (
            [correlation_id] * len(items)
            if correlation_id is None or isinstance(correlation_id, str)
            else correlation_id
        )
        if len(ids) != len(items):
            raise ValueError(f"{len(ids)} correlation ids for {len(items)} items")
        return [
            {
                "inference_id": inference_id,
                "correlation_id": chain,
                "model": {"name": self.model, "version": version},
                "at": when,
                "inputs": erase(dict(inputs), self._mask) if self._mask else dict(inputs),
                "output": dict(output),
            }
            for (inference_id, inputs, output), chain in zip(items, ids, strict=True)
            if sampled(inference_id, rate)
        ]

    def send(
        self,
        version: int | str,
        items: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]],
        correlation_id: str | Sequence[str | None] | None,
    ) -> int:
        """Capture what the sample keeps; returns how many records were sent.

        Best effort: a capture that cannot be sent (queue missing, throttled) is logged and
        dropped, never turned into a failed prediction."""
        if not self.enabled:
            return 0
        found = self.records(version, items, correlation_id)
        bodies = _messages(found)
        try:
            for start in range(0, len(bodies), 10):
                self.queue.send_batch(bodies[start : start + 10])
        except Exception as e:  # any adapter's error: the predictions are served regardless
            log.error(
                "capture: %d record(s) of %s not captured: %s: %s",
                len(found),
                self.model,
                type(e).__name__,
                e,
            )
            return 0
        return len(found)


def _capture_queue() -> Queue:
    from aibackend.adapters import queue_service

    return queue_service().get(QUEUE)


def _messages(records: list[dict[str, Any]]) -> list[str]:
    out = []
    for start in range(0, len(records), PER_MESSAGE):
        body = json.dumps(records[start : start + PER_MESSAGE], separators=(",", ":"))
        if len(body.encode()) <= MAX_MESSAGE_BYTES:
            out.append(body)
            continue
        for r in records[start : start + PER_MESSAGE]:  # split; a record alone too big is dropped
            one = json.dumps([r], separators=(",", ":"))
            if len(one.encode()) <= MAX_MESSAGE_BYTES:
                out.append(one)
            else:
                log.warning(
                    "capture: record of inference %s is %d bytes, over a queue message: not "
                    "captured",
                    r["inference_id"],
                    len(one.encode()),
                )
    return out


def capture_key(model: str, at: datetime, batch: str) -> str:
    """Where the consumer writes one batch of a model's records (hour partitions, UTC)."""
    return f"{PREFIX}{model}/{at:%Y-%m-%d}/{at:%H}/{batch}.jsonl"

"""The events AWS hands to a Lambda function, built exactly like AWS builds them.

The local runtime invokes handlers with these, so a handler cannot tell the two topologies
apart. Every builder is pure: time, ids, account and region are parameters (account
`000000000000` and region `local` by default), which keeps the samples in `events/`
reproducible and lets the tests compare byte for byte.

Quirks worth knowing, all AWS's own:

- SQS -> Lambda renames the message attributes to camelCase (`stringValue`, `dataType`, ...) and
  adds empty `stringListValues`/`binaryListValues`; every attribute value is a string.
- An S3 event notification URL-encodes the object key (`my file.csv` arrives as `my+file.csv`);
  the EventBridge `Object Created` event carries the key as it is.
- EventBridge times have whole seconds (`2026-11-27T12:00:00Z`); S3 notification times have
  milliseconds (`2026-11-27T12:00:00.000Z`); SQS timestamps are epoch milliseconds as strings.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct
import threading
import time as _time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aibackend.ports import PutEvent, QueueMessage

DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "local"


# ---------------------------------------------------------------------------------------------
# Small helpers: ARNs, timestamps, ids


@dataclass(frozen=True)
class Arns:
    """ARNs of the resources events mention, for one account and region."""

    account: str = DEFAULT_ACCOUNT
    region: str = DEFAULT_REGION
    partition: str = "aws"

    def queue(self, name: str) -> str:
        return f"arn:{self.partition}:sqs:{self.region}:{self.account}:{name}"

    def bucket(self, name: str) -> str:
        """S3 bucket ARNs carry neither region nor account."""
        return f"arn:{self.partition}:s3:::{name}"

    def event_bus(self, name: str = "default") -> str:
        return f"arn:{self.partition}:events:{self.region}:{self.account}:event-bus/{name}"

    def rule(self, name: str, *, bus: str = "default") -> str:
        """A rule on the default bus is `rule/<name>`; on a custom bus `rule/<bus>/<name>`."""
        path = name if bus == "default" else f"{bus}/{name}"
        return f"arn:{self.partition}:events:{self.region}:{self.account}:rule/{path}"


def _utc(t: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def iso_seconds(t: datetime) -> str:
    """EventBridge's `time`: `2026-11-27T12:00:00Z`."""
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(t: datetime) -> str:
    """S3's `eventTime`: `2026-11-27T12:00:00.000Z`."""
    u = _utc(t)
    return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"


def epoch_millis(t: datetime) -> str:
    """SQS's timestamps: epoch milliseconds as a string."""
    u = _utc(t)
    return str(int(u.timestamp()) * 1000 + u.microsecond // 1000)


def s3_request_id() -> str:
    """A fresh id shaped like S3's `x-amz-request-id` (16 upper-case hex digits)."""
    return secrets.token_hex(8).upper()


def s3_host_id(request_id: str) -> str:
    """A stable stand-in for `x-amz-id-2` (the S3 host that served the request)."""
    return base64.b64encode(hashlib.sha256(request_id.encode()).digest()).decode()


def encode_s3_key(key: str) -> str:
    """The key as S3 writes it into an event notification: form-URL-encoded, `/` kept.

    Spaces become `+` and everything else outside `A-Z a-z 0-9 / - _ . *` is percent-encoded
    (UTF-8), like Java's URLEncoder that S3 uses. Handlers undo it with `unquote_plus`.
    """
    return urllib.parse.quote_plus(key, safe="/*").replace("~", "%7E")


class Sequencer:
    """Strictly increasing S3-style sequencers: 18 upper-case hex digits, ordered as strings.

    S3 gives each PUT and DELETE of a key a sequencer so consumers can order events; ours is
    wall-clock nanoseconds, bumped by one when the clock has not moved (or went backwards), so
    it keeps increasing across restarts too.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self, now_ns: int | None = None) -> str:
        with self._lock:
            now = _time.time_ns() if now_ns is None else now_ns
            self._last = max(self._last + 1, now)
            return f"{self._last:018X}"


_SEQUENCER = Sequencer()


def sequencer(now_ns: int | None = None) -> str:
    """The next sequencer of this process (see `Sequencer`)."""
    return _SEQUENCER.next(now_ns)


# ---------------------------------------------------------------------------------------------
# SQS -> Lambda

_SQS_ATTRIBUTE_ORDER = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
)


def _attr(spec: Mapping[str, Any], name: str) -> Any:
    """An attribute field in SQS API casing (`StringValue`) or Lambda's (`stringValue`)."""
    return spec.get(name, spec.get(name[0].lower() + name[1:]))


def _lambda_message_attribute(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    data_type = _attr(spec, "DataType")
    if not isinstance(data_type, str) or not data_type:
        raise ValueError(f"message attribute {name!r} has no DataType")
    out: dict[str, Any] = {}
    if data_type.startswith("Binary"):
        value = _attr(spec, "BinaryValue")
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        out["binaryValue"] = value
    else:
        out["stringValue"] = _attr(spec, "StringValue")
    out["stringListValues"] = []
    out["binaryListValues"] = []
    out["dataType"] = data_type
    return out


def md5_of_message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """SQS's `MD5OfMessageAttributes`: names sorted, each field length-prefixed (big-endian)."""
    buf = bytearray()

    def put(b: bytes) -> None:
        buf.extend(struct.pack(">I", len(b)))
        buf.extend(b)

    for name in sorted(attributes):
        spec = attributes[name]
        data_type = str(_attr(spec, "DataType"))
        put(name.encode())
        put(data_type.encode())
        if data_type.startswith("Binary"):
            value = _attr(spec, "BinaryValue")
            raw = value if isinstance(value, bytes) else base64.b64decode(str(value))
            buf.append(2)
            put(raw)
        else:
            buf.append(1)
            put(str(_attr(spec, "StringValue")).encode())
    return hashlib.md5(bytes(buf), usedforsecurity=False).hexdigest()


def sqs_event(
    messages: Sequence[QueueMessage],
    *,
    queue_name: str,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
    now: datetime | None = None,
    sender_id: str | None = None,
) -> dict[str, Any]:
    """The event Lambda's SQS poller invokes a function with: one record per message.

    Message attributes may use the SQS API casing (`{"DataType": "String", "StringValue": ...}`)
    or Lambda's; they come out in Lambda's. System attributes the message lacks are filled in:
    `ApproximateReceiveCount` 1, `SenderId` (default: the account) and the two timestamps from
    `now`, which is then required.
    """
    arns = Arns(account=account, region=region)
    records: list[dict[str, Any]] = []
    for msg in messages:
        attrs = dict(msg.attributes)
        attrs.setdefault("ApproximateReceiveCount", "1")
        attrs.setdefault("SenderId", sender_id or account)
        for ts in ("SentTimestamp", "ApproximateFirstReceiveTimestamp"):
            if ts not in attrs:
                if now is None:
                    raise ValueError(
                        f"message {msg.message_id} has no {ts}; pass now= to fill it in"
                    )
                attrs[ts] = epoch_millis(now)
        ordered = {k: attrs[k] for k in _SQS_ATTRIBUTE_ORDER}
        ordered.update((k, v) for k, v in sorted(attrs.items()) if k not in ordered)
        record: dict[str, Any] = {
            "messageId": msg.message_id,
            "receiptHandle": msg.receipt_handle,
            "body": msg.body,
            "attributes": ordered,
            "messageAttributes": {
                name: _lambda_message_attribute(name, spec)
                for name, spec in msg.message_attributes.items()
            },
            "md5OfBody": msg.md5_of_body,
        }
        if msg.message_attributes:
            record["md5OfMessageAttributes"] = md5_of_message_attributes(msg.message_attributes)
        record |= {
            "eventSource": "aws:sqs",
            "eventSourceARN": arns.queue(queue_name),
            "awsRegion": region,
        }
        records.append(record)
    return {"Records": records}


# ---------------------------------------------------------------------------------------------
# EventBridge


def eventbridge_event(
    entry: PutEvent,
    *,
    event_id: str,
    time: datetime,
    account: str = DEFAULT_ACCOUNT,
    region: str = DEFAULT_REGION,
) -> dict[str, Any]:
    """What a rule's target receives for one `PutEvents` entry.

    `time` is when the bus accepted the entry; an entry's own `time` (PutEvents' `Time`) wins.
    """
    return {
        "version": "0",
        "id": event_id,
        "detail-type": entry.detail_type,
        "source": entry.source,
        "account": account,
        "time": iso_seconds(entry.time or time),
        "region": region,
        "resources": list(entry.resources),
        "detail": entry.detail,
    }


def scheduled_event(
    *,
    rule_name: str,
    time: datetime,
    event_id: str,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
) -> dict[str, Any]:
    """The `Scheduled Event` a schedule rule (always on the default bus) sends its targets."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": iso_seconds(time),
        "region": region,
        "resources": [Arns(account=account, region=region).rule(rule_name)],
        "detail": {},
    }


# ---------------------------------------------------------------------------------------------
# S3


def s3_notification(
    *,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    sequencer: str,
    time: datetime,
    request_id: str,
    event_name: str = "ObjectCreated:Put",
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
    source_ip: str = "127.0.0.1",
    principal_id: str | None = None,
    configuration_id: str = "aib-local",
    version_id: str | None = None,
) -> dict[str, Any]:
    """An S3 event notification (structure version 2.1) with one record.

    The key is URL-encoded as S3 does it (`encode_s3_key`); `principal_id` (who made the request)
    defaults to `AWS:<account>`.
    """
    obj: dict[str, Any] = {"key": encode_s3_key(key), "size": size, "eTag": etag}
    if version_id is not None:
        obj["versionId"] = version_id
    obj["sequencer"] = sequencer
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": iso_millis(time),
                "eventName": event_name,
                "userIdentity": {"principalId": principal_id or f"AWS:{account}"},
                "requestParameters": {"sourceIPAddress": source_ip},
                "responseElements": {
                    "x-amz-request-id": request_id,
                    "x-amz-id-2": s3_host_id(request_id),
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": configuration_id,
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": account},
                        "arn": Arns(account=account, region=region).bucket(bucket),
                    },
                    "object": obj,
                },
            }
        ]
    }


def s3_object_created_event(
    *,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    sequencer: str,
    time: datetime,
    event_id: str,
    request_id: str,
    reason: str = "PutObject",
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
    requester: str | None = None,
    source_ip: str = "127.0.0.1",
    version_id: str | None = None,
) -> dict[str, Any]:
    """The EventBridge `Object Created` event S3 sends to the default bus.

    Unlike the notification, the key is not URL-encoded. `reason` is the API that made the
    object (`PutObject`, `CopyObject`, `CompleteMultipartUpload`); `requester` defaults to the
    account.
    """
    obj: dict[str, Any] = {"key": key, "size": size, "etag": etag}
    if version_id is not None:
        obj["version-id"] = version_id
    obj["sequencer"] = sequencer
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": iso_seconds(time),
        "region": region,
        "resources": [Arns(account=account, region=region).bucket(bucket)],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": request_id,
            "requester": requester or account,
            "source-ip-address": source_ip,
            "reason": reason,
        },
    }

"""SQS adapter for the queue port (boto3, imported lazily): the same contract as the local engine.

Queues are resolved by logical name: the URL in `AIB_QUEUE_<NAME>` (CDK sets one per declared
queue), else `GetQueueUrl` on the name itself. In production CDK creates and configures
queues, so `ensure` only looks the queue up; `SqsQueueService(client, create=True)` creates or
reconfigures them (redrive policy included) for tests under moto and for scratch accounts.

Requests are checked with the local engine's checks before they leave, so both adapters refuse
the same things with the same errors (`QueueRequestError` names the limit).

Redrive: receive from the DLQ, send to the source in batches of 10, delete what was sent.
`StartMessageMoveTask` would move messages server-side, but it is asynchronous (no exact count
to return), moto does not implement it, and it needs the DLQ's ARN and permissions the
functions do not otherwise hold. The loop is synchronous and counts exactly; the price: moved
messages get new ids, a crash between send and delete may duplicate a batch (at-least-once,
like everything on SQS), and messages in flight in the DLQ stay there. For DLQs of millions,
use the console's "Start DLQ redrive" instead.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from aibackend.adapters.aws import _client
from aibackend.adapters.local_queue import (
    MAX_BATCH,
    MAX_DELAY_S,
    MAX_VISIBILITY_S,
    QueueBatchError,
    QueueNotFoundError,
    QueueRequestError,
    ReceiptHandleError,
    check_batch,
    check_batch_size,
    check_config,
    check_message,
    check_range,
    check_receive,
    dead_letter_config,
)
from aibackend.ports import QueueConfig, QueueMessage, QueueStats
from aibackend.settings import physical_name, resource_env

_NOT_FOUND = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
_BAD_HANDLE = ("ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidReceiptHandle")
# What a message attribute carries on the way back in (boto3 adds empty list fields).
_ATTRIBUTE_VALUE_KEYS = ("DataType", "StringValue", "BinaryValue")
_STATS_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "RedrivePolicy",
]


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _failures(response: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    """A batch call's `Failed` entries as (entry index, error code, message), by index."""
    return sorted(
        (int(f["Id"]), str(f["Code"]), str(f.get("Message", "")))
        for f in response.get("Failed", [])
    )


def _name_of(url_or_arn: str) -> str:
    """Physical queue name: the last segment of a queue URL or ARN."""
    if url_or_arn.startswith("arn:"):
        return url_or_arn.rsplit(":", 1)[-1]
    return urlparse(url_or_arn).path.rstrip("/").rsplit("/", 1)[-1]


def _message_attributes(raw: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """SQS's attribute values, minus the empty list fields boto3 returns alongside them."""
    out: dict[str, dict[str, str]] = {}
    for name, value in raw.items():
        attr = {"DataType": str(value["DataType"])}
        if "StringValue" in value:
            attr["StringValue"] = str(value["StringValue"])
        elif "BinaryValue" in value:  # sent by another producer; the port carries strings
            attr["BinaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        out[name] = attr
    return out


class SqsQueue:
    """One SQS queue; implements `Queue`."""

    def __init__(
        self, name: str, url: str, client: Any, logical_names: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.url = url
        self._sqs = client
        # Physical -> logical name, to report a DLQ by the name the code uses.
        self._logical = logical_names if logical_names is not None else {}

    def __repr__(self) -> str:
        return f"SqsQueue({self.name!r}, url={self.url!r})"

    def send(
        self,
        body: str,
        *,
        delay_s: int | None = None,
        message_attributes: Mapping[str, Mapping[str, str]] | None = None,
    ) -> str:
        """Enqueue one message; returns its id. `delay_s` None: the queue's delay applies."""
        attrs, _ = check_message(body, message_attributes)
        kwargs: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": body}
        if delay_s is not None:
            check_range(delay_s, 0, MAX_DELAY_S, "delay_s")
            kwargs["DelaySeconds"] = delay_s
        if attrs:
            kwargs["MessageAttributes"] = attrs
        return str(self._sqs.send_message(**kwargs)["MessageId"])

    def send_batch(self, bodies: Sequence[str], *, delay_s: int | None = None) -> list[str]:
        """Enqueue 1 to 10 messages; returns their ids in order.

        Raises `QueueBatchError` (with what went through) when SQS refuses some entries.
        """
        check_batch(bodies)
        if delay_s is not None:
            check_range(delay_s, 0, MAX_DELAY_S, "delay_s")
        entries: list[dict[str, Any]] = []
        for i, body in enumerate(bodies):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
            if delay_s is not None:
                entry["DelaySeconds"] = delay_s
            entries.append(entry)
        r = self._sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
        sent = {int(e["Id"]): str(e["MessageId"]) for e in r.get("Successful", [])}
        failed = _failures(r)
        if failed:
            raise QueueBatchError(
                f"SQS refused {len(failed)} of {len(bodies)} messages for {self.name!r}: "
                + "; ".join(f"#{i} {code}: {msg}" for i, code, msg in failed),
                succeeded=sent,
                failed=failed,
            )
        return [sent[i] for i in range(len(bodies))]

    def receive(
        self,
        max_messages: int = 1,
        *,
        wait_s: float = 0,
        visibility_timeout_s: int | None = None,
    ) -> list[QueueMessage]:
        """Up to `max_messages` messages; `wait_s` is rounded up to whole seconds (SQS's unit)."""
        check_receive(max_messages, wait_s, visibility_timeout_s)
        kwargs: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": math.ceil(wait_s),
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout_s
        r = self._sqs.receive_message(**kwargs)
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                md5_of_body=m["MD5OfBody"],
                attributes={k: str(v) for k, v in m.get("Attributes", {}).items()},
                message_attributes=_message_attributes(m.get("MessageAttributes", {})),
            )
            for m in r.get("Messages", [])
        ]

    def delete(self, receipt_handle: str) -> None:
        """Delete a received message (SQS ignores a handle that is no longer current)."""
        try:
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)
        except Exception as e:
            if _code(e) in _BAD_HANDLE:
                raise ReceiptHandleError(
                    f"receipt handle {receipt_handle!r} is not valid for {self.name!r}"
                ) from e
            raise

    def delete_batch(self, receipt_handles: Sequence[str]) -> None:
        check_batch_size(len(receipt_handles))
        r = self._sqs.delete_message_batch(
            QueueUrl=self.url,
            Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(receipt_handles)],
        )
        failed = _failures(r)
        if not failed:
            return
        detail = "; ".join(f"#{i} {code}: {msg}" for i, code, msg in failed)
        if all(code in _BAD_HANDLE for _, code, _ in failed):
            raise ReceiptHandleError(f"invalid receipt handles for {self.name!r}: {detail}")
        deleted = {int(e["Id"]): receipt_handles[int(e["Id"])] for e in r.get("Successful", [])}
        raise QueueBatchError(
            f"SQS failed to delete {len(failed)} of {len(receipt_handles)} messages of "
            f"{self.name!r}: {detail}",
            succeeded=deleted,
            failed=failed,
        )

    def change_visibility(self, receipt_handle: str, timeout_s: int) -> None:
        check_range(timeout_s, 0, MAX_VISIBILITY_S, "timeout_s")
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=timeout_s
            )
        except Exception as e:
            if _code(e) in _BAD_HANDLE:
                raise ReceiptHandleError(
                    f"no message of {self.name!r} is in flight under receipt handle "
                    f"{receipt_handle!r}"
                ) from e
            raise

    def stats(self) -> QueueStats:
        """SQS's approximate counts (eventually consistent: may lag a few seconds)."""
        a = self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=_STATS_ATTRIBUTES)[
            "Attributes"
        ]
        dlq = None
        if a.get("RedrivePolicy"):
            physical = _name_of(json.loads(a["RedrivePolicy"])["deadLetterTargetArn"])
            dlq = self._logical.get(physical, physical)
        return QueueStats(
            name=self.name,
            visible=int(a.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(a.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(a.get("ApproximateNumberOfMessagesDelayed", 0)),
            dead_letter_queue=dlq,
        )


class SqsQueueService:
    """SQS queues by logical name; implements `QueueService`.

    `create=True` lets `ensure` create and reconfigure queues (tests, scratch accounts); leave it
    off in functions, whose queues belong to CDK.
    """

    def __init__(self, client: Any = None, *, create: bool = False) -> None:
        self._sqs = client or _client("sqs")
        self._create = create
        self._urls: dict[str, str] = {}
        #: Physical -> logical name of every queue resolved so far (shared with the queues).
        self._logical: dict[str, str] = {}

    def _known(self) -> str:
        try:
            pages = self._sqs.get_paginator("list_queues").paginate()
            names = sorted(_name_of(u) for page in pages for u in page.get("QueueUrls", []))
        except Exception as e:  # e.g. no sqs:ListQueues permission: still say what we know
            return f"could not list queues: {e}"
        return ", ".join(names) or "none"

    def _lookup(self, name: str) -> str | None:
        """The queue's URL from the environment or `GetQueueUrl`, None when it does not exist."""
        url = self._urls.get(name)
        if url is not None:
            return url
        env_url = physical_name("queue", name)
        if env_url != name:
            url = env_url
        else:
            try:
                url = str(self._sqs.get_queue_url(QueueName=name)["QueueUrl"])
            except Exception as e:
                if _code(e) in _NOT_FOUND:
                    return None
                raise
        self._urls[name] = url
        self._logical[_name_of(url)] = name
        return url

    def _url(self, name: str) -> str:
        url = self._lookup(name)
        if url is None:
            raise QueueNotFoundError(
                f"queue {name!r} does not exist (set {resource_env('queue', name)} to its URL; "
                f"known queues: {self._known()})"
            )
        return url

    def _queue(self, name: str, url: str) -> SqsQueue:
        return SqsQueue(name, url, self._sqs, self._logical)

    def get(self, name: str) -> SqsQueue:
        return self._queue(name, self._url(name))

    def ensure(self, config: QueueConfig) -> SqsQueue:
        """The queue as CDK made it; with `create=True`, created or reconfigured to `config`."""
        check_config(config)
        if not self._create:
            return self.get(config.name)
        attributes = {
            "VisibilityTimeout": str(config.visibility_timeout_s),
            "MessageRetentionPeriod": str(config.retention_s),
            "DelaySeconds": str(config.delay_s),
            "RedrivePolicy": "",
        }
        if config.dead_letter_queue is not None:
            dlq_url = self._lookup(config.dead_letter_queue) or self._create_queue(
                dead_letter_config(config.dead_letter_queue), {}
            )
            arn = self._sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": config.max_receive_count}
            )
        url = self._lookup(config.name)
        if url is None:
            url = self._create_queue(config, attributes)
        else:
            self._sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return self._queue(config.name, url)

    def _create_queue(self, config: QueueConfig, attributes: dict[str, str]) -> str:
        attrs = {
            "VisibilityTimeout": str(config.visibility_timeout_s),
            "MessageRetentionPeriod": str(config.retention_s),
            "DelaySeconds": str(config.delay_s),
        }
        attrs.update({k: v for k, v in attributes.items() if v})
        url = str(self._sqs.create_queue(QueueName=config.name, Attributes=attrs)["QueueUrl"])
        self._urls[config.name] = url
        self._logical[_name_of(url)] = config.name
        return url

    def list(self) -> list[QueueStats]:
        """Stats of every queue the account lists (needs `sqs:ListQueues`), by name."""
        pages = self._sqs.get_paginator("list_queues").paginate()
        urls = sorted((u for page in pages for u in page.get("QueueUrls", [])), key=_name_of)
        out = []
        for url in urls:
            physical = _name_of(url)
            out.append(self._queue(self._logical.get(physical, physical), url).stats())
        return out

    def redrive(self, dead_letter_queue: str, *, to: str | None = None) -> int:
        """Move the DLQ's visible messages to its source (or `to`); returns how many moved.

        Message bodies and message attributes travel; the receive count starts again at zero.
        """
        dlq_url = self._url(dead_letter_queue)
        if to is None:
            sources = self._sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get(
                "queueUrls", []
            )
            if len(sources) != 1:
                names = ", ".join(sorted(_name_of(u) for u in sources)) or "none"
                raise QueueRequestError(
                    f"{len(sources)} queues use {dead_letter_queue!r} as their dead-letter "
                    f"queue ({names}); pass `to` to choose the target"
                )
            target_url = str(sources[0])
        else:
            target_url = self._url(to)
        if target_url == dlq_url:
            raise QueueRequestError(f"cannot redrive {dead_letter_queue!r} into itself")
        target_name = to or self._logical.get(_name_of(target_url), _name_of(target_url))
        moved = 0
        wait_s = 0
        while True:
            r = self._sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=MAX_BATCH,
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
            )
            messages = r.get("Messages", [])
            if not messages:
                if wait_s:
                    return moved  # a long poll asks every server: the DLQ is drained
                # A short poll samples some servers only: believe it when the count agrees,
                # else ask once more with a long poll.
                left = self._sqs.get_queue_attributes(
                    QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
                if int(left.get("ApproximateNumberOfMessages", 0)) == 0:
                    return moved
                wait_s = 1
                continue
            wait_s = 0
            entries = []
            for i, m in enumerate(messages):
                entry: dict[str, Any] = {"Id": str(i), "MessageBody": m["Body"]}
                if m.get("MessageAttributes"):
                    entry["MessageAttributes"] = {
                        name: {k: v for k, v in attr.items() if k in _ATTRIBUTE_VALUE_KEYS}
                        for name, attr in m["MessageAttributes"].items()
                    }
                entries.append(entry)
            sent = self._sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
            ok = [int(e["Id"]) for e in sent.get("Successful", [])]
            if ok:
                self._sqs.delete_message_batch(
                    QueueUrl=dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": messages[i]["ReceiptHandle"]} for i in ok
                    ],
                )
                moved += len(ok)
            if sent.get("Failed"):
                raise QueueBatchError(
                    f"redrive of {dead_letter_queue!r} into {target_name!r} stopped after "
                    f"{moved} messages: SQS refused {len(sent['Failed'])} (they stay in the DLQ)",
                    succeeded={},
                    failed=_failures(sent),
                )

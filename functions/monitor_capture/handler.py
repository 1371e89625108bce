"""SQS `inference-capture` messages -> `capture/<model>/<YYYY-MM-DD>/<HH>/<message id>.jsonl`.

One object per message, named by its message id: a redelivered message rewrites the same object,
so a record is stored once however often it arrives. A message that cannot be read or stored is
reported alone in `batchItemFailures` and, after `max_receive_count` tries, waits in the DLQ.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import object_store
from aibackend.capture import BUCKET
from aibackend.masking import masked_logger

from .store import store_message

logger = masked_logger()
metrics = Metrics()
STORE = object_store(BUCKET)
processor = BatchProcessor(event_type=EventType.SQS)


def _record(record: Any) -> None:
    _, count = store_message(STORE, record.message_id, record.body)
    metrics.add_metric(name="CapturedRecords", unit=MetricUnit.Count, value=count)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=_record, processor=processor, context=context
    )

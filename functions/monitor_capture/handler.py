"""SQS `inference-capture` messages -> per message, in the monitoring bucket:
`capture/<model>/<YYYY-MM-DD>/<HH>/<message id>.jsonl` (the records),
`profiles/<model>/<YYYY-MM-DD>/<HH>/<message id>.bin` (their profile delta, delta id from the
message id), and the predictions in the model's label ledger.

Named by message id: a redelivered message rewrites the same objects and adds nothing twice. A
message that cannot be read or stored is reported alone in `batchItemFailures` and, after
`max_receive_count` tries, waits in the DLQ.
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
from aibackend.monitoring.config import MonitorSettings, settings_for, settings_from_env
from aibackend.monitoring.labels import LabelStore
from aibackend.monitoring.ledger import open_ledger
from aibackend.settings import physical_name

from .store import store_message

logger = masked_logger()
metrics = Metrics()
STORE = object_store(physical_name("bucket", BUCKET))
SETTINGS = settings_from_env()
processor = BatchProcessor(event_type=EventType.SQS)
_LEDGERS: dict[str, LabelStore] = {}


def _ledger(model: str) -> LabelStore:
    if model not in _LEDGERS:
        _LEDGERS[model] = open_ledger(model)
    return _LEDGERS[model]


def _settings(model: str) -> MonitorSettings:
    return settings_for(model, SETTINGS)


def _record(record: Any) -> None:
    done = store_message(STORE, record.message_id, record.body, ledger=_ledger, settings=_settings)
    metrics.add_metric(name="CapturedRecords", unit=MetricUnit.Count, value=done.records)
    if done.profile_key is None:
        logger.info("capture of a model monitoring cannot profile", extra={"key": done.key})


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=_record, processor=processor, context=context
    )

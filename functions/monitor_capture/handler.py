"""SQS `inference-capture` batches -> the monitoring bucket and the label ledger, per model and
hour of the batch: `capture/<model>/<YYYY-MM-DD>/<HH>/<batch id>.jsonl` (the records),
`profiles/<model>/<YYYY-MM-DD>/<HH>/<batch id>.bundle` (one profile delta per message, its id
from the message id) and the predictions in the model's label ledger (see `store.py`).

A message that cannot be read or stored is reported in `batchItemFailures` (the others are
stored) and, after `max_receive_count` tries, waits in the DLQ with the reason in the log.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import object_store
from aibackend.capture import BUCKET
from aibackend.masking import masked_logger
from aibackend.monitoring.config import MonitorSettings, settings_for, settings_from_env
from aibackend.monitoring.labels import LabelStore
from aibackend.monitoring.ledger import open_ledger
from aibackend.settings import physical_name

from .store import Message, store_batch

logger = masked_logger()
metrics = Metrics()
STORE = object_store(physical_name("bucket", BUCKET))
SETTINGS = settings_from_env()
_LEDGERS: dict[str, LabelStore] = {}


def _ledger(model: str) -> LabelStore:
    if model not in _LEDGERS:
        _LEDGERS[model] = open_ledger(model)
    return _LEDGERS[model]


def _settings(model: str) -> MonitorSettings:
    return settings_for(model, SETTINGS)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    messages = [Message(r["messageId"], r["body"]) for r in event.get("Records", [])]
    done = store_batch(STORE, messages, ledger=_ledger, settings=_settings)
    for s in done.stored:
        metrics.add_metric(name="CapturedRecords", unit=MetricUnit.Count, value=s.records)
        if s.profile_key is None:
            logger.info("capture of a model monitoring cannot profile", extra={"key": s.key})
    for message_id, reason in done.failed.items():
        logger.error(
            "capture message not stored", extra={"message_id": message_id, "reason": reason}
        )
    if done.failed:
        metrics.add_metric(name="CaptureFailures", unit=MetricUnit.Count, value=len(done.failed))
    # The SQS partial batch response (the event source mapping reports them).
    return {"batchItemFailures": [{"itemIdentifier": m} for m in done.failed]}

"""S3 `Object Created` under labels/<model>/*.csv in the monitoring bucket -> the model's label
ledger; rows that cannot be read go to labels-quarantine/<model>/<file>.rejected.csv with
their line number and reason, the rest proceed (a file that cannot be read at all goes there
whole, as line 0). Re-reading a file adds nothing twice (the
ledger is keyed by inference id)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import object_store
from aibackend.masking import masked_logger
from aibackend.monitoring.config import settings_from_env
from aibackend.monitoring.feedback import (
    LabelsFileError,
    Rejected,
    chunks,
    model_of,
    parse_labels_csv,
    quarantine_key,
    record_labels,
    rejected_csv,
)
from aibackend.monitoring.ledger import open_ledger

logger = masked_logger()
metrics = Metrics()
MODELS = frozenset(settings_from_env())


def load_file(bucket: str, key: str, now: datetime) -> dict[str, Any]:
    """One labels file into the ledger; returns what happened to its rows. A file that cannot
    be read at all is quarantined whole, with the reason (retrying cannot fix it)."""
    store = object_store(bucket)
    try:
        model = model_of(key)
        if model not in MODELS:
            raise LabelsFileError(
                f"{key}: model {model!r} is not monitored (monitored: {', '.join(sorted(MODELS))})"
            )
        parsed = parse_labels_csv(store.get(key), key)
    except LabelsFileError as e:
        logger.error("labels file rejected", extra={"key": key, "reason": str(e)})
        whole = [Rejected(line=0, reason=str(e), row="")]
        store.put(quarantine_key(key), rejected_csv(whole), content_type="text/csv")
        return {
            "key": key,
            "model": None,
            "rows": 0,
            "accepted": 0,
            "unknown_yet": 0,
            "rejected": 0,
            "file_rejected": str(e),
        }
    ledger = open_ledger(model)
    accepted = unknown = 0
    for part in chunks(parsed.items):
        done = record_labels(ledger, model, part, now)
        accepted += done.accepted
        unknown += done.unknown_yet
    if parsed.rejected:
        store.put(quarantine_key(key), rejected_csv(parsed.rejected), content_type="text/csv")
    return {
        "key": key,
        "model": model,
        "rows": len(parsed.items) + len(parsed.rejected),
        "accepted": accepted,
        "unknown_yet": unknown,
        "rejected": len(parsed.rejected),
    }


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    files = []
    for record in S3Event(event).records:
        done = load_file(record.s3.bucket.name, record.s3.get_object.key, datetime.now(UTC))
        logger.info("labels file loaded", extra=done)
        metrics.add_metric(name="LabelsAccepted", unit=MetricUnit.Count, value=done["accepted"])
        metrics.add_metric(name="LabelsRejected", unit=MetricUnit.Count, value=done["rejected"])
        files.append(done)
    return {"files": files}

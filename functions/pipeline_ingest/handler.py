"""S3 `Object Created` under raw/transactions/ -> chunk messages on the validation queue.

A file that cannot be read completes its run as failed (`aibackend.pipeline.failure`)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import object_store, queue_service
from aibackend.catalog import AsyncDelivery, load_function
from aibackend.collector import tune_for_batches
from aibackend.masking import masked_logger
from aibackend.pipeline.failure import ingest_file
from aibackend.pipeline.runs import run_store
from aibackend.ports import Queue

logger = masked_logger()
tune_for_batches()  # chunks of thousands of rows: see aibackend.collector
metrics = Metrics()

RUNS = run_store()
CHUNK_SIZE = int(os.environ.get("PIPELINE_CHUNK_SIZE", "1000"))
#: Invocations per event: the first and the trigger's retries (`[[objects]] max_attempts`).
ATTEMPTS = 1 + (load_function(Path(__file__).parent).async_delivery or AsyncDelivery()).max_attempts


@cache
def _out() -> Queue:
    """The validation queue, looked up on first use (it exists once the stack or `aib dev`
    made it, which may be after this module is imported)."""
    return queue_service().get("pipeline-validate")


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runs = []
    for record in S3Event(event).records:
        obj = record.s3.get_object
        run = ingest_file(
            bucket=record.s3.bucket.name,
            key=obj.key,
            etag=obj.etag,
            stores=object_store,
            runs=RUNS,
            out=_out(),
            chunk_size=CHUNK_SIZE,
            attempts=ATTEMPTS,
        )
        if run.failure is not None:
            logger.error(
                "ingest failed", extra={"run_id": run.run_id, "reason": run.failure.reason}
            )
            metrics.add_metric(name="IngestFailed", unit=MetricUnit.Count, value=1)
        logger.info("ingested", extra={"run_id": run.run_id, "rows": run.rows, "key": obj.key})
        metrics.add_metric(name="RowsIngested", unit=MetricUnit.Count, value=run.rows or 0)
        runs.append({"run_id": run.run_id, "rows": run.rows, "chunks": run.chunks})
    return {"runs": runs}

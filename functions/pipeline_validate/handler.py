"""SQS chunk messages -> quarantine objects + valid rows on the score queue (partial batch)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import object_store, queue_service
from aibackend.catalog import load_function
from aibackend.collector import tune_for_batches
from aibackend.masking import masked_logger
from aibackend.pipeline.runs import run_store
from aibackend.pipeline.stages import QueueStage, validate_message
from aibackend.ports import Queue

logger = masked_logger()
tune_for_batches()  # chunks of thousands of rows: see aibackend.collector

SPEC = load_function(Path(__file__).parent)
RUNS = run_store()
STAGE = QueueStage("validate", RUNS, SPEC.queues[0].max_receive_count)
processor = BatchProcessor(event_type=EventType.SQS)


@cache
def _out() -> Queue:
    """The score queue, looked up on first use (it may not exist yet at import under `aib
    dev`)."""
    return queue_service().get("pipeline-score")


def _record(record: Any) -> None:
    STAGE(
        record.raw_event,
        lambda m: validate_message(m, stores=object_store, runs=RUNS, out=_out()),
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=_record, processor=processor, context=context
    )

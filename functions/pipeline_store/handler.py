"""SQS chunk messages of valid rows -> curated/transactions/date=.../<run>-<chunk>.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import object_store
from aibackend.catalog import load_function
from aibackend.collector import tune_for_batches
from aibackend.masking import masked_logger
from aibackend.pipeline.runs import run_store
from aibackend.pipeline.stages import QueueStage, store_message

logger = masked_logger()
tune_for_batches()  # chunks of thousands of rows: see aibackend.collector

SPEC = load_function(Path(__file__).parent)
RUNS = run_store()
STAGE = QueueStage("store", RUNS, SPEC.queues[0].max_receive_count)
processor = BatchProcessor(event_type=EventType.SQS)


def _record(record: Any) -> None:
    STAGE(record.raw_event, lambda m: store_message(m, stores=object_store, runs=RUNS))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=_record, processor=processor, context=context
    )

"""SQS chunk messages of valid rows -> online features, scores, bands, reasons -> store queue;
`Fraud Suspected` on the bus for high-risk rows (partial batch)."""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus, object_store, queue_service
from aibackend.catalog import load_function
from aibackend.collector import tune_for_batches
from aibackend.masking import masked_logger
from aibackend.models.card import Baseline
from aibackend.models.runtime import load_model
from aibackend.pipeline.features import feature_store
from aibackend.pipeline.runs import run_store
from aibackend.pipeline.score import Bands, reference_row, score_chunk
from aibackend.pipeline.stages import QueueStage, score_message
from aibackend.ports import Queue

logger = masked_logger()
tune_for_batches()  # chunks of thousands of rows: see aibackend.collector

SPEC = load_function(Path(__file__).parent)
RUNS = run_store()
MODEL = load_model("fraud")
SCORER = partial(
    score_chunk,
    model=MODEL,
    features=feature_store(),
    bands=Bands.from_env(),
    ref=reference_row(Baseline.read(MODEL.path)),
)
BUS = event_bus()
STAGE = QueueStage("score", RUNS, SPEC.queues[0].max_receive_count)
processor = BatchProcessor(event_type=EventType.SQS)
logger.append_keys(model_name=MODEL.name, model_version=MODEL.version)


@cache
def _out() -> Queue:
    """The store queue, looked up on first use (it may not exist yet at import under `aib
    dev`)."""
    return queue_service().get("pipeline-store")


def _record(record: Any) -> None:
    STAGE(
        record.raw_event,
        lambda m: score_message(
            m, stores=object_store, runs=RUNS, scorer=SCORER, out=_out(), bus=BUS
        ),
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=_record, processor=processor, context=context
    )

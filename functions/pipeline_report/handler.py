"""Scheduled Event (00:15 UTC) -> `reports/daily/<previous UTC day>.json` and one
`Pipeline Run Completed` event on the platform bus.

The day is the one before the event's own `time`, not before the clock: a retried or late
delivery of the same scheduled event reports the same day. An event whose detail names a day
(`{"date": "YYYY-MM-DD"}`, e.g. sent by hand to fill a gap) reports that day instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aibackend.adapters import event_bus, object_store
from aibackend.masking import masked_logger
from aibackend.pipeline.report import parse_day, previous_day, publish_daily
from aibackend.settings import physical_name

logger = masked_logger()
metrics = Metrics()

#: The data bucket: its physical name on AWS (CDK sets it), the logical one locally.
BUCKET = physical_name("bucket", "pipeline-data")
BUS = event_bus()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    asked = (event.get("detail") or {}).get("date")
    day = parse_day(asked) if asked else previous_day(datetime.fromisoformat(event["time"]))
    done = publish_daily(object_store(BUCKET), BUS, day)
    totals = done.report.totals
    logger.info(
        "daily report",
        extra={"date": day.isoformat(), "key": done.key, "runs": len(done.report.run_ids)},
    )
    metrics.add_metric(name="RowsReported", unit=MetricUnit.Count, value=totals.volume)
    return {"date": day.isoformat(), "report_key": done.key, "event_id": done.event_id}

"""Contracts of the data pipeline's events (source `aib.pipeline`): `Pipeline Run Completed`,
which the daily reporting feed (`functions/pipeline_report`) publishes once a day's report is
written. (The pipeline's `Fraud Suspected` is the fraud contract's, `aibackend.contracts.fraud`.)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from aibackend.contracts.base import Detail, register

#: The `source` of every event the pipeline publishes.
SOURCE = "aib.pipeline"

Count = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class DayTotals(BaseModel):
    """The day's figures over every curated row and quarantined row dated that day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    volume: Count
    amount_eur: Annotated[float, Field(ge=0)]
    high_risk: Count
    fraud_rate: Annotated[Share, Field(description="Share of rows in the `high` risk band")]
    mean_score: Annotated[Share | None, Field(description="None on a day without rows")] = None
    quarantined: Count
    quarantine_rate: Share


@register
class PipelineRunCompletedV1(Detail):
    """A day's report is written (`reports/daily/<date>.json` in `bucket`)."""

    detail_type = "Pipeline Run Completed"
    version = "1"

    schema_version: Literal["1"] = "1"
    idempotency_key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            description="The day and a digest of the report: repeats when nothing changed",
        ),
    ]
    date: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day, ISO 8601")]
    report_key: Annotated[str, Field(min_length=1, max_length=1024)]
    bucket: Annotated[str, Field(min_length=1, max_length=255)]
    totals: DayTotals
    run_ids: list[Annotated[str, Field(min_length=1, max_length=64)]]

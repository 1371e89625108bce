"""Contracts of the model monitor's findings (source `aib.monitoring`): `Model Drift Detected`,
`Model Performance Degraded`, `Bias Detected`. Each carries the test, its statistic and
threshold, the window and the baseline (production) version it was judged against, and the key
of the window's report in the monitoring bucket. One event per window and finding: re-running
a window publishes nothing new. `correlation_id` and `caused_by` are the id of the scheduled
event (or of the `aib monitor run` invocation) that ran the monitor."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from aibackend.contracts.base import EmittedDetail, register

Name = Annotated[str, Field(min_length=1, max_length=64)]
Key = Annotated[str, Field(min_length=1, max_length=1024)]


class MonitorWindow(BaseModel):
    """[start, end) in UTC: an hour, or a day so far."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    span: Literal["hour", "day"]
    start: datetime
    end: datetime


class Finding(EmittedDetail):
    """What every monitoring finding carries."""

    model: Name
    baseline_version: Annotated[int, Field(ge=1, description="Production version judged against")]
    window: MonitorWindow
    test: Name
    statistic: float
    threshold: float
    report_key: Key


class DriftedColumn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    column: Name
    test: Name | None
    statistic: float | None
    threshold: float | None
    p_value: float | None
    null_share_drifted: bool


@register
class ModelDriftDetectedV1(Finding):
    """`finding = "dataset"`: the share of drifting features (`statistic`) reached the model's
    `drift_share` (`threshold`), test `drift_share`. `finding = "prediction"`: the score's
    distribution drifted (`test` is the column test, e.g. `wasserstein`). `columns`: every
    drifting column with its own test, statistic and threshold."""

    detail_type = "Model Drift Detected"
    version = "1"

    schema_version: Literal["1"] = "1"
    finding: Literal["dataset", "prediction"]
    rows: Annotated[int, Field(ge=0, description="Predictions in the window")]
    columns: list[DriftedColumn]


@register
class ModelPerformanceDegradedV1(Finding):
    """ROC AUC of the window's labelled predictions (`statistic`) below the model's
    `min_roc_auc` (`threshold`), test `roc_auc`; judged once `labelled` reaches `min_labels`."""

    detail_type = "Model Performance Degraded"
    version = "1"

    schema_version: Literal["1"] = "1"
    metric: Literal["roc_auc"]
    labelled: Annotated[int, Field(ge=0)]
    completeness: Annotated[float, Field(ge=0, le=1)]


@register
class BiasDetectedV1(Finding):
    """A gap between two groups of a sensitive attribute (`statistic`, high minus low group)
    reached the tolerance (`threshold`) with its simultaneous Newcombe interval
    [`lower`, `upper`] excluding 0; test `newcombe_gap`."""

    detail_type = "Bias Detected"
    version = "1"

    schema_version: Literal["1"] = "1"
    attribute: Name
    metric: Literal["demographic_parity", "true_positive_rate", "false_positive_rate"]
    high_group: Name
    low_group: Name
    lower: float
    upper: float

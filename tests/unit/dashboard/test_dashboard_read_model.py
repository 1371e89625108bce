"""The dashboard's read model on a state folder written by the monitoring code: one point per
judged hour for drift (with its threshold and verdict), score quantiles, accuracy and bias;
per function and minute, invocations, errors and latency percentiles from `REPORT` lines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aibackend.adapters.local import LocalObjectStore
from aibackend.local.dashboard import (
    HINT_REPORTS,
    HINT_TRAFFIC,
    Dashboard,
    DashboardData,
    InvocationLog,
    Query,
    window_of,
)
from aibackend.local.logs import log_path
from aibackend.monitoring.profiles import WindowKey
from aibackend.settings import PlatformSettings
from tests.unit.dashboard.state import (
    HOUR0,
    MonitoringState,
    write_invocations,
    write_monitoring_state,
)

NOW = HOUR0 + timedelta(hours=4, minutes=30)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitoringState]:
    folder = tmp_path_factory.mktemp("dashboard-state")
    built = write_monitoring_state(folder, first_hour=HOUR0, hours=4, shifted=2)
    write_invocations(folder, "fraud_score", NOW - timedelta(minutes=3), [4.0] * 98 + [50, 90], {7})
    write_invocations(folder, "fraud_score", NOW - timedelta(minutes=1), [2.0, 3.0, 9.0], set())
    write_invocations(folder, "monitor_capture", NOW - timedelta(minutes=2), [30.0], {0})
    yield built


def _data(state: MonitoringState, **query: object) -> DashboardData:
    return Dashboard(PlatformSettings(state_dir=state.state_dir)).data(
        Query(**query),  # type: ignore[arg-type]
        now=NOW,
    )


def test_every_judged_hour_is_one_point_of_every_model_series(state: MonitoringState) -> None:
    # GIVEN four judged hours of fraud
    # WHEN the dashboard reads the last 24 hours
    got = _data(state)
    # THEN fraud is the model shown, with one window per report, in time order
    assert got.models == ["fraud"] and got.model is not None
    starts = [w.start for w in got.model.windows]
    assert starts == [k.start for k in state.hours]
    assert [w.rows for w in got.model.windows] == [r.rows for r in state.reports] == [400] * 4
    # AND every column the reports tested has a point per window
    columns = {c.column for c in got.model.drift}
    assert {f.column for f in state.reports[0].drift.features} <= columns  # type: ignore[union-attr]
    assert "score" in columns
    assert all([p.start for p in c.points] == starts for c in got.model.drift)
    assert [p.start for p in got.model.scores] == starts
    assert [p.start for p in got.model.accuracy] == starts
    assert "monitoring" not in got.hints


def test_drift_points_carry_the_reports_statistic_threshold_and_verdict(
    state: MonitoringState,
) -> None:
    # GIVEN the third hour's amounts were tripled
    got = _data(state).model
    assert got is not None
    amount = next(c for c in got.drift if c.column == "amount_eur")
    # THEN its series is the reports' own numbers, drifting in that hour only
    expected = [
        next(c for c in r.drift.features if c.column == "amount_eur")  # type: ignore[union-attr]
        for r in state.reports
    ]
    assert [p.statistic for p in amount.points] == [c.statistic for c in expected]
    assert [p.threshold for p in amount.points] == [c.threshold for c in expected]
    assert [p.drifted for p in amount.points] == [False, False, True, False]
    assert amount.role == "feature"


def test_score_quantiles_match_the_captured_scores_within_the_sketch_error(
    state: MonitoringState,
) -> None:
    got = _data(state).model
    assert got is not None
    for point, scores in zip(got.scores, state.scores, strict=True):
        # THEN each window's quantiles are those of the scores captured in it (400 < k: the
        # KLL sketch is exact, so only interpolation conventions differ)
        assert list(point.quantiles) == ["p5", "p25", "p50", "p75", "p95"]
        for label, rank in (("p5", 0.05), ("p50", 0.5), ("p95", 0.95)):
            lo, hi = np.quantile(scores, [max(0, rank - 0.01), min(1, rank + 0.01)])
            assert lo <= point.quantiles[label] <= hi


def test_accuracy_and_bias_points_are_the_reports_values(state: MonitoringState) -> None:
    got = _data(state).model
    assert got is not None
    # THEN accuracy per window is the report's: 3/4 labelled, AUC of a good model
    assert [p.completeness for p in got.accuracy] == [0.75] * 4
    assert [p.roc_auc for p in got.accuracy] == [r.accuracy.roc_auc for r in state.reports]
    assert all(p.roc_auc is not None and p.roc_auc > 0.9 for p in got.accuracy)
    assert [p.recall for p in got.accuracy] == [r.accuracy.recall for r in state.reports]
    # AND bias has a series per sensitive attribute with its gaps and group rates
    assert [a.attribute for a in got.bias] == ["customer_age_band", "region"]
    region = got.bias[1]
    assert region.tolerance == 0.1
    parity = region.gaps["demographic_parity"]
    first = state.reports[0].bias.attributes[1]  # type: ignore[union-attr]
    assert first.demographic_parity_difference is not None
    assert parity[0].value == first.demographic_parity_difference.value
    compared = {g.group for g in first.groups}
    assert compared and compared <= set(region.groups)


def test_functions_get_per_minute_invocations_errors_and_percentiles(
    state: MonitoringState,
) -> None:
    got = _data(state)
    # THEN each function that served has its minutes, in order
    assert [f.function for f in got.functions] == ["fraud_score", "monitor_capture"]
    score = got.functions[0]
    assert [p.invocations for p in score.points] == [100, 3]
    assert score.invocations == 103 and score.errors == 1
    # AND nearest-rank percentiles: p50 of 98 x 4 ms + 50 + 90 is 4, p99 (99th of 100) is 50
    first, last = score.points
    assert (first.p50_ms, first.p99_ms, first.errors) == (4.0, 50.0, 1)
    assert (last.p50_ms, last.p99_ms, last.errors) == (3.0, 9.0, 0)
    assert got.functions[1].errors == 1
    assert "functions" not in got.hints


def test_the_window_of_time_limits_every_series(state: MonitoringState) -> None:
    # WHEN only the last 2 hours are asked for (from 08:30: the 08:00 and 09:00 hours)
    got = _data(state, hours=2)
    assert got.model is not None
    assert [w.start for w in got.model.windows] == [k.start for k in state.hours[2:]]
    # AND the invocations are all within the minutes before NOW
    assert sum(f.invocations for f in got.functions) == 104


def test_an_empty_state_says_what_to_run(tmp_path: Path) -> None:
    got = Dashboard(PlatformSettings(state_dir=tmp_path)).data(Query(), now=NOW)
    assert got.models == [] and got.model is None and got.functions == []
    assert got.hints == {"monitoring": HINT_REPORTS, "functions": HINT_TRAFFIC}
    assert "aib monitor run" in HINT_REPORTS and "aib simulate" in HINT_REPORTS


def test_a_model_without_reports_of_the_span_is_shown_empty_with_the_hint(
    state: MonitoringState,
) -> None:
    got = _data(state, span="day")
    assert got.model is not None and got.model.windows == []
    assert got.hints["monitoring"] == HINT_REPORTS


def test_report_names_map_back_to_windows() -> None:
    assert window_of("hour-2026-11-27T10.json") == WindowKey(
        datetime(2026, 11, 27, 10, tzinfo=UTC), "hour"
    )
    assert window_of("day-2026-11-27.json") == WindowKey(datetime(2026, 11, 27, tzinfo=UTC), "day")
    assert window_of("hour-2026-11-27.json") is None
    assert window_of("notes.txt") is None


def test_invocations_are_read_incrementally_across_appends_and_rotation(tmp_path: Path) -> None:
    # GIVEN a function's log with 3 invocations, read once
    at = NOW - timedelta(minutes=5)
    write_invocations(tmp_path, "fraud_score", at, [1.0, 2.0, 3.0], set())
    log = InvocationLog(tmp_path)
    assert [f.invocations for f in log.series(NOW - timedelta(hours=1))] == [3]
    # WHEN 2 more are appended, then a half-written line, then the file is rotated and a
    # new one started with 1 invocation
    write_invocations(tmp_path, "fraud_score", at, [4.0, 5.0], {1})
    path = log_path(tmp_path, "fraud_score")
    with path.open("a") as f:
        f.write(f"{at.isoformat()}\tREPORT RequestId: half\tDuration: 9")
    after_append = log.series(NOW - timedelta(hours=1))
    path.rename(path.with_name(path.name + ".1"))
    write_invocations(tmp_path, "fraud_score", at + timedelta(minutes=1), [7.0], set())
    after_rotation = log.series(NOW - timedelta(hours=1))
    # THEN each read counts every complete line once, the half line not yet
    assert [(f.invocations, f.errors) for f in after_append] == [(5, 1)]
    assert [(f.invocations, f.errors) for f in after_rotation] == [(6, 1)]
    assert [p.invocations for p in after_rotation[0].points] == [5, 1]
    assert after_rotation[0].points[0].p99_ms == 5.0


def test_a_report_judged_again_replaces_its_point_on_the_next_read(tmp_path: Path) -> None:
    # GIVEN a dashboard that has read two judged hours
    built = write_monitoring_state(tmp_path, first_hour=HOUR0, hours=2, shifted=9)
    board = Dashboard(PlatformSettings(state_dir=tmp_path))
    first = board.data(Query(), now=NOW).model
    assert first is not None and [w.rows for w in first.windows] == [400, 400]
    # WHEN the second hour's report is rewritten (the window judged again, say with more rows)
    again = built.reports[1].model_copy(update={"rows": 999, "generated_at": NOW})
    store = LocalObjectStore(tmp_path / "buckets" / "monitoring", bucket="monitoring")
    store.put(again.report_key, again.model_dump_json().encode())
    # THEN the next read shows the new report, and the unchanged one as before
    second = board.data(Query(), now=NOW).model
    assert second is not None and [w.rows for w in second.windows] == [400, 999]

"""The monitoring dashboard in headless Chromium, served by the local runtime's gateway over
HTTP: after simulated and scored traffic, replayed earlier hours, labels and a monitor run,
every panel has drawn the data (one point per judged hour, the report's features, the
functions that served); on an empty state every panel says what to run.

The README's screenshot: AIB_DASHBOARD_SCREENSHOT=docs/dashboard.png AIB_DASHBOARD_ROUNDS=8
(eight rounds of traffic, 20 s apart, so the functions' panels span a few minutes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from aibackend.local.dashboard import HINT_REPORTS, HINT_TRAFFIC
from aibackend.local.dashboard_page import dashboard_routes
from aibackend.local.runtime import LocalRuntime
from aibackend.settings import PlatformSettings
from tests.integration.dashboard.conftest import serve, stop
from tests.integration.dashboard.traffic import SHIFTED, Traffic, make_traffic

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def traffic(dashboard_runtime: tuple[LocalRuntime, str]) -> Traffic:
    rt, base = dashboard_runtime
    return make_traffic(rt, base, rounds=int(os.environ.get("AIB_DASHBOARD_ROUNDS", "1")))


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    p = browser.new_page(viewport={"width": 1500, "height": 1000})
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    p.close()
    assert errors == [], f"the page's script failed: {errors}"


def _load(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-loaded]", timeout=20_000)


def _points(page: Any, chart: str, series: str) -> list[int]:
    """Points of each polyline of `series` in chart `chart`."""
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        f'figure[data-chart="{chart}"] g[data-series="{series}"] polyline',
        "els => els.map(e => e.getAttribute('points').trim().split(/\\s+/).length)",
    )


def _report(rt: LocalRuntime, hour: Any) -> dict[str, Any]:
    path = (
        rt.settings.state_dir
        / "buckets"
        / "monitoring"
        / "reports"
        / "fraud"
        / f"hour-{hour.start:%Y-%m-%dT%H}.json"
    )
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_every_panel_draws_the_monitoring_data_of_the_judged_hours(
    dashboard_runtime: tuple[LocalRuntime, str], traffic: Traffic, page: Any
) -> None:
    rt, base = dashboard_runtime
    # GIVEN judged hours (one of them with tripled amounts) and functions that served
    n = len(traffic.hours)
    assert n >= 4
    # WHEN the dashboard is opened
    _load(page, f"{base}/dashboard?model=fraud")
    # THEN the score quantiles are one line per quantile with a point per hour
    for series in ("5th pct", "median", "95th pct"):
        assert _points(page, "scores", series) == [n]
    # AND accuracy has a point per hour for ROC AUC and label completeness
    assert _points(page, "accuracy", "ROC AUC") == [n]
    assert _points(page, "accuracy", "label completeness") == [n]
    # AND the drift panel has a chart per column of the reports, with its threshold line
    report = _report(rt, traffic.hours[-1])
    columns = [c["column"] for c in report["drift"]["features"] + report["drift"]["prediction"]]
    charts = page.eval_on_selector_all(
        "#drift figure.chart", "els => els.map(e => e.dataset.chart)"
    )
    assert charts == [f"drift-{c}" for c in columns]
    assert _points(page, "drift-amount_eur", "threshold") == [n]
    # AND the hour with tripled amounts is marked drifted on amount_eur, as its report says
    shifted = _report(rt, traffic.hours[-1 - SHIFTED])
    amount = next(c for c in shifted["drift"]["features"] if c["column"] == "amount_eur")
    assert amount["drifted"] is True
    assert page.locator('figure[data-chart="drift-amount_eur"] circle.drifted').count() >= 1
    # AND bias has gap and group-rate charts for both sensitive attributes
    for attribute in ("customer_age_band", "region"):
        assert _points(page, f"bias-gaps-{attribute}", "tolerance") == [n]
        groups = page.locator(f'figure[data-chart="bias-groups-{attribute}"] polyline')
        assert groups.count() >= 2
    # AND the latency panel has a chart per function that served, and the errors chart all
    latency = page.eval_on_selector_all(
        "#latency figure.chart", "els => els.map(e => e.dataset.chart)"
    )
    assert set(latency) == {f"latency-{f}" for f in traffic.functions}
    for f in traffic.functions:
        assert _points(page, f"latency-{f}", "p99")[0] >= 1
    assert page.locator('figure[data-chart="errors"] polyline').count() == len(traffic.functions)
    assert page.locator("p.empty").count() == 0
    shot = os.environ.get("AIB_DASHBOARD_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)


def test_an_empty_state_says_what_to_run_in_every_panel(tmp_path: Path, page: Any) -> None:
    # GIVEN a state folder with no reports and no function logs
    served = serve(Starlette(routes=dashboard_routes(PlatformSettings(state_dir=tmp_path))))
    try:
        # WHEN the dashboard is opened
        _load(page, f"{served.base}/dashboard")
        texts = page.eval_on_selector_all("p.empty", "els => els.map(e => e.textContent)")
    finally:
        stop(served)
    # THEN the four monitoring panels name simulate and monitor run, the two function panels
    # say to send traffic, and nothing is drawn
    assert texts == [HINT_REPORTS] * 4 + [HINT_TRAFFIC] * 2
    assert page.locator("svg").count() == 0

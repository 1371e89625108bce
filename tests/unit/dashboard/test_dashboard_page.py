"""The dashboard's HTTP side: page, script and data.json to loopback clients only, query
parameters validated with problem+json answers that say what is accepted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from aibackend.local.dashboard_page import MAX_HOURS, dashboard_routes, is_loopback
from aibackend.settings import PlatformSettings
from tests.unit.dashboard.state import write_monitoring_state

LOCAL = ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three judged hours ending with the current one."""
    folder = tmp_path_factory.mktemp("page-state")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    write_monitoring_state(folder, first_hour=now - timedelta(hours=2), hours=3, shifted=1)
    return folder


@pytest.fixture
def client(state: Path) -> Iterator[TestClient]:
    app = Starlette(routes=dashboard_routes(PlatformSettings(state_dir=state)))
    with TestClient(app, client=LOCAL) as c:
        yield c


def test_data_json_is_the_read_model_of_the_state(client: TestClient) -> None:
    r = client.get("/dashboard/data.json", params={"model": "fraud", "hours": "6"})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    got = r.json()
    assert got["models"] == ["fraud"] and got["hours"] == 6
    assert [w["rows"] for w in got["model"]["windows"]] == [400, 400, 400]
    assert len(got["model"]["scores"]) == 3 and got["problems"] == []


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"hours": "0"}, "hours '0': a whole number of hours from 1 to 744"),
        ({"hours": "1.5"}, "a whole number of hours"),
        ({"span": "week"}, "span 'week': hour (hourly reports) or day"),
        ({"model": "../etc"}, "a registry name such as fraud"),
        ({"modle": "fraud"}, "unknown parameter(s) modle; use model, hours, span"),
    ],
)
def test_a_bad_query_is_a_problem_naming_what_is_accepted(
    client: TestClient, params: dict[str, str], says: str
) -> None:
    r = client.get("/dashboard/data.json", params=params)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert says in r.json()["detail"]
    assert MAX_HOURS == 744


def test_a_client_off_the_machine_is_refused_every_dashboard_path(state: Path) -> None:
    app = Starlette(routes=dashboard_routes(PlatformSettings(state_dir=state)))
    with TestClient(app, client=("192.0.2.7", 40000)) as remote:
        for path in ("/dashboard", "/dashboard/dashboard.js", "/dashboard/data.json"):
            r = remote.get(path)
            assert r.status_code == 403, path
            assert r.headers["content-type"] == "application/problem+json"
            assert "loopback clients only" in r.json()["detail"]


def test_loopback_means_the_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback(None)
    assert not is_loopback("testclient")


def test_the_page_and_its_script_load_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/dashboard")
    script = client.get("/dashboard/dashboard.js")
    assert page.status_code == script.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript")
    assert '<script src="/dashboard/dashboard.js">' in page.text
    urls = set(re.findall(r"https?://[^\s\"'`)]+", page.text + script.text))
    # THEN the only absolute URL is the SVG namespace (an identifier, never fetched)
    assert urls == {"http://www.w3.org/2000/svg"}

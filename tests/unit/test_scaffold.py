"""`aib functions new`: what it refuses, before anything is written or by removing what it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.catalog import load_catalog
from aibackend.cli import main
from aibackend.errors import ConfigError
from aibackend.scaffold import Trigger, new_function


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    d = tmp_path / "functions"
    d.mkdir()
    return d


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Orders", "lowercase letters"),
        ("2fast", "starting with a letter"),
        ("a" * 49, "up to 48"),
        ("json", "also a Python module (the standard library)"),
    ],
)
def test_a_name_that_cannot_be_a_function_package_is_refused(
    functions: Path, name: str, reason: str
) -> None:
    # WHEN a function is scaffolded under a name that cannot be its folder and package
    with pytest.raises(ConfigError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        new_function(functions, name, Trigger("http"))
    # THEN nothing was written
    assert list(functions.iterdir()) == []


def test_a_name_taken_by_a_folder_is_refused_and_the_folder_left_alone(functions: Path) -> None:
    # GIVEN a function folder of that name
    new_function(functions, "orders", Trigger("queue", queue="orders"))
    before = (functions / "orders" / "handler.py").read_text()
    # WHEN another is scaffolded under the same name THEN it is refused, the first unchanged
    with pytest.raises(ConfigError, match="exists; pick another name"):
        new_function(functions, "orders", Trigger("http"))
    assert (functions / "orders" / "handler.py").read_text() == before


def test_a_schedule_that_does_not_parse_is_refused_before_anything_is_written(
    functions: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"--schedule 'every day'"):
        new_function(functions, "nightly", Trigger("schedule", expression="every day"))
    assert not (functions / "nightly").exists()


def test_a_queue_another_function_consumes_is_refused_and_the_new_folder_removed(
    functions: Path,
) -> None:
    # GIVEN a function consuming queue "orders"
    new_function(functions, "orders_worker", Trigger("queue", queue="orders"))
    # WHEN a second consumer of it is scaffolded
    with pytest.raises(ConfigError, match="queue 'orders' is consumed by function 'orders_wo"):
        new_function(functions, "orders_audit", Trigger("queue", queue="orders"))
    # THEN nothing was written and the catalog is as it was
    assert not (functions / "orders_audit").exists()
    assert [f.name for f in load_catalog(functions).functions] == ["orders_worker"]


def test_a_route_another_function_serves_is_refused_with_nothing_written(
    functions: Path,
) -> None:
    # GIVEN a function, written by hand, that serves the path a new `orders_api` would have
    legacy = functions / "legacy"
    legacy.mkdir()
    (legacy / "__init__.py").write_text("")
    (legacy / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    (legacy / "function.toml").write_text(
        '[[routes]]\nmethod = "GET"\npath = "/v1/orders-api/health"\naccess = "public"\n'
    )
    # WHEN `orders_api` is scaffolded
    with pytest.raises(ConfigError, match="is already served by function") as e:
        new_function(functions, "orders_api", Trigger("http"))
    # THEN the error names the project's folders (not the staging one it was checked in), and
    # nothing is left: no new folder, no staging folder beside functions/
    assert str(functions.resolve()) in str(e.value) and ".aib-new-" not in str(e.value)
    assert "GET /v1/orders-api/health" in str(e.value)
    assert not (functions / "orders_api").exists()
    assert sorted(p.name for p in functions.parent.iterdir()) == ["functions"]


def test_the_test_is_written_next_to_the_others_unless_one_exists(
    functions: Path, tmp_path: Path
) -> None:
    tests = tmp_path / "tests" / "functions"
    written = new_function(functions, "orders_api", Trigger("http"), tests_dir=tests)
    assert tests / "test_orders_api.py" in written
    (functions / "orders_api").rename(functions / "old")  # the folder moved, its test stayed
    with pytest.raises(ConfigError, match=r"test_orders_api\.py exists"):
        new_function(functions, "orders_api", Trigger("http"), tests_dir=tests)
    assert not (functions / "orders_api").exists()


def test_the_command_writes_the_function_and_says_how_to_call_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a project with functions/ and tests/
    (tmp_path / "functions").mkdir()
    (tmp_path / "tests").mkdir()
    argv = ["--functions", str(tmp_path / "functions"), "functions", "new"]
    # WHEN an HTTP function is scaffolded
    assert main([*argv, "order_lookup", "--http", "--description", "Looks orders up."]) == 0
    out = capsys.readouterr().out
    # THEN its files are named, with the test command and a curl line for its route
    assert f"wrote {tmp_path / 'functions' / 'order_lookup' / 'function.toml'}" in out
    assert f"pytest {tmp_path / 'tests' / 'functions' / 'test_order_lookup.py'}" in out
    assert "localhost:8000/v1/order-lookup/echo" in out
    (spec,) = load_catalog(tmp_path / "functions").functions
    assert spec.description == "Looks orders up."
    assert [(r.method, r.path, r.access.value) for r in spec.routes] == [
        ("GET", "/v1/order-lookup/health", "public"),
        ("POST", "/v1/order-lookup/echo", "api_key"),
        ("GET", "/v1/order-lookup/openapi.json", "api_key"),
    ]
    # AND --prefix without --bucket is refused
    assert main([*argv, "other", "--queue", "q", "--prefix", "in/"]) == 1
    assert "--prefix and --suffix go with --bucket" in capsys.readouterr().err


def test_scopes_make_the_echo_route_need_a_token_and_a_bad_scope_is_refused(
    functions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN / WHEN an HTTP function is scaffolded with scopes
    new_function(functions, "orders_admin", Trigger("http", scopes=("orders:admin", "orders:*")))
    # THEN its echo route needs a token carrying them; health stays public
    (spec,) = load_catalog(functions).functions
    access = {r.path: (r.access.value, r.scopes) for r in spec.routes}
    assert access["/v1/orders-admin/echo"] == ("token", ("orders:admin", "orders:*"))
    assert access["/v1/orders-admin/health"] == ("public", ())
    # AND a scope that is no `resource:action` is refused before anything is written
    with pytest.raises(ConfigError, match=r"--scopes admin: a scope is `resource:action`"):
        new_function(functions, "other_admin", Trigger("http", scopes=("admin",)))
    assert not (functions / "other_admin").exists()
    # AND the command prints a curl line with a token of those scopes; --scopes needs --http
    argv = ["--functions", str(functions), "functions", "new"]
    assert main([*argv, "third_admin", "--http", "--scopes", "orders:admin"]) == 0
    assert 'Bearer $(aib token --scopes orders:admin)"' in capsys.readouterr().out
    assert main([*argv, "fourth", "--queue", "q4", "--scopes", "orders:admin"]) == 1
    assert "--scopes goes with --http" in capsys.readouterr().err


def test_batch_writes_a_queue_its_rule_fills_and_needs_an_event(
    functions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--functions", str(functions), "functions", "new"]
    # WHEN a batch consumer of an event is scaffolded
    assert main([*argv, "view_batches", "--event", "aib.shop", "Product Viewed", "--batch"]) == 0
    # THEN its queue is named after it, filled by a rule of that event, and it may send to
    # the queue's DLQ (what it rejects)
    spec = load_catalog(functions).get("view_batches")
    [queue] = spec.queues
    assert queue.queue == "view-batches-events" and queue.batch_size == 10
    assert [e.pattern for e in queue.events] == [
        {"source": ["aib.shop"], "detail-type": ["Product Viewed"]}
    ]
    assert spec.resources.queues == {"view-batches-events-dlq": "write"}
    assert spec.events == () and spec.async_delivery is None
    assert "restart `aib dev` to wire its batch trigger" in capsys.readouterr().out
    # AND --batch without --event is refused with nothing written
    assert main([*argv, "lonely", "--queue", "q", "--batch"]) == 1
    assert "--batch goes with --event SOURCE DETAIL_TYPE" in capsys.readouterr().err
    assert not (functions / "lonely").exists()

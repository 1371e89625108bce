"""Functions served in one process keep their Powertools metrics apart, as separate Lambda
environments do, even when their invocations overlap."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from aibackend.catalog import load_function
from aibackend.local.host import FunctionHost
from aibackend.local.logs import LogSink

HANDLER = """
import threading
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

metrics = Metrics(namespace="test")
metrics.set_default_dimensions(team="{name}-team")
#: Set by the test: the invocation waits for it after adding its metric.
GO = threading.Event()
GO.set()


@metrics.log_metrics
def handler(event, context):
    metrics.add_metric(name="{metric}", unit=MetricUnit.Count, value=1)
    GO.wait(10)
    return {{}}
"""


def _function(root: Path, name: str, metric: str) -> FunctionHost:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "handler.py").write_text(textwrap.dedent(HANDLER.format(name=name, metric=metric)))
    (folder / "function.toml").write_text('handler = "handler.handler"\n')
    host = FunctionHost(load_function(folder), LogSink(root / f"{name}.log"))
    host.load()
    return host


def _emf(log: Path) -> list[dict[str, Any]]:
    lines = [line.split("\t", 1)[1] for line in log.read_text().splitlines()]
    return [json.loads(x) for x in lines if x.startswith('{"_aws"')]


def test_overlapping_invocations_of_two_functions_flush_only_their_own_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "test")
    monkeypatch.syspath_prepend(str(tmp_path))
    a = _function(tmp_path, "fn_a", "Alpha")
    b = _function(tmp_path, "fn_b", "Beta")
    try:
        # GIVEN fn_a's invocation has added its metric and not flushed yet
        gate = sys.modules["fn_a.handler"].GO
        gate.clear()
        waiting = threading.Thread(target=a.invoke, args=({},))
        waiting.start()
        # WHEN fn_b runs a whole invocation meanwhile, then fn_a finishes
        b.invoke({})
        gate.set()
        waiting.join(10)
        # THEN each log has one EMF line with its own metric, its service and its default
        # dimension, and nothing of the other's
        [line_a], [line_b] = _emf(tmp_path / "fn_a.log"), _emf(tmp_path / "fn_b.log")
        assert (line_a["service"], line_a["team"], "Alpha" in line_a) == ("fn_a", "fn_a-team", True)
        assert (line_b["service"], line_b["team"], "Beta" in line_b) == ("fn_b", "fn_b-team", True)
        assert "Beta" not in line_a and "Alpha" not in line_b
        # AND a second invocation starts from the function's default dimensions again
        a.invoke({})
        assert _emf(tmp_path / "fn_a.log")[1]["team"] == "fn_a-team"
        # AND a new version of the code that sets no default dimension has none: it starts
        # from nothing, as a new Lambda environment does
        v2 = HANDLER.format(name="fn_a", metric="Alpha").replace(
            'metrics.set_default_dimensions(team="fn_a-team")', ""
        )
        (tmp_path / "fn_a" / "handler.py").write_text(textwrap.dedent(v2))
        a.load()
        a.invoke({})
        assert "team" not in _emf(tmp_path / "fn_a.log")[2]
    finally:
        for name in ("fn_a", "fn_a.handler", "fn_b", "fn_b.handler"):
            sys.modules.pop(name, None)


LOGGING_HANDLER = """
import threading
from aws_lambda_powertools import Logger

logger = Logger()
logger.append_keys(model_version=3)  # at INIT: on every line of every invocation
#: Per event id: set when the invocation is inside the handler; the gate it waits for.
ENTERED, GATES = {}, {}


@logger.inject_lambda_context(correlation_id_path="id")
def handler(event, context):
    ENTERED[event["id"]].set()
    GATES[event["id"]].wait(10)
    logger.info("scored", extra={"event_id": event["id"]})
    return {}
"""


def test_overlapping_invocations_of_one_function_log_their_own_request_and_correlation_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "fn_log"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "handler.py").write_text(LOGGING_HANDLER)
    (folder / "function.toml").write_text('handler = "handler.handler"\n')
    host = FunctionHost(load_function(folder), LogSink(tmp_path / "fn_log.log"))
    host.load()
    try:
        module = sys.modules["fn_log.handler"]
        gates, entered = module.GATES, module.ENTERED
        for event_id in ("a", "b"):
            gates[event_id], entered[event_id] = threading.Event(), threading.Event()
        # GIVEN invocation a started, then invocation b started before a logged
        first = threading.Thread(target=host.invoke, args=({"id": "a"}, "request-a"))
        first.start()
        second = threading.Thread(target=host.invoke, args=({"id": "b"}, "request-b"))
        second.start()
        assert entered["a"].wait(10) and entered["b"].wait(10)
        # WHEN a logs, then b
        gates["a"].set()
        first.join(10)
        gates["b"].set()
        second.join(10)
        # THEN each line names its own invocation, and keeps what INIT added
        lines = [
            json.loads(x.split("\t", 1)[1])
            for x in (tmp_path / "fn_log.log").read_text().splitlines()
            if '"scored"' in x
        ]
        got = {
            line["event_id"]: (
                line["correlation_id"],
                line["function_request_id"],
                line["model_version"],
            )
            for line in lines
        }
        assert got == {"a": ("a", "request-a", 3), "b": ("b", "request-b", 3)}
    finally:
        for name in ("fn_log", "fn_log.handler"):
            sys.modules.pop(name, None)

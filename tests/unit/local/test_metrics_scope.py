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
    finally:
        for name in ("fn_a", "fn_a.handler", "fn_b", "fn_b.handler"):
            sys.modules.pop(name, None)

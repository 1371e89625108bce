"""Under `aib dev`, each function's log lines and metrics land in its own file (`aib logs`,
`aib metrics`), whether it runs in this process or in worker processes (`--isolate`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from aibackend.cli import build_parser
from aibackend.local.logs import log_path, read_lines
from tests.support import running_runtime, write_functions

TOML = """
description = "{name}: logs with Powertools, one metric per call"
handler = "handler.handler"
"""

HANDLER = """
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics(namespace="test")
print("init of {name}")

@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics
def handler(event, context):
    if event.get("fail"):
        raise ValueError("refused " + event["id"])
    logger.info("handled", extra={{"n": event["n"]}})
    metrics.add_dimension(name="kind", value=event["kind"])
    metrics.add_metric(name="Handled", unit=MetricUnit.Count, value=event["n"])
    return {{"ok": True}}
"""


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    return write_functions(
        tmp_path / "functions",
        {n: (TOML.format(name=n), HANDLER.format(name=n)) for n in ("alpha", "beta")},
    )


def run_cli(*argv: str) -> str:
    args = build_parser().parse_args(list(argv))
    out = io.StringIO()
    assert args.func(args, out=out) == 0
    return out.getvalue()


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_each_function_logs_to_its_own_file_and_its_metrics_add_up(
    functions: Path, tmp_path: Path, isolate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two functions under the local runtime
    state = tmp_path / "state"
    with running_runtime(functions, state, isolate=isolate, sources=False) as rt:
        # WHEN alpha is invoked three times (once failing) and beta once
        for i, kind in enumerate(("card", "card", "wire")):
            rt.hosts["alpha"].invoke({"id": f"a-{i}", "n": i + 1, "kind": kind})
        with pytest.raises(Exception, match="refused a-fail"):
            rt.hosts["alpha"].invoke({"id": "a-fail", "fail": True})
        rt.hosts["beta"].invoke({"id": "b-0", "n": 10, "kind": "card"})
    # THEN alpha's file has its INIT print, its JSON lines with the correlation id, the error
    # with its traceback, and one REPORT per invocation; none of beta's lines
    alpha = [line.text for line in read_lines(log_path(state, "alpha"))]
    assert "init of alpha" in alpha and "init of beta" not in alpha
    handled = [json.loads(t) for t in alpha if t.startswith('{"level"')]
    assert [h["correlation_id"] for h in handled] == ["a-0", "a-1", "a-2"]
    assert all(h["service"] == "alpha" for h in handled)
    assert "[ERROR] ValueError: refused a-fail" in alpha
    assert any(t.startswith("Traceback") for t in alpha)
    assert sum(t.startswith("REPORT RequestId:") for t in alpha) == 4
    assert sum("Init Duration" in t for t in alpha) == 1  # only the cold start
    # AND `aib metrics` adds alpha's EMF values per dimension and Lambda's own counts
    monkeypatch.setenv("AIB_STATE_DIR", str(state))
    summary = json.loads(run_cli("metrics", "--json"))
    by = {(s["function"], s["metric"], json.dumps(s["dimensions"])): s for s in summary}
    assert by["alpha", "Handled", '{"kind": "card"}']["sum"] == 3
    assert by["alpha", "Handled", '{"kind": "wire"}']["sum"] == 3
    assert by["beta", "Handled", '{"kind": "card"}']["sum"] == 10
    assert by["alpha", "Invocations", "{}"]["sum"] == 4
    assert by["alpha", "Errors", "{}"]["sum"] == 1
    # AND `aib logs alpha` renders the lines a person reads, EMF left out
    text = run_cli("logs", "alpha", "-n", "0")
    assert "INFO  handled" in text and "correlation_id=a-2" in text and "n=3" in text
    assert "_aws" not in text

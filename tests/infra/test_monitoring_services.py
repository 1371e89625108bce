"""The monitoring services on AWS: the ml layer by declaration, the monitor settings in their
environment, the hourly schedule, and least-privilege reads of the judged model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aibackend.catalog import load_catalog
from aibackend.monitoring.config import ENV, monitored_models
from aibackend.monitoring.ledger import TABLE
from aibackend.settings import resource_env
from tests.infra.test_capture import lambda_named, statements_of

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "functions")
SERVICES = ("monitor_capture", "monitor_feedback", "monitor_labels", "monitor_models")

pytestmark = pytest.mark.slow


def _layer_descriptions(synth: Any, fn: dict[str, Any]) -> list[str]:
    by_id = synth.service_resources("AWS::Lambda::LayerVersion")
    return sorted(
        by_id[ref["Ref"]]["Properties"]["Description"] for ref in fn["Properties"]["Layers"]
    )


@pytest.mark.parametrize("function", SERVICES)
def test_each_monitoring_function_gets_the_ml_layer_and_the_monitor_settings(
    synth: Any, function: str
) -> None:
    # GIVEN a monitoring function (declared `layers = ["ml"]`, or serving a model)
    _, fn = lambda_named(synth, function)
    # THEN it has common, api and ml (numpy, datasketches) layers
    layers = _layer_descriptions(synth, fn)
    assert len(layers) == 3 and any("datasketches" in d for d in layers), layers
    # AND the monitor settings of every captured model, as declared
    env = fn["Properties"]["Environment"]["Variables"]
    expected = monitored_models(ROOT / "functions", CATALOG.capture)
    assert json.loads(env[ENV]) == {m: s.model_dump(mode="json") for m, s in expected.items()}
    # AND the label ledger's table, by its physical name (AIB_TABLE_MONITORING_LABELS)
    assert "MonitoringLabels" in json.dumps(env[resource_env("table", TABLE)])


def test_a_function_outside_monitoring_gets_neither_the_ml_layer_nor_the_settings(
    synth: Any,
) -> None:
    _, fn = lambda_named(synth, "pipeline_status")
    assert ENV not in fn["Properties"]["Environment"]["Variables"]
    assert len(fn["Properties"]["Layers"]) == 2


def test_the_monitor_runs_hourly_and_reads_only_the_judged_models_artifacts(synth: Any) -> None:
    # GIVEN the monitor function
    fid, _ = lambda_named(synth, "monitor_models")
    # THEN one rule runs its live alias at five past every hour
    rules = synth.service_resources("AWS::Events::Rule")
    mine = [r["Properties"] for k, r in rules.items() if k.startswith("MonitorModelsSchedule")]
    assert [r["ScheduleExpression"] for r in mine] == ["cron(5 * * * ? *)"]
    assert mine[0]["Targets"][0]["Arn"]["Ref"].startswith("MonitorModelsLive")
    # AND it may read the fraud model's artifacts, and no other model's
    gets = [s for s in statements_of(synth, fid) if s["Action"] == "s3:GetObject"]
    models = [s for s in gets if "ModelBucketArn" in json.dumps(s["Resource"])]
    assert [json.dumps(s["Resource"]).endswith('"/fraud/*"]]}') for s in models] == [True]
    # AND, serving nothing, it sends to no capture queue
    sends = [s for s in statements_of(synth, fid) if "sqs:SendMessage" in s["Action"]]
    assert [s["Resource"]["Fn::GetAtt"][0] for s in sends] == [
        next(
            k
            for k in synth.service_resources("AWS::SQS::Queue")
            if k.startswith("MonitorModelsFailures")
        )
    ], "only its own on-failure queue"

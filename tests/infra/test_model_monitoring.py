"""Per-model dashboards and alarms: one of each set per served model, on exactly the metrics
`monitor_models` prints (namespace, dimensions, names), with thresholds from monitoring.toml,
and a quality alarm that no data (no labels yet) leaves OK."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks

from aibackend.catalog import load_catalog
from aibackend.monitoring.config import MonitorSettings, monitored_models
from aibackend.monitoring.service import metric_values
from infra.config import InfraConfig
from infra.constructs.model_monitoring import (
    MONITOR_FUNCTION,
    ModelMonitoring,
    model_quality_metric,
    serving_function,
)
from tests.infra.test_capture import lambda_named

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "functions")
STAGE = InfraConfig().stage_name

pytestmark = pytest.mark.slow


# Helpers ---------------------------------------------------------------------------------


def _gap(value: float) -> SimpleNamespace:
    return SimpleNamespace(value=value)


#: A report in which every metric `metric_values` knows is defined: drift with a score
#: column, accuracy with ROC AUC, precision, recall and calibration, bias with gaps.
FULL_REPORT = SimpleNamespace(
    rows=1200,
    accuracy=SimpleNamespace(
        labelled=400,
        completeness=0.33,
        roc_auc=0.91,
        precision=0.7,
        recall=0.6,
        calibration=SimpleNamespace(ece=0.02),
    ),
    drift=SimpleNamespace(
        share=0.25,
        drifted_features=["amount_eur"],
        dataset_drift=False,
        prediction=[SimpleNamespace(column="score", statistic=0.04)],
    ),
    bias=SimpleNamespace(
        attributes=[
            SimpleNamespace(
                demographic_parity_difference=_gap(0.03),
                true_positive_rate_difference=_gap(-0.05),
                false_positive_rate_difference=None,
            )
        ]
    ),
)


def emitted_metrics(env: dict[str, str]) -> set[tuple[str, frozenset[tuple[str, str]], str]]:
    """(namespace, dimensions, metric name) of every metric the monitor's handler prints for
    FULL_REPORT, run with the deployed function's Powertools environment."""
    values = metric_values(FULL_REPORT)  # type: ignore[arg-type]
    script = (
        "import json, sys\n"
        "from functions.monitor_models.handler import _emit\n"
        "_emit('fraud', json.loads(sys.stdin.read()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}, **env},
        check=True,
        timeout=120,
    )
    out: set[tuple[str, frozenset[tuple[str, str]], str]] = set()
    for line in done.stdout.splitlines():
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for names in directive["Dimensions"]:
                dims = frozenset((n, str(doc[n])) for n in names)
                for metric in directive["Metrics"]:
                    out.add((directive["Namespace"], dims, metric["Name"]))
    return out


def metric_stats(props: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its own, or those of its math expression."""
    if "MetricName" in props:
        return [
            {
                "Namespace": props["Namespace"],
                "MetricName": props["MetricName"],
                "Dimensions": props["Dimensions"],
            }
        ]
    return [q["MetricStat"]["Metric"] for q in props["Metrics"] if "MetricStat" in q]


def home(synth: Any, model: str) -> Any:
    """The group stack that holds `model`'s dashboard and alarms: its serving function's."""
    name = serving_function(CATALOG, model).name
    (stack,) = [s for s in synth.built.service_stacks if name in s.functions]
    return stack


def model_alarms(synth: Any, model: str) -> dict[str, dict[str, Any]]:
    """Construct id (Quality, DatasetDrift, ...) -> alarm properties, for `model`."""
    prefix = "".join(p.capitalize() for p in model.split("_")) + "Monitoring"
    alarms = synth.resources(home(synth, model).stack_name, "AWS::CloudWatch::Alarm")
    return {
        logical[len(prefix) :].rstrip("0123456789ABCDEF"): alarm["Properties"]
        for logical, alarm in alarms.items()
        if logical.startswith(prefix)
    }


def dashboard_body(synth: Any, model: str) -> dict[str, Any]:
    """The dashboard's JSON body, with CloudFormation references replaced by "<ref>"."""
    dashboards = synth.resources(home(synth, model).stack_name, "AWS::CloudWatch::Dashboard")
    (dash,) = (
        d["Properties"]
        for d in dashboards.values()
        if d["Properties"]["DashboardName"] == f"aibackend-{STAGE}-{model}"
    )
    parts = dash["DashboardBody"]["Fn::Join"][1]
    body: dict[str, Any] = json.loads("".join(p if isinstance(p, str) else "<ref>" for p in parts))
    return body


def _alarm_topic(stack: Any) -> Any:
    """The platform's alarm topic (AibShared's) as the group stack refers to it."""
    return stack.resolve(stack.alarm_topic.topic_arn)


# Tests on the project's own synthesized app ----------------------------------------------


def test_every_served_model_has_a_dashboard_and_a_quality_alarm_on_the_alarm_topic(
    synth: Any,
) -> None:
    # GIVEN the synthesized group stacks and every model a function serves
    assert {"fraud", "sentiment", "recommendations"} <= set(CATALOG.model_names)
    for model in CATALOG.model_names:
        topic = _alarm_topic(home(synth, model))
        # THEN the model has a dashboard named after the stage and the model
        body = dashboard_body(synth, model)
        assert any(w["type"] == "alarm" for w in body["widgets"]), model
        # AND a quality alarm that notifies the platform's alarm topic both ways
        quality = model_alarms(synth, model)["Quality"]
        assert quality["AlarmActions"] == [topic] and quality["OKActions"] == [topic]
        # AND the stack's construct exposes it for deployment groups
        monitoring = home(synth, model).model_monitoring[model]
        assert monitoring.quality_alarm in monitoring.alarms


def test_the_quality_alarm_is_not_breached_by_missing_data_and_judges_each_hour(
    synth: Any,
) -> None:
    # GIVEN fraud's quality alarm (no labels exist for a new model, no profile for an old one)
    quality = model_alarms(synth, "fraud")["Quality"]
    # THEN missing data keeps it OK: no labels yet is not a degraded model
    assert quality["TreatMissingData"] == "notBreaching"
    # AND one judged hour is enough to raise it (the monitor sends one value an hour)
    assert quality["EvaluationPeriods"] == 1 and quality["DatapointsToAlarm"] == 1
    assert {q["MetricStat"]["Period"] for q in quality["Metrics"] if "MetricStat" in q} == {3600}
    # AND it reads score drift (no labels needed) and ROC AUC gated by the labelled count
    names = {m["MetricName"] for m in metric_stats(quality)}
    assert names == {"ScoreDrift", "RocAuc", "LabelledPredictions"}
    (returned,) = [q for q in quality["Metrics"] if q.get("ReturnData", True)]
    assert "FILL(" in returned["Expression"]
    # AND model_quality_metric is the same score-drift metric
    metric = model_quality_metric("fraud")
    assert (metric.namespace, metric.metric_name) == ("aibackend/monitoring", "ScoreDrift")
    assert metric.dimensions == {"model": "fraud", "service": MONITOR_FUNCTION}


def test_every_model_metric_read_is_one_the_monitor_prints_on_aws(synth: Any) -> None:
    # GIVEN what the monitor's handler prints, with the environment CDK gives it (Powertools
    # adds the function's name as a `service` dimension to every metric)
    _, fn = lambda_named(synth, MONITOR_FUNCTION)
    env = {
        k: v
        for k, v in fn["Properties"]["Environment"]["Variables"].items()
        if k.startswith("POWERTOOLS_") and isinstance(v, str)
    }
    emitted = emitted_metrics(env)
    # WHEN the model alarms and the fraud dashboard's graphs are read
    read: list[tuple[str, frozenset[tuple[str, str]], str]] = []
    for props in model_alarms(synth, "fraud").values():
        for m in metric_stats(props):
            dims = frozenset((d["Name"], d["Value"]) for d in m["Dimensions"])
            read.append((m["Namespace"], dims, m["MetricName"]))
    for widget in dashboard_body(synth, "fraud")["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            if row[0] == "aibackend/monitoring":
                names = [x for x in row[2:] if isinstance(x, str)]
                dims = frozenset(zip(names[::2], names[1::2], strict=True))
                read.append((row[0], dims, row[1]))
    # THEN each is a metric the monitor sends, namespace, dimensions and name alike
    assert read and all(r[0] == "aibackend/monitoring" for r in read)
    missing = sorted({r for r in read if r not in emitted}, key=str)
    assert not missing, f"read but never sent: {missing}"
    # AND the dashboard shows every one of them but ECE and the drifted-feature counts
    shown = {r[2] for r in read}
    assert {name for _, _, name in emitted} - shown == {"Ece", "DriftedFeatures", "DatasetDrift"}


def test_fraud_thresholds_are_its_monitoring_toml_table(synth: Any) -> None:
    # GIVEN fraud's [monitor.fraud] table
    settings = monitored_models(ROOT / "functions", CATALOG.capture)["fraud"]
    alarms = model_alarms(synth, "fraud")
    # THEN drift, bias and performance alarms use its values
    assert alarms["DatasetDrift"]["Threshold"] == settings.drift_share
    assert alarms["Bias"]["Threshold"] == settings.bias_tolerance
    (degraded,) = [q for q in alarms["PerformanceDegraded"]["Metrics"] if "Expression" in q]
    assert f">= {settings.min_labels} " in degraded["Expression"]
    assert f"< {settings.min_roc_auc:g}" in degraded["Expression"]


def test_the_function_alarms_are_reused_not_duplicated(synth: Any) -> None:
    # GIVEN the fraud model, served over HTTP by fraud_score (and by fraud_events, pipeline_score)
    spec = serving_function(CATALOG, "fraud")
    assert spec.name == "fraud_score"
    monitoring = home(synth, "fraud").model_monitoring["fraud"]
    declared = home(synth, "fraud").alarms["fraud_score"]
    # THEN its error, p99 and throttle alarms are the function's declared ones
    assert {declared.errors, declared.duration, declared.throttles} <= set(monitoring.alarms)
    # AND the monitoring construct adds four model alarms and no function alarm of its own
    assert set(model_alarms(synth, "fraud")) == {
        "Quality",
        "DatasetDrift",
        "PerformanceDegraded",
        "Bias",
    }


def test_an_uncaptured_model_gets_only_the_quality_alarm(synth: Any) -> None:
    # GIVEN sentiment, served but not captured (no [capture.sentiment] in monitoring.toml)
    assert "sentiment" not in CATALOG.capture
    # THEN it has the quality alarm a deployment group needs, and no alarm on metrics that the
    # monitor never sends for it
    assert set(model_alarms(synth, "sentiment")) == {"Quality"}
    # AND its dashboard says why its model graphs stay empty
    intro = dashboard_body(synth, "sentiment")["widgets"][0]["properties"]["markdown"]
    assert "not captured" in intro


# Tests on the construct alone ------------------------------------------------------------


def _stack_with(
    settings: MonitorSettings | None, *, topic: bool, outdir: Path | None = None
) -> cdk.Stack:
    """A stack holding one function and a `ModelMonitoring` of model `widget` on it; with
    `outdir`, cdk-nag (AwsSolutions) checks it at synth, as in the app."""
    app = cdk.App(outdir=str(outdir) if outdir else None)
    if outdir is not None:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stack = cdk.Stack(app, "Watch")
    fn = lambda_.Function(
        stack,
        "Fn",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(e, c):\n    return {}\n"),
    )
    ModelMonitoring(
        stack,
        "WidgetMonitoring",
        model="widget",
        function=fn,
        config=InfraConfig(stage_name="test"),
        alarm_topic=sns.Topic(stack, "Ops") if topic else None,
        settings=settings,
    )
    return stack


def test_thresholds_follow_the_settings_given() -> None:
    # GIVEN settings far from the defaults
    settings = MonitorSettings(drift_share=0.3, min_roc_auc=0.7, min_labels=50, bias_tolerance=0.25)
    # WHEN the construct is built with them
    template = assertions.Template.from_stack(_stack_with(settings, topic=True))
    alarms = [a["Properties"] for a in template.find_resources("AWS::CloudWatch::Alarm").values()]
    # THEN the drift and bias alarms use them
    by_metric = {a.get("MetricName"): a for a in alarms}
    assert by_metric["DriftShare"]["Threshold"] == 0.3
    assert by_metric["BiasGap"]["Threshold"] == 0.25
    # AND so do the performance and quality expressions
    expressions = [
        q["Expression"] for a in alarms for q in a.get("Metrics", []) if "Expression" in q
    ]
    assert sum("labelled >= 50 AND auc < 0.7," in e for e in expressions) == 2
    # AND the dashboard draws the same thresholds
    body = json.dumps(template.find_resources("AWS::CloudWatch::Dashboard"))
    assert '\\"value\\":0.3' in body and '\\"value\\":0.25' in body and '\\"value\\":0.7' in body


def test_without_a_platform_topic_it_creates_an_encrypted_tls_only_one(tmp_path: Path) -> None:
    # GIVEN no alarm topic
    stack = _stack_with(MonitorSettings(), topic=False, outdir=tmp_path)
    # WHEN the app is synthesized with cdk-nag (the bare test function has findings of its own)
    with contextlib.suppress(RuntimeError):
        stack.node.root.synth()  # type: ignore[attr-defined]
    template = assertions.Template.from_json(
        json.loads((tmp_path / "Watch.template.json").read_text())
    )
    # THEN it has a topic of its own under a rotated KMS key, refusing plain HTTP
    (topic,) = template.find_resources("AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic["Properties"]
    (key,) = template.find_resources("AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    (policy,) = template.find_resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
    # AND every alarm notifies it
    for alarm in template.find_resources("AWS::CloudWatch::Alarm").values():
        assert len(alarm["Properties"]["AlarmActions"]) == 1
    # AND cdk-nag finds nothing in the construct
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (nag,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    ours = [
        v["ruleName"]
        for v in nag["violations"]
        for r in v["violatingConstructs"]
        if r["constructPath"].startswith("Watch/WidgetMonitoring/")
    ]
    assert nag["violations"] and ours == []


def test_a_model_no_function_declares_is_refused() -> None:
    with pytest.raises(ValueError, match="declares model 'nope'"):
        serving_function(CATALOG, "nope")

"""Per-model CloudWatch dashboard and alarms, on the metrics the hourly monitor publishes.

`functions/monitor_models` judges every captured model once an hour (at five past, the hour that
just ended) and prints one EMF document per model: namespace `aibackend/monitoring`, dimensions
`model` and `service` (Powertools adds `service`, the monitor's POWERTOOLS_SERVICE_NAME, to
every metric it sends; a metric is found by its exact set of dimensions, so both are named here).
The metric names are the keys of `aibackend.monitoring.service.metric_values`.

Thresholds are the model's `[monitor.<model>]` table of `functions/monitoring.toml` (what the
monitor itself judges with): dataset drift at `drift_share`, ROC AUC below `min_roc_auc` once a
window has `min_labels` labelled predictions, a group gap of `bias_tolerance`; the score drift
threshold is the monitor's drift configuration for the score column (a normalized Wasserstein
distance of 0.1, Evidently's default, for every baseline of more than 1,000 rows). The function's
error-rate and p99 alarms are its declaration's (`[alarms]` in function.toml, `FunctionAlarms`):
reused here, not created twice.

The model-quality alarm (`ModelMonitoring.quality_alarm`, what a deployment group watches):

    quality = MAX([FILL(score_drifted, 0), FILL(performance_degraded, 0)])  >= 1
    score_drifted        = IF(ScoreDrift > wasserstein_threshold, 1, 0)
    performance_degraded = IF(LabelledPredictions >= min_labels AND RocAuc < min_roc_auc, 1, 0)

- Period: one hour. The monitor sends one value per model and hour, so a shorter period would
  see the value in one period and nothing in the next ones, and the alarm would return to OK a
  few minutes after a bad judgment. With an hour, the alarm holds the latest judgment for the
  clock hour it lands in; it changes state minutes after the monitor's run at hh:05. A canary
  is judged if its window spans one of those runs (about 65 minutes from its start at most);
  the prediction half needs no labels, so the first hour of a candidate's traffic is enough.
- Missing data is NOT breaching: no ScoreDrift (no baseline profile yet) and no RocAuc (no
  labels yet: fraud labels arrive days later) are "nothing known to be wrong", not an outage.
  A model with no labels must not hold a deployment or page anyone; a monitor that stops
  running is caught by monitor_models' own error and duration alarms, not by this one.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from aibackend.catalog import Catalog, FunctionSpec
from aibackend.monitoring.config import DEFAULT, MonitorSettings, monitored_models
from infra.config import InfraConfig
from infra.constructs.alarms import FunctionAlarms, alarm_topic, notify
from infra.constructs.service_function import ServiceFunction
from infra.naming import pascal, quality_alarm_name

#: Where `functions/monitor_models` sends its metrics (its `Metrics(namespace=...)`).
NAMESPACE = "aibackend/monitoring"
#: The function that sends them: Powertools puts its name into every metric (`service`).
MONITOR_FUNCTION = "monitor_models"
#: The monitor judges each model once an hour; every model metric is read at that period.
MODEL_PERIOD = cdk.Duration.hours(1)
#: Lambda's own metrics, one value a minute; five minutes as in `FunctionAlarms`.
FUNCTION_PERIOD = cdk.Duration.minutes(5)

#: Metric names (keys of `metric_values`); tests check each against what the monitor prints.
PREDICTIONS = "Predictions"
LABELLED = "LabelledPredictions"
LABEL_COMPLETENESS = "LabelCompleteness"
DRIFT_SHARE = "DriftShare"
SCORE_DRIFT = "ScoreDrift"
ROC_AUC = "RocAuc"
PRECISION = "Precision"
RECALL = "Recall"
BIAS_GAP = "BiasGap"

WIDTH = 24
HALF = 12
THIRD = 8
HEIGHT = 6


def model_metric(model: str, name: str, *, statistic: str = "Maximum") -> cloudwatch.Metric:
    """One of the hourly monitor's metrics of `model`."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"model": model, "service": MONITOR_FUNCTION},
        period=MODEL_PERIOD,
        statistic=statistic,
    )


def model_quality_metric(model: str) -> cloudwatch.Metric:
    """The model-quality signal a canary produces from its first hour: how far the score
    distribution moved from the production version's baseline (ScoreDrift, the worst value of
    the hour). It needs no labels. `ModelMonitoring.quality_alarm` adds ROC AUC once enough
    labels have arrived, with the thresholds of monitoring.toml: watch that alarm, not a
    threshold of your own on this metric."""
    return model_metric(model, SCORE_DRIFT).with_(label=f"{model} score drift")


class ModelMonitoring(Construct):
    """A model's dashboard and alarms, notifying `alarm_topic` (None: a topic of its own,
    encrypted under a key of its own, TLS only).

    `function` is the model's serving function (its `live` alias: what traffic shifting moves).
    `settings` is the model's `[monitor.<model>]`; None when the model is not captured (then
    the monitor sends nothing for it: only the quality alarm, which a deployment group needs,
    is created, with the default thresholds, and stays OK until capture is turned on).
    `function_alarms`, the function's declared alarms, are shown and listed in `alarms`.

    Attributes: `quality_alarm`, `drift_alarm`, `performance_alarm`, `bias_alarm` (the last
    three None when the model is not captured), `alarms` (every alarm of the model, the
    function's included), `dashboard`, `topic`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model: str,
        function: lambda_.IFunction,
        config: InfraConfig,
        alarm_topic: sns.ITopic | None,
        settings: MonitorSettings | None = None,
        function_alarms: FunctionAlarms | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.model = model
        self.captured = settings is not None
        self.settings = settings or DEFAULT
        self.topic = alarm_topic if alarm_topic is not None else self._own_topic()
        self.score_drift_threshold = self.settings.drift_config().wasserstein_threshold

        quality = self._quality_alarm()
        self.quality_alarm: cloudwatch.IAlarm = quality
        own = [quality]
        self.drift_alarm: cloudwatch.Alarm | None = None
        self.performance_alarm: cloudwatch.Alarm | None = None
        self.bias_alarm: cloudwatch.Alarm | None = None
        if self.captured:
            self.drift_alarm = self._drift_alarm()
            self.performance_alarm = self._performance_alarm()
            self.bias_alarm = self._bias_alarm()
            own += [self.drift_alarm, self.performance_alarm, self.bias_alarm]
        notify(self.topic, *own)
        declared = (
            [function_alarms.errors, function_alarms.duration, function_alarms.throttles]
            if function_alarms is not None
            else []
        )
        self.alarms: list[cloudwatch.IAlarm] = [*own, *declared]
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"aibackend-{config.stage_name}-{model}",
            default_interval=cdk.Duration.days(7),
        )
        self._widgets(function, function_alarms)

    # Alarms ------------------------------------------------------------------------------

    def _degraded(self) -> cloudwatch.MathExpression:
        """1 in an hour whose ROC AUC is below the floor with enough labels, else 0: the
        monitor's Model Performance Degraded rule."""
        s = self.settings
        return cloudwatch.MathExpression(
            expression=f"IF(labelled >= {s.min_labels} AND auc < {_num(s.min_roc_auc)}, 1, 0)",
            using_metrics={
                "labelled": model_metric(self.model, LABELLED, statistic="Sum"),
                "auc": model_metric(self.model, ROC_AUC, statistic="Minimum"),
            },
            period=MODEL_PERIOD,
            label=f"{self.model} ROC AUC below {s.min_roc_auc:g} ({s.min_labels}+ labels)",
        )

    def _quality_alarm(self) -> cloudwatch.Alarm:
        s = self.settings
        drifted = cloudwatch.MathExpression(
            expression=f"IF(score > {_num(self.score_drift_threshold)}, 1, 0)",
            using_metrics={"score": model_quality_metric(self.model)},
            period=MODEL_PERIOD,
            label=f"{self.model} score drift over {self.score_drift_threshold:g}",
        )
        quality = cloudwatch.MathExpression(
            expression="MAX([FILL(drifted, 0), FILL(degraded, 0)])",
            using_metrics={"drifted": drifted, "degraded": self._degraded()},
            period=MODEL_PERIOD,
            label=f"{self.model} model quality breached (1) or not (0)",
        )
        return quality.create_alarm(
            self,
            "Quality",
            alarm_name=quality_alarm_name(self.model),
            alarm_description=(
                f"model {self.model}: quality breached in the last judged hour: score drift "
                f"over {self.score_drift_threshold:g} (normalized Wasserstein distance from "
                f"the production baseline), or ROC AUC below {s.min_roc_auc:g} with at least "
                f"{s.min_labels} labelled predictions (functions/monitoring.toml "
                f"[monitor.{self.model}]). No data (no baseline profile, no labels yet) is not "
                "breaching." + ("" if self.captured else _NOT_CAPTURED.format(model=self.model))
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _drift_alarm(self) -> cloudwatch.Alarm:
        share = self.settings.drift_share
        return model_metric(self.model, DRIFT_SHARE).create_alarm(
            self,
            "DatasetDrift",
            alarm_description=(
                f"model {self.model}: dataset drift: at least {share:g} of its features drifted "
                f"from the production baseline in the last judged hour (drift_share in "
                f"functions/monitoring.toml [monitor.{self.model}]); the hour's report under "
                f"reports/{self.model}/ names them"
            ),
            threshold=share,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _performance_alarm(self) -> cloudwatch.Alarm:
        s = self.settings
        return self._degraded().create_alarm(
            self,
            "PerformanceDegraded",
            alarm_description=(
                f"model {self.model}: ROC AUC below {s.min_roc_auc:g} over an hour with at "
                f"least {s.min_labels} labelled predictions (min_roc_auc, min_labels in "
                f"functions/monitoring.toml [monitor.{self.model}]); retrain or roll back"
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _bias_alarm(self) -> cloudwatch.Alarm:
        s = self.settings
        return model_metric(self.model, BIAS_GAP).create_alarm(
            self,
            "Bias",
            alarm_description=(
                f"model {self.model}: a gap of {s.bias_tolerance:g} or more in selection rate, "
                f"TPR or FPR between groups of {', '.join(s.sensitive_attributes)} (groups of "
                f"{s.min_group_size}+ labelled predictions) two judged hours in a row "
                f"(bias_tolerance in functions/monitoring.toml [monitor.{self.model}]); the "
                "metric is the point estimate, the Bias Detected event adds its interval"
            ),
            threshold=s.bias_tolerance,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # A point estimate without its interval: one hour alone may be noise.
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _own_topic(self) -> sns.ITopic:
        key = kms.Key(
            self,
            "TopicKey",
            description=f"aibackend: alarm notifications of model {self.model}",
            enable_key_rotation=True,
        )
        return alarm_topic(self, "AlarmTopic", key=key)

    # Dashboard ---------------------------------------------------------------------------

    def _widgets(self, function: lambda_.IFunction, function_alarms: FunctionAlarms | None) -> None:
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown=self._intro(), width=WIDTH, height=3)
        )
        for row in self._model_rows():
            self.dashboard.add_widgets(*row)
        self.dashboard.add_widgets(*_function_row(function, function_alarms))
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title=f"Alarms of model {self.model}", alarms=self.alarms, width=WIDTH, height=4
            )
        )

    def _model_rows(self) -> list[list[cloudwatch.IWidget]]:
        """What the hourly monitor judged, each graph with the threshold its alarm uses."""
        m, s = self.model, self.settings
        return [
            [
                _graph(
                    "Predictions captured and labelled (hourly, from functions/monitor_models)",
                    [
                        model_metric(m, PREDICTIONS, statistic="Sum"),
                        model_metric(m, LABELLED, statistic="Sum"),
                    ],
                    share=False,
                ),
                _graph(
                    "Label completeness (share of predictions labelled)",
                    [model_metric(m, LABEL_COMPLETENESS, statistic="Average")],
                ),
            ],
            [
                _graph(
                    "Dataset drift: share of features drifted",
                    [model_metric(m, DRIFT_SHARE)],
                    line=_line(s.drift_share, "drift_share"),
                ),
                _graph(
                    "Prediction drift: score distance from the baseline",
                    [model_quality_metric(m)],
                    line=_line(self.score_drift_threshold, "score drift threshold"),
                    share=False,
                ),
            ],
            [
                _graph(
                    f"ROC AUC, precision, recall (judged from {s.min_labels} labels)",
                    [
                        model_metric(m, ROC_AUC, statistic="Minimum"),
                        model_metric(m, PRECISION, statistic="Minimum"),
                        model_metric(m, RECALL, statistic="Minimum"),
                    ],
                    line=_line(s.min_roc_auc, "min_roc_auc"),
                ),
                _graph(
                    "Bias: largest group gap (selection rate, TPR, FPR)",
                    [model_metric(m, BIAS_GAP)],
                    line=_line(s.bias_tolerance, "bias_tolerance"),
                ),
            ],
        ]

    def _intro(self) -> str:
        m = self.model
        text = (
            f"# Model {m}\n"
            f"Model metrics: one value an hour, sent at five past by `monitor_models` for the "
            f"hour that ended (namespace `{NAMESPACE}`); thresholds from "
            f"`functions/monitoring.toml` `[monitor.{m}]`. Reports: `reports/{m}/` of the "
            "monitoring bucket. Serving metrics: the function's `live` alias."
        )
        return text + ("" if self.captured else "\n\n" + _NOT_CAPTURED.format(model=m).strip())


_NOT_CAPTURED = (
    " Model {model} is not captured (no [capture.{model}] in functions/monitoring.toml): the "
    "monitor sends no metrics for it until it is."
)


def _num(value: float) -> str:
    """A threshold as CloudWatch metric math reads it (no exponent notation)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _line(value: float, label: str) -> cloudwatch.HorizontalAnnotation:
    return cloudwatch.HorizontalAnnotation(value=value, label=f"{label} {value:g}")


def _threshold(alarm: cloudwatch.Alarm) -> float:
    """The threshold an alarm was created with (CDK keeps it on the CloudFormation resource)."""
    cfn = alarm.node.default_child
    assert isinstance(cfn, cloudwatch.CfnAlarm)
    return float(cfn.threshold or 0)


def _graph(
    title: str,
    left: list[cloudwatch.IMetric],
    *,
    line: cloudwatch.HorizontalAnnotation | None = None,
    share: bool = True,
    right: list[cloudwatch.IMetric] | None = None,
    width: int = HALF,
) -> cloudwatch.GraphWidget:
    """A graph; `share`: its left axis runs from 0 to 1."""
    return cloudwatch.GraphWidget(
        title=title,
        left=left,
        right=right,
        left_annotations=[line] if line is not None else None,
        left_y_axis=cloudwatch.YAxisProps(min=0, max=1, show_units=False) if share else None,
        width=width,
        height=HEIGHT,
    )


def _function_row(
    function: lambda_.IFunction, function_alarms: FunctionAlarms | None
) -> list[cloudwatch.IWidget]:
    """The serving function's duration (with its p99 alarm's threshold), errors, throttles."""
    p99 = (
        _line(_threshold(function_alarms.duration), "p99 alarm")
        if function_alarms is not None
        else None
    )
    return [
        _graph(
            "Serving function: duration p50 / p99 (ms)",
            [
                function.metric_duration(period=FUNCTION_PERIOD, statistic="p50"),
                function.metric_duration(period=FUNCTION_PERIOD, statistic="p99"),
            ],
            line=p99,
            share=False,
            width=THIRD,
        ),
        _graph(
            "Serving function: invocations (left) and errors (right)",
            [function.metric_invocations(period=FUNCTION_PERIOD, statistic="Sum")],
            right=[function.metric_errors(period=FUNCTION_PERIOD, statistic="Sum")],
            share=False,
            width=THIRD,
        ),
        _graph(
            "Serving function: throttles",
            [function.metric_throttles(period=FUNCTION_PERIOD, statistic="Sum")],
            share=False,
            width=THIRD,
        ),
    ]


def serving_function(catalog: Catalog, model: str) -> FunctionSpec:
    """The function whose traffic stands for `model` on its dashboard: the first (by name)
    that declares it and answers HTTP routes, else the first that captures its predictions
    (serves live traffic), else the first that declares it (batch scoring)."""
    declaring = sorted((f for f in catalog.functions if model in f.models), key=lambda f: f.name)
    if not declaring:
        raise ValueError(f"no function in {catalog.root} declares model {model!r}")
    with_routes = [f for f in declaring if f.routes]
    live = [f for f in declaring if f.capture]
    return (with_routes or live or declaring)[0]


def watch_models(
    scope: Construct,
    *,
    catalog: Catalog,
    functions: Mapping[str, ServiceFunction],
    function_alarms: Mapping[str, FunctionAlarms],
    config: InfraConfig,
    topic: sns.ITopic | None,
) -> dict[str, ModelMonitoring]:
    """A `ModelMonitoring` for every model whose serving function (`serving_function`) is one
    of `functions` (a deploy group's), by model name: each model's dashboard and alarms exist
    once, with the function that answers for it."""
    monitored = monitored_models(catalog.root, catalog.capture)
    out: dict[str, ModelMonitoring] = {}
    for model in catalog.model_names:
        spec = serving_function(catalog, model)
        if spec.name not in functions:
            continue
        out[model] = ModelMonitoring(
            scope,
            f"{pascal(model)}Monitoring",
            model=model,
            function=functions[spec.name].alias,
            config=config,
            alarm_topic=topic,
            settings=monitored.get(model),
            function_alarms=function_alarms.get(spec.name),
        )
    return out

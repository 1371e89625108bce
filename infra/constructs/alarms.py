"""Per-function CloudWatch alarms, from each declaration's `[alarms]` (or the defaults).

Three per function, on its `live` alias (what the triggers invoke): the error rate, throttles
(reserved concurrency or the account's limit reached) and p99 duration. Every alarm and its
recovery notify one SNS topic per stack, encrypted under the stack's key and TLS only;
subscribe e-mail, chat or paging to it.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from aibackend.catalog import FunctionSpec
from infra.constructs.keys import allow_service

PERIOD = cdk.Duration.minutes(5)


def alarm_topic(scope: Construct, construct_id: str, *, key: kms.Key) -> sns.Topic:
    """The stack's alarm topic; CloudWatch may use `key` to publish to it (its key policy)."""
    stack = cdk.Stack.of(scope)
    allow_service(
        key,
        sid="CloudWatchAlarmsOfThisAccountPublishToTheAlarmTopic",
        service="cloudwatch",
        actions=["kms:GenerateDataKey*", "kms:Decrypt"],
        source_arn=stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name="*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        ),
    )
    return sns.Topic(
        scope,
        construct_id,
        display_name="aibackend alarms",
        master_key=key,
        enforce_ssl=True,
    )


class FunctionAlarms(Construct):
    """Attributes: `errors`, `throttles`, `duration` (cloudwatch.Alarm)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        alias: lambda_.Alias,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = spec.alarms
        rate = cloudwatch.MathExpression(
            expression="IF(invocations > 0, 100 * errors / invocations, 0)",
            using_metrics={
                "errors": alias.metric_errors(period=PERIOD, statistic="Sum"),
                "invocations": alias.metric_invocations(period=PERIOD, statistic="Sum"),
            },
            period=PERIOD,
            label=f"{spec.name} error rate (%)",
        )
        self.errors = rate.create_alarm(
            self,
            "ErrorRate",
            alarm_description=(
                f"{spec.name}: more than {settings.error_rate_percent:g}% of invocations "
                "failed in 5 minutes (function.toml [alarms] error_rate_percent)"
            ),
            threshold=settings.error_rate_percent,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.throttles = alias.metric_throttles(period=PERIOD, statistic="Sum").create_alarm(
            self,
            "Throttles",
            alarm_description=(
                f"{spec.name}: invocations throttled (reserved concurrency "
                f"{spec.reserved_concurrency or 'none'}, or the account's concurrency limit)"
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        p99 = settings.p99_threshold_ms(spec.timeout_s)
        self.duration = alias.metric_duration(period=PERIOD, statistic="p99").create_alarm(
            self,
            "DurationP99",
            alarm_description=(
                f"{spec.name}: p99 duration over {p99} ms for 10 minutes (function.toml "
                f"[alarms] p99_ms; timeout_s = {spec.timeout_s})"
            ),
            threshold=p99,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = actions.SnsAction(topic)
        for alarm in (self.errors, self.throttles, self.duration):
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

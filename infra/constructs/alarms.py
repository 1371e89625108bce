"""Per-function CloudWatch alarms, from each declaration's `[alarms]` (or the defaults).

Three per function, on its `live` alias (what the triggers invoke): the error rate, throttles
(reserved concurrency or the account's limit reached) and p99 duration. Two per consumed queue:
any message in its dead-letter queue, and the age of its oldest message; one per function
invoked asynchronously: any event in its on-failure queue. Every alarm and its recovery notify
one SNS topic (AibShared's), encrypted under the services key and TLS only; subscribe e-mail,
chat or paging to it.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from aibackend.catalog import Catalog, FunctionSpec, QueueTrigger
from infra.constructs.keys import allow_service
from infra.naming import pascal

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


def error_rate(
    alias: lambda_.IFunction, period: cdk.Duration, *, label: str
) -> cloudwatch.MathExpression:
    """The share of `alias`'s invocations that failed in each `period`, in percent (0 without
    invocations, so an idle function is not in alarm)."""
    return cloudwatch.MathExpression(
        expression="IF(invocations > 0, 100 * errors / invocations, 0)",
        using_metrics={
            "errors": alias.metric_errors(period=period, statistic="Sum"),
            "invocations": alias.metric_invocations(period=period, statistic="Sum"),
        },
        period=period,
        label=label,
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
        rate = error_rate(alias, PERIOD, label=f"{spec.name} error rate (%)")
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
        notify(topic, self.errors, self.throttles, self.duration)


#: SQS sends its metrics once a minute: a dead letter raises the alarm within a minute or two.
QUEUE_PERIOD = cdk.Duration.minutes(1)


class QueueAlarms(Construct):
    """A consumed queue's alarms, notifying `topic`. Attributes: `dead_letters` (any message in
    its DLQ: a message its consumer gave up on) and `oldest` (the oldest message has waited
    longer than `[[queues]] oldest_message_alarm_s`: the consumer is stuck or falling behind)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        trigger: QueueTrigger,
        consumer: str,
        queue: sqs.IQueue,
        dead_letters: sqs.IQueue,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        name = trigger.queue
        self.dead_letters = dead_letter_alarm(
            self,
            "DeadLetters",
            queue=dead_letters,
            description=(
                f"queue {name}: messages in its dead-letter queue ({consumer} gave up on them "
                f"after {trigger.max_receive_count} receives); read them, fix the cause, redrive"
            ),
        )
        age = trigger.oldest_message_alarm_s
        self.oldest = queue.metric_approximate_age_of_oldest_message(
            period=QUEUE_PERIOD, statistic="Maximum"
        ).create_alarm(
            self,
            "OldestMessage",
            alarm_description=(
                f"queue {name}: the oldest message has waited over {age} s for {consumer} "
                "(function.toml [[queues]] oldest_message_alarm_s)"
            ),
            threshold=age,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        notify(topic, self.dead_letters, self.oldest)


def dead_letter_alarm(
    scope: Construct, construct_id: str, *, queue: sqs.IQueue, description: str
) -> cloudwatch.Alarm:
    """Fires while `queue` holds any visible message."""
    return queue.metric_approximate_number_of_messages_visible(
        period=QUEUE_PERIOD, statistic="Maximum"
    ).create_alarm(
        scope,
        construct_id,
        alarm_description=description,
        threshold=0,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


def notify(topic: sns.ITopic, *alarms: cloudwatch.Alarm) -> None:
    """Each alarm notifies `topic` when it fires and when it recovers."""
    action = actions.SnsAction(topic)
    for alarm in alarms:
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)


def watch_queues(
    scope: Construct,
    *,
    catalog: Catalog,
    queues: Mapping[str, sqs.IQueue],
    dead_letter_queues: Mapping[str, sqs.IQueue],
    topic: sns.ITopic,
) -> dict[str, Construct]:
    """Alarms on every consumed queue (`QueueAlarms`), by queue name."""
    out: dict[str, Construct] = {}
    for spec in catalog.functions:
        for trigger in spec.queues:
            out[trigger.queue] = QueueAlarms(
                scope,
                f"{pascal(trigger.queue)}QueueAlarms",
                trigger=trigger,
                consumer=spec.name,
                queue=queues[trigger.queue],
                dead_letters=dead_letter_queues[trigger.queue],
                topic=topic,
            )
    return out


def watch_failures(
    scope: Construct, *, failure_queues: Mapping[str, sqs.IQueue | None], topic: sns.ITopic
) -> dict[str, Construct]:
    """An alarm on every function's on-failure queue (what asynchronous invocation gave up
    on), by `<function>-failures`."""
    out: dict[str, Construct] = {}
    for name, failures in failure_queues.items():
        if failures is None:
            continue
        group = Construct(scope, f"{pascal(name)}FailureAlarms")
        alarm = dead_letter_alarm(
            group,
            "Failures",
            queue=failures,
            description=(
                f"function {name}: events its asynchronous invocation gave up on (after "
                "retries or past their maximum age) are in its on-failure queue; read them, "
                "fix the cause, send them again"
            ),
        )
        notify(topic, alarm)
        out[f"{name}-failures"] = group
    return out

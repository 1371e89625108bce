"""SQS queues: one per `[[queues]]` trigger, each with its dead-letter queue, and the
EventBridge rules that fill a queue from a bus (`[[queues.events]]`).

A queue exists because a function consumes it; senders find it by the logical name in their
`resources.queues`. Every queue here is encrypted under AibShared's services key and refuses plain
HTTP. A queue's rules live beside it: SQS queue policies are the queue's own, so a rule in the
consumer's stack could not add the statement that lets EventBridge send to it.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
import jsii
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from aibackend.catalog import DECLARATION, Catalog, FunctionSpec, QueueTrigger, dead_letter_queue
from aibackend.errors import ConfigError
from aibackend.local.triggers import QUEUE_TARGET_MAX_AGE_S, QUEUE_TARGET_RETRIES
from infra.naming import pascal
from infra.triggers import event_pattern

#: SQS's maximum: a failed message waits two weeks for someone to look at it.
DEAD_LETTER_RETENTION = cdk.Duration.days(14)

#: How long SQS reuses a data key before asking KMS again (SQS's default, 1 min to 24 h): a
#: longer reuse means fewer KMS calls, billed per request, for the senders and consumers.
DATA_KEY_REUSE = cdk.Duration.minutes(5)


def secure_queue(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    retention: cdk.Duration,
    **kwargs: object,
) -> sqs.Queue:
    """A standard queue encrypted under `key` that denies requests without TLS.

    A sender needs kms:GenerateDataKey and kms:Decrypt on the key, a consumer kms:Decrypt:
    CDK's queue grants add them for roles; a service principal (EventBridge putting an
    undelivered event into a dead-letter queue) needs them in the key policy.
    """
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        data_key_reuse=DATA_KEY_REUSE,
        enforce_ssl=True,
        retention_period=retention,
        **kwargs,  # type: ignore[arg-type]
    )


def fed_by_rules(catalog: Catalog) -> bool:
    """Whether some queue is filled from a bus (`[[queues.events]]`)."""
    return any(q.events for spec in catalog.functions for q in spec.queues)


class Queues(Construct):
    """Attributes: `queues` and `dead_letter_queues` (logical name -> sqs.Queue), all
    encrypted under `key`; `rules` (queue -> its events.Rule list); `senders` (the queues a
    function may name in `resources.queues`: every queue, and `<queue>-dlq` of a queue filled
    by rules, where its consumer puts the events it rejects)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        catalog: Catalog,
        key: kms.IKey,
        buses: Mapping[str, events.IEventBus] | None = None,
    ) -> None:
        """`buses`: logical bus name -> bus, for the queues filled by rules."""
        super().__init__(scope, construct_id)
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        self.rules: dict[str, list[events.Rule]] = {}
        self.senders: dict[str, sqs.Queue] = {}
        for spec in catalog.functions:
            for i, trigger in enumerate(spec.queues):
                visibility = trigger.visibility_for(spec.timeout_s)
                if visibility < spec.timeout_s:
                    # Lambda refuses the mapping: a message would reappear mid-invocation.
                    raise ConfigError(
                        f"{spec.directory / DECLARATION}: queues[{i}].visibility_timeout_s: "
                        f"{visibility} s is shorter than the function's timeout_s "
                        f"({spec.timeout_s} s); use at least that (AWS advises six times it)"
                    )
                group = Construct(self, pascal(trigger.queue))
                dlq = secure_queue(group, "DeadLetters", key=key, retention=DEAD_LETTER_RETENTION)
                self.dead_letter_queues[trigger.queue] = dlq
                self.queues[trigger.queue] = secure_queue(
                    group,
                    "Queue",
                    key=key,
                    retention=cdk.Duration.seconds(trigger.retention_s),
                    visibility_timeout=cdk.Duration.seconds(visibility),
                    dead_letter_queue=sqs.DeadLetterQueue(
                        queue=dlq, max_receive_count=trigger.max_receive_count
                    ),
                )
                self.senders[trigger.queue] = self.queues[trigger.queue]
                if trigger.events:
                    self.senders[dead_letter_queue(trigger.queue)] = dlq
                    self.rules[trigger.queue] = self._rules(group, spec, i, trigger, buses or {})

    def _rules(
        self,
        scope: Construct,
        spec: FunctionSpec,
        index: int,
        trigger: QueueTrigger,
        buses: Mapping[str, events.IEventBus],
    ) -> list[events.Rule]:
        """One rule per `[[queues.events]]` entry, its target the queue: EventBridge retries a
        failed put (185 times over 24 hours, its defaults), then keeps the event in the
        queue's DLQ with the reason in its message attributes."""
        where = f"{spec.directory.name}/{DECLARATION} queues[{index}]"
        out = []
        for j, sub in enumerate(trigger.events):
            if sub.bus not in buses:
                raise ConfigError(
                    f"{spec.directory / DECLARATION}: queues[{index}].events[{j}].bus: unknown "
                    f"bus {sub.bus!r}; known buses: {', '.join(sorted(buses)) or 'none'}"
                )
            rule = events.Rule(
                scope,
                f"Rule{j}",
                description=f"{where} events[{j}] on the {sub.bus} bus -> {trigger.queue}"[:512],
                event_bus=buses[sub.bus],
                event_pattern=event_pattern(sub.pattern, f"{where}.events[{j}].pattern"),
            )
            rule.add_target(
                _QueueTarget(self.queues[trigger.queue], self.dead_letter_queues[trigger.queue])
            )
            out.append(rule)
        return out


@jsii.implements(events.IRuleTarget)
class _QueueTarget:
    """A rule's SQS target, like `aws_events_targets.SqsQueue` but with every grant tied to the
    rule. For an encrypted queue, `SqsQueue` lets `events.amazonaws.com` send without naming
    the rule (CDK drops the condition to avoid a cycle across stacks) and grants it the key
    with no condition at all. Here the rule and the queue share a stack, so both queue
    policies name the rule; the services key lets the account's rules use it
    (`allow_eventbridge_dead_letters`)."""

    def __init__(self, queue: sqs.IQueue, dead_letter_queue: sqs.IQueue) -> None:
        self.queue, self.dead_letter_queue = queue, dead_letter_queue

    def bind(self, rule: events.IRule, _id: str | None = None) -> events.RuleTargetConfig:
        for q in (self.queue, self.dead_letter_queue):
            q.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"AllowEventRule{cdk.Names.node_unique_id(rule.node)}",
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["sqs:SendMessage"],
                    resources=[q.queue_arn],
                    conditions={"ArnEquals": {"aws:SourceArn": rule.rule_arn}},
                )
            )
        return events.RuleTargetConfig(
            arn=self.queue.queue_arn,
            retry_policy=events.CfnRule.RetryPolicyProperty(
                maximum_retry_attempts=QUEUE_TARGET_RETRIES,
                maximum_event_age_in_seconds=QUEUE_TARGET_MAX_AGE_S,
            ),
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(
                arn=self.dead_letter_queue.queue_arn
            ),
        )

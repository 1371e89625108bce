"""SQS queues: one per `[[queues]]` trigger, each with its dead-letter queue.

A queue exists because a function consumes it; senders find it by the logical name in their
`resources.queues`. Every queue here is encrypted under AibShared's services key and refuses plain
HTTP.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from aibackend.catalog import DECLARATION, Catalog
from aibackend.errors import ConfigError
from infra.naming import pascal

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


class Queues(Construct):
    """Attributes: `queues` and `dead_letter_queues` (logical name -> sqs.Queue), all
    encrypted under `key`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, catalog: Catalog, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
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

"""Customer-managed KMS keys: one per stateful stack, for what that stack stores.

A key of our own (rather than the `aws/s3`, `aws/dynamodb` or SQS-managed keys) is what lets a
function's role be granted decrypt on exactly the stores it declares, lets EventBridge put
undelivered events into an encrypted queue (an AWS managed key's policy cannot name a service
principal), and leaves every use of the data in CloudTrail under one key id per stack.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

#: Every alias of this app's keys starts here: `alias/aib/models`, `alias/aib/data`, ...
ALIAS_PREFIX = "alias/aib/"


def platform_key(scope: Construct, construct_id: str, *, purpose: str, description: str) -> kms.Key:
    """A symmetric key with yearly rotation, aliased `alias/aib/<purpose>`, retained on stack
    deletion: objects, items and messages encrypted under it stay readable after a teardown.

    The default key policy trusts the account, so IAM policies (the grants functions get from
    their declarations, operators' own policies) decide who may use it.
    """
    return kms.Key(
        scope,
        construct_id,
        alias=f"{ALIAS_PREFIX}{purpose}",
        description=f"aibackend: {description}",
        enable_key_rotation=True,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )


def allow_eventbridge_dead_letters(key: kms.IKey) -> None:
    """Let EventBridge rules of this account encrypt what they put into queues under `key`.

    A rule that cannot deliver an event to its target sends it to the target's dead-letter
    queue as the EventBridge service, not as any role, and a rule whose target is a queue
    (`[[queues.events]]`) sends its events the same way, so only the key policy can allow it.
    Which rule may send to which queue is the queue policy's business (CDK adds one per rule,
    on that rule's ARN); the key policy cannot name the rules themselves, since the rules refer
    to the queues and the queues to this key.
    """
    stack = cdk.Stack.of(key)
    allow_service(
        key,
        sid="EventBridgeRulesOfThisAccountSendToDeadLetterQueues",
        service="events",
        actions=["kms:GenerateDataKey", "kms:Decrypt"],
        source_arn=stack.format_arn(service="events", resource="rule", resource_name="*"),
    )


def allow_service(
    key: kms.IKey, *, sid: str, service: str, actions: list[str], source_arn: str
) -> None:
    """Let AWS service `service` (`events`, `cloudwatch`...) use `key` on behalf of resources
    of this account matching `source_arn` only: what a service writes into an encrypted
    queue or topic, no role of ours involved, so only the key policy can allow it."""
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(f"{service}.amazonaws.com")],
            actions=actions,
            resources=["*"],
            conditions={
                "StringEquals": {"aws:SourceAccount": cdk.Stack.of(key).account},
                "ArnLike": {"aws:SourceArn": source_arn},
            },
        )
    )

"""`AibShared`: what several service groups use and none owns.

- the services key (`alias/aib/services`) of every queue and topic, the failure queues of the
  group stacks included (they import it);
- the queues functions consume (`[[queues]]`), with their dead-letter queues and alarms: a queue
  may be filled by another group than its consumer's (inference-capture: `fraud_score` sends,
  `monitor_capture` consumes), so it lives here and both groups import it; the rules that fill
  a queue from a bus (`[[queues.events]]`) live beside it;
- the SNS topics of `[resources] topics`;
- the alarm topic every group's alarms notify, and the account's monthly cost budget.

Group stacks depend on it (named exports), never the other way round: deploying a group
changes nothing here. A queue's own settings come from its consumer's `[[queues]]` entry
(retention, visibility, max_receive_count), so changing those changes this stack too.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from aibackend.catalog import DEFAULT_BUS, PLATFORM_BUS, Catalog
from infra.config import InfraConfig
from infra.constructs.alarms import alarm_topic, watch_queues
from infra.constructs.keys import allow_eventbridge_dead_letters, allow_service, platform_key
from infra.constructs.queues import Queues, fed_by_rules
from infra.exports import import_value
from infra.naming import pascal
from infra.triggers import topic_names

#: The cost budget's name (one per account: budget names are unique in an account).
BUDGET_NAME = "aibackend-monthly"

#: Budget notifications: (notification type, percent of the budget).
BUDGET_THRESHOLDS = (("ACTUAL", 80), ("FORECASTED", 100))


class SharedStack(cdk.Stack):
    """Attributes: `queue_key` (kms.Key), `queues` (Queues), `topics` (name -> sns.Topic),
    `alarm_topic` (sns.Topic), `queue_alarms` (queue name -> its alarms), `budget`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        catalog: Catalog,
        config: InfraConfig,
        bus: events.IEventBus,
        **kwargs: Any,
    ) -> None:
        """`bus`: the platform bus (AibData's), for the rules that fill queues."""
        super().__init__(scope, construct_id, **kwargs)
        # alias/aib/services is where an operator looks to read a dead-letter queue, whatever
        # the catalog holds today.
        self.queue_key = platform_key(
            self, "QueueKey", purpose="services", description="queues and dead-letter queues"
        )
        rules_fill_queues = fed_by_rules(catalog)
        if rules_fill_queues or any(spec.async_delivery for spec in catalog.functions):
            allow_eventbridge_dead_letters(self.queue_key)
        buses: dict[str, events.IEventBus] = {}
        if rules_fill_queues:
            # The bus's name is fixed by context; importing it orders AibData first and keeps
            # it from being deleted under the rules that fill the queues.
            buses = {
                PLATFORM_BUS: events.EventBus.from_event_bus_name(
                    self, "PlatformBus", import_value(self, bus, bus.event_bus_name, "BusName")
                ),
                DEFAULT_BUS: events.EventBus.from_event_bus_name(self, "DefaultBus", DEFAULT_BUS),
            }
        self.queues = Queues(self, "Queues", catalog=catalog, key=self.queue_key, buses=buses)
        # `[resources] topics`: one SNS topic per name, under the services key, TLS only.
        self.topics = {
            name: sns.Topic(
                self,
                f"Topic{pascal(name)}",
                display_name=f"aibackend {name}",
                master_key=self.queue_key,
                enforce_ssl=True,
            )
            for name in topic_names(catalog)
        }
        self.alarm_topic = alarm_topic(self, "AlarmTopic", key=self.queue_key)
        self.queue_alarms = watch_queues(
            self.queues,
            catalog=catalog,
            queues=self.queues.queues,
            dead_letter_queues=self.queues.dead_letter_queues,
            topic=self.alarm_topic,
        )
        self.budget = self._budget(config)
        cdk.CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.alarm_topic.topic_arn,
            description="every function's alarms and the cost budget notify this topic",
        )

    def _budget(self, config: InfraConfig) -> budgets.CfnBudget:
        """A monthly cost budget of the account: the alarm topic (and `aib:budget-email`, if
        set) hear of 80% spent and of a forecast over 100%."""
        budget_arn = self.format_arn(
            service="budgets", region="", resource="budget", resource_name="*"
        )
        allow_service(
            self.queue_key,
            sid="BudgetsOfThisAccountPublishToTheAlarmTopic",
            service="budgets",
            actions=["kms:GenerateDataKey*", "kms:Decrypt"],
            source_arn=budget_arn,
        )
        self.alarm_topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BudgetsOfThisAccountPublish",
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.alarm_topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {"aws:SourceArn": budget_arn},
                },
            )
        )
        subscribers = [
            budgets.CfnBudget.SubscriberProperty(
                subscription_type="SNS", address=self.alarm_topic.topic_arn
            )
        ]
        if config.budget_email:
            subscribers.append(
                budgets.CfnBudget.SubscriberProperty(
                    subscription_type="EMAIL", address=config.budget_email
                )
            )
        budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=BUDGET_NAME,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(
                    amount=config.budget_monthly_usd, unit="USD"
                ),
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=kind,
                        comparison_operator="GREATER_THAN",
                        threshold=percent,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=subscribers,
                )
                for kind, percent in BUDGET_THRESHOLDS
            ],
        )
        # Budgets checks that it may publish before it saves the subscription.
        budget.node.add_dependency(self.alarm_topic.node.find_child("Policy"))
        return budget

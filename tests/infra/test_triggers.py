"""Decisions taken from declarations before any construct: data buckets, async delivery,
event patterns, and the platform bus's deploy-time settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template
from pydantic import ValidationError

from aibackend.catalog import Catalog, FunctionSpec
from aibackend.errors import ConfigError
from infra.config import InfraConfig
from infra.constructs.bus import PlatformBus
from infra.triggers import async_delivery, data_bucket_names, event_pattern


def spec(**fields: Any) -> FunctionSpec:
    return FunctionSpec.model_validate({"name": "fn", "directory": Path("/f/fn"), **fields})


def test_data_buckets_are_every_named_bucket_but_the_model_store() -> None:
    catalog = Catalog(
        root=Path("/f"),
        functions=(
            spec(objects=[{"bucket": "raw"}], resources={"buckets": {"models": "read"}}),
            spec(name="other", resources={"buckets": {"reports": "write", "raw": "read"}}),
        ),
    )
    assert data_bucket_names(catalog) == ("raw", "reports")


def test_only_asynchronous_triggers_get_an_async_config() -> None:
    assert async_delivery(spec(queues=[{"queue": "q"}])) is None
    # GIVEN schedules only: the catalog's defaults
    only_schedules = async_delivery(spec(schedules=[{"expression": "rate(5 minutes)"}]))
    assert only_schedules is not None
    assert (only_schedules.max_attempts, only_schedules.max_event_age_s) == (2, 3600)
    # GIVEN triggers that agree: their settings
    agreed = async_delivery(
        spec(
            events=[{"pattern": {"source": ["x"]}, "max_attempts": 0, "max_event_age_s": 60}],
            objects=[{"bucket": "raw", "max_attempts": 0, "max_event_age_s": 60}],
        )
    )
    assert agreed is not None
    assert (agreed.max_attempts, agreed.max_event_age_s) == (0, 60)


def test_disagreeing_async_settings_are_refused_by_the_catalog() -> None:
    with pytest.raises(ValidationError, match=r"events\.0: max_attempts=2, max_event_age_s=60"):
        spec(
            events=[
                {"pattern": {"source": ["x"]}, "max_event_age_s": 60},
                {"pattern": {"source": ["y"]}},
            ]
        )


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ({}, "empty pattern"),
        ({"Source": ["x"]}, "unsupported top-level field(s) 'Source'"),
        ({"detail-type": "X"}, "detail-type: must be a non-empty list"),
        ({"detail": ["x"]}, "detail: must be a table"),
    ],
)
def test_unusable_patterns_say_what_is_wrong(pattern: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        event_pattern(pattern, "fn/function.toml: events[0].pattern")
    assert message in str(err.value)
    assert str(err.value).startswith("fn/function.toml: events[0].pattern")


def test_bus_name_and_archive_retention_come_from_context() -> None:
    # GIVEN -c values (strings, as the CLI passes them)
    app = cdk.App(context={"aib:bus-name": "payments", "aib:archive-retention-days": "7"})
    config = InfraConfig.from_node(app.node)
    # WHEN the platform bus is built from them
    stack = cdk.Stack(app, "S")
    key = kms.Key(stack, "Key")
    PlatformBus(
        stack,
        "Bus",
        bus_name=config.bus_name,
        archive_retention_days=config.archive_retention_days,
        archive_key=key,
    )
    # THEN the bus has that name and its archive keeps events that long, under the given key
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::Events::EventBus", {"Name": "payments"})
    template.has_resource_properties(
        "AWS::Events::Archive",
        {"RetentionDays": 7, "KmsKeyIdentifier": stack.resolve(key.key_arn)},
    )


def test_platform_bus_cannot_be_the_default_bus() -> None:
    app = cdk.App(context={"aib:bus-name": "default"})
    with pytest.raises(ConfigError, match="aib:bus-name"):
        InfraConfig.from_node(app.node)

"""What a declaration's triggers mean on AWS, decided before any construct is built.

Pure functions of the catalog (plus `EventPattern` rendering): which buckets and tables are
data buckets and data tables, which asynchronous delivery settings a function's alias gets,
how a declared pattern becomes a CDK `EventPattern` without losing its content filters, and
the input transformer that hands `notification = "s3"` subscribers an S3 event notification.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events

from aibackend.catalog import AsyncDelivery, Catalog, FunctionSpec
from aibackend.errors import ConfigError

#: The model store's logical bucket name: lives in AibModels, never a data bucket.
MODEL_BUCKET = "models"
#: The model registry's logical table name: lives in AibModels, never a data table.
REGISTRY_TABLE = "registry"

#: EventBridge event envelope fields a pattern may match -> `events.EventPattern` argument.
_PATTERN_FIELDS = {
    "version": "version",
    "id": "id",
    "detail-type": "detail_type",
    "source": "source",
    "account": "account",
    "time": "time",
    "region": "region",
    "resources": "resources",
    "detail": "detail",
}


def data_bucket_names(catalog: Catalog) -> tuple[str, ...]:
    """Buckets the declarations name (`[[objects]]` or `resources.buckets`), except the model
    store: AibData creates each once, whoever reads, writes or subscribes to it."""
    return tuple(b for b in catalog.bucket_names if b != MODEL_BUCKET)


def bucket_expirations(catalog: Catalog) -> dict[str, list[tuple[str, int]]]:
    """Per bucket, (prefix, days) expirations the declarations ask for: the lifecycle rules
    `aib dev` applies itself (`aibackend.local.lifecycle`)."""
    from aibackend.local.lifecycle import expiration_rules

    out: dict[str, list[tuple[str, int]]] = {}
    for rule in expiration_rules(catalog):
        out.setdefault(rule.bucket, []).append((rule.prefix, rule.days))
    return out


def topic_names(catalog: Catalog) -> tuple[str, ...]:
    """SNS topics the declarations name in `resources.topics`: AibShared creates each once,
    however many functions publish to it."""
    return tuple(sorted({t for f in catalog.functions for t in f.resources.topics}))


def data_table_names(catalog: Catalog) -> tuple[str, ...]:
    """Tables the declarations name in `resources.tables`, except the model registry: AibData
    creates each once, however many functions read or write it."""
    names = {t for f in catalog.functions for t in f.resources.tables}
    return tuple(sorted(names - {REGISTRY_TABLE}))


def async_delivery(spec: FunctionSpec) -> AsyncDelivery | None:
    """The one asynchronous invoke configuration of the function's `live` alias (the catalog
    checks at load that its `[[events]]` and `[[objects]]` triggers agree)."""
    return spec.async_delivery


def event_pattern(pattern: Mapping[str, Any], where: str) -> events.EventPattern:
    """A declared pattern (JSON keys such as `detail-type`, content filters such as
    `{"prefix": ...}`) as a CDK `EventPattern` that renders exactly as declared.

    `EventPattern` types every envelope field as a list of strings; a list holding content
    filters passes through as a list token, which the template renders verbatim.
    """
    if not pattern:
        raise ConfigError(f"{where}: an empty pattern would match nothing; name what to match")
    unknown = sorted(set(pattern) - set(_PATTERN_FIELDS))
    if unknown:
        raise ConfigError(
            f"{where}: unsupported top-level field(s) {', '.join(map(repr, unknown))}; an event "
            f"pattern matches the envelope fields {', '.join(_PATTERN_FIELDS)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in pattern.items():
        if key == "detail":
            if not isinstance(value, Mapping) or not value:
                raise ConfigError(f"{where}.detail: must be a table of fields to match")
            kwargs["detail"] = dict(value)
        elif not isinstance(value, list) or not value:
            raise ConfigError(
                f"{where}.{key}: must be a non-empty list of values or filters, got {value!r}"
            )
        elif all(isinstance(v, str) for v in value):
            kwargs[_PATTERN_FIELDS[key]] = value
        else:
            kwargs[_PATTERN_FIELDS[key]] = cdk.Token.as_list(value)
    return events.EventPattern(**kwargs)


def s3_notification_input(configuration_id: str) -> events.RuleTargetInput:
    """An input transformer that turns S3's EventBridge `Object Created` event into an S3 event
    notification (structure version 2.1, one record), for `[[objects]]` triggers with
    `notification = "s3"`.

    The local runtime builds the same JSON (`aibackend.local.triggers.
    s3_notification_from_eventbridge`, checked against this template by the infra tests).
    Where a transformer cannot do what S3 does, both follow the transformer: EventBridge
    cannot URL-encode, so the key arrives as it is (`a b.csv`, where S3's own notification
    says `a+b.csv`); `eventTime` has whole seconds; `eventName` is always `ObjectCreated:Put`
    (a copy or multipart upload too); `x-amz-id-2`, which the event does not carry, is the
    event's id. The data buckets are versioned, so `versionId` is always there.
    """
    field = events.EventField.from_path
    return events.RuleTargetInput.from_object(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": events.EventField.region,
                    "eventTime": events.EventField.time,
                    "eventName": "ObjectCreated:Put",
                    "userIdentity": {"principalId": "AWS:" + field("$.detail.requester")},
                    "requestParameters": {"sourceIPAddress": field("$.detail.source-ip-address")},
                    "responseElements": {
                        "x-amz-request-id": field("$.detail.request-id"),
                        "x-amz-id-2": events.EventField.event_id,
                    },
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": configuration_id,
                        "bucket": {
                            "name": field("$.detail.bucket.name"),
                            "ownerIdentity": {"principalId": events.EventField.account},
                            "arn": field("$.resources[0]"),
                        },
                        "object": {
                            "key": field("$.detail.object.key"),
                            "size": field("$.detail.object.size"),
                            "eTag": field("$.detail.object.etag"),
                            "versionId": field("$.detail.object.version-id"),
                            "sequencer": field("$.detail.object.sequencer"),
                        },
                    },
                }
            ]
        }
    )

"""What a declaration's triggers mean on AWS, decided before any construct is built.

Pure functions of the catalog (plus `EventPattern` rendering): which buckets and tables are
data buckets and data tables, which asynchronous delivery settings a function's alias gets,
and how a declared pattern becomes a CDK `EventPattern` without losing its content filters.
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
    names = {o.bucket for f in catalog.functions for o in f.objects}
    names |= {b for f in catalog.functions for b in f.resources.buckets}
    return tuple(sorted(names - {MODEL_BUCKET}))


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

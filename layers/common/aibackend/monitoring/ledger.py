"""The label ledger of a model, chosen by the platform's adapter set.

Locally: one SQLite file per model, `<state>/monitoring/labels-<model>.db` (WAL: the capture
consumer, the feedback API, the labels-file consumer and the monitor share it). On AWS: the
`monitoring-labels` data table (`DynamoLabelStore`), every model's items prefixed by its name.
Either way a window of one model never counts another's predictions.
"""

from __future__ import annotations

import re

from aibackend.monitoring.labels import LabelStore, SqliteLabelStore
from aibackend.settings import PlatformSettings, physical_name, platform_settings

#: The data table of the ledger on AWS (functions declare it under `[resources] tables`).
TABLE = "monitoring-labels"

_MODEL = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def open_ledger(model: str, settings: PlatformSettings | None = None) -> LabelStore:
    """The ledger of `model` (a registry name)."""
    if not _MODEL.fullmatch(model):
        raise ValueError(f"model name {model!r} is not a registry name ([a-z][a-z0-9_]*)")
    s = settings or platform_settings()
    if s.adapters == "local":
        return SqliteLabelStore(s.state_dir / "monitoring" / f"labels-{model}.db")
    from aibackend.monitoring.dynamo_labels import DynamoLabelStore

    return DynamoLabelStore(physical_name("table", TABLE), model)

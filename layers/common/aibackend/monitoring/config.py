"""Monitoring thresholds per model: the `[monitor.<model>]` tables of `functions/monitoring.toml`.

    [monitor.fraud]
    drift_share = 0.5                 # dataset drift when this share of features drifts
    min_roc_auc = 0.85                # Model Performance Degraded below this (labelled windows)
    min_labels = 200                  # labelled rows a window needs before AUC is judged
    sensitive_attributes = ["customer_age_band", "region"]
    min_group_size = 100              # labelled rows a group needs to be compared
    bias_tolerance = 0.1              # gap in selection rate, TPR or FPR that counts as bias
    positive_decisions = ["decline"]  # captured decisions that count as a positive prediction

Every key is optional (the defaults are above, Evidently's and Fairlearn's where they exist); a
model without a table is monitored with the defaults. The settings reach the monitor function
as one JSON variable (`AIB_MONITOR`), as capture settings reach the functions that capture.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from aibackend.capture import FILE, load_section, settings_json
from aibackend.errors import ConfigError
from aibackend.monitoring.bias import BiasConfig
from aibackend.monitoring.drift import DriftConfig

ENV = "AIB_MONITOR"

Attribute = Annotated[str, Field(min_length=1, max_length=64)]


class MonitorSettings(BaseModel):
    """What counts as drift, degradation and bias for one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    min_roc_auc: Annotated[float, Field(ge=0, le=1)] = 0.85
    min_labels: Annotated[int, Field(ge=1)] = 200
    sensitive_attributes: tuple[Attribute, ...] = ("customer_age_band", "region")
    min_group_size: Annotated[int, Field(ge=1)] = 100
    bias_tolerance: Annotated[float, Field(gt=0, le=1)] = 0.1
    positive_decisions: tuple[Attribute, ...] = Field(default=("decline",), min_length=1)

    def drift_config(self) -> DriftConfig:
        return DriftConfig(drift_share=self.drift_share)

    def bias_config(self) -> BiasConfig:
        return BiasConfig(min_group_size=self.min_group_size, tolerance=self.bias_tolerance)


DEFAULT = MonitorSettings()
_SETTINGS = TypeAdapter(dict[str, MonitorSettings])


def load_monitor(root: Path) -> dict[str, MonitorSettings]:
    """The `[monitor.<model>]` tables of `<functions>/monitoring.toml` (none: defaults)."""
    return load_section(root, "monitor", _SETTINGS)


def monitor_env(settings: Mapping[str, MonitorSettings]) -> str:
    """The `AIB_MONITOR` value: every model's settings, compact and key-ordered."""
    return settings_json(settings)


def settings_from_env(env: Mapping[str, str] | None = None) -> dict[str, MonitorSettings]:
    raw = (os.environ if env is None else env).get(ENV, "")
    try:
        return _SETTINGS.validate_json(raw) if raw else {}
    except ValidationError as e:
        raise ConfigError(f"{ENV}: not valid monitor settings: {e.errors()[0]['msg']}") from None


def settings_for(model: str, settings: Mapping[str, MonitorSettings]) -> MonitorSettings:
    return settings.get(model, DEFAULT)


def monitored_models(root: Path, captured: Iterable[str]) -> dict[str, MonitorSettings]:
    """Every captured model's settings (its `[monitor.<model>]`, else the defaults): the
    monitor judges what is captured. A table for a model that is not captured is an error."""
    declared = load_monitor(root)
    models = set(captured)
    stray = sorted(set(declared) - models)
    if stray:
        raise ConfigError(
            f"{root / FILE}: monitor: model(s) {', '.join(map(repr, stray))} are not captured; "
            "add a [capture.<model>] table for them (monitoring reads what capture writes)"
        )
    return {m: declared.get(m, DEFAULT) for m in sorted(models)}

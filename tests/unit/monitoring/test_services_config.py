"""`[monitor.<model>]` settings: defaults, validation that names the key, captured models only."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.errors import ConfigError
from aibackend.monitoring.config import (
    DEFAULT,
    ENV,
    MonitorSettings,
    load_monitor,
    monitor_env,
    monitored_models,
    settings_from_env,
)

ROOT = Path(__file__).resolve().parents[3]


def _toml(tmp_path: Path, text: str) -> Path:
    (tmp_path / "monitoring.toml").write_text(text)
    return tmp_path


def test_every_captured_model_is_monitored_with_the_defaults_where_it_declares_none(
    tmp_path: Path,
) -> None:
    # GIVEN a table for fraud only, setting one key
    root = _toml(tmp_path, "[capture.fraud]\n[capture.churn]\n[monitor.fraud]\nmin_roc_auc = 0.9\n")
    # WHEN the monitored models are loaded for both captured models
    got = monitored_models(root, ["fraud", "churn"])
    # THEN fraud has its key and defaults for the rest; churn has the defaults
    assert got["fraud"] == MonitorSettings(min_roc_auc=0.9)
    assert got["churn"] == DEFAULT


def test_an_invalid_value_is_refused_naming_the_table_and_key(tmp_path: Path) -> None:
    root = _toml(tmp_path, "[monitor.fraud]\ndrift_share = 1.5\n")
    with pytest.raises(ConfigError, match=r"monitor\.fraud\.drift_share: .*less than or equal"):
        load_monitor(root)


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    root = _toml(tmp_path, "[monitor.fraud]\nmin_auc = 0.9\n")
    with pytest.raises(ConfigError, match=r"monitor\.fraud\.min_auc: Extra inputs"):
        load_monitor(root)


def test_a_table_for_a_model_that_is_not_captured_is_refused(tmp_path: Path) -> None:
    root = _toml(tmp_path, "[monitor.churn]\n")
    with pytest.raises(ConfigError, match="'churn' are not captured"):
        monitored_models(root, ["fraud"])


def test_the_environment_variable_round_trips_the_settings() -> None:
    # GIVEN the project's monitoring.toml
    settings = monitored_models(ROOT / "functions", ["fraud"])
    # WHEN they travel as AIB_MONITOR
    back = settings_from_env({ENV: monitor_env(settings)})
    # THEN the function reads what was declared
    assert back == settings
    assert back["fraud"].sensitive_attributes == ("customer_age_band", "region")


def test_the_monitor_function_declares_every_captured_model() -> None:
    # GIVEN the project's functions: the monitor may read only the models it declares
    from aibackend.catalog import load_catalog

    catalog = load_catalog(ROOT / "functions")
    # THEN every captured model is one of monitor_models' models
    assert set(catalog.capture) <= set(catalog.get("monitor_models").models)

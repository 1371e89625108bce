"""`[canary.<model>]` of functions/training.toml: defaults, durations, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.canary import load_settings, parse_window
from aibackend.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "training.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_a_model_without_a_section_gets_the_defaults(tmp_path: Path) -> None:
    s = load_settings("fraud", _write(tmp_path, "[gate.fraud]\nkey_metric = 'roc_auc'\n"))
    assert (s.percent, s.window_s, s.min_requests, s.max_score_drift) == (10, 300.0, 100, 0.05)


def test_a_section_sets_the_share_the_window_and_the_criteria(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        "[canary.fraud]\npercent = 25\nwindow = '90s'\nmin_requests = 20\nmax_p99_ratio = 2\n",
    )
    s = load_settings("fraud", folder)
    assert (s.percent, s.window_s) == (25, 90.0)
    assert (s.criteria.min_requests, s.criteria.max_p99_ratio) == (20, 2.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("percent = 100", r"canary\.fraud\.percent: Input should be less than or equal to 99"),
        ("window = 'soon'", r"canary\.fraud\.window: window 'soon' is not a duration"),
        ("max_errors = 0.1", r"canary\.fraud\.max_errors: Extra inputs are not permitted"),
        ("min_requests = 0", r"canary\.fraud\.min_requests: Input should be greater than"),
    ],
)
def test_a_wrong_key_is_an_error_naming_it(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings("fraud", _write(tmp_path, f"[canary.fraud]\n{line}\n"))


def test_windows_read_as_seconds_minutes_or_hours() -> None:
    assert [parse_window(w) for w in ("45", "90s", "5m", "1.5h", 30)] == [45, 90, 300, 5400, 30]
    with pytest.raises(ValueError, match="at most 48h"):
        parse_window("3000m")


def test_the_repository_configuration_is_valid() -> None:
    s = load_settings("fraud", Path(__file__).parents[3] / "functions")
    assert s.percent == 10 and s.criteria.max_error_rate_delta == 0.01

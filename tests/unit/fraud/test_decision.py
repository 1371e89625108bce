"""The decline threshold both fraud functions read from FRAUD_THRESHOLD."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aibackend.fraud.decision import DecisionSettings


def test_declines_at_or_above_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_THRESHOLD", "0.3")
    s = DecisionSettings.from_env()
    assert (s.decide(0.3), s.decide(0.2999)) == ("decline", "approve")


def test_default_and_invalid_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAUD_THRESHOLD", raising=False)
    assert DecisionSettings.from_env().threshold == 0.5
    monkeypatch.setenv("FRAUD_THRESHOLD", "1.5")
    with pytest.raises(ValidationError, match="threshold"):
        DecisionSettings.from_env()

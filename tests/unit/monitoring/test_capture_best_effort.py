"""Capture is best effort: a queue that fails loses the capture, never the prediction."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from aibackend.capture import Capture, CaptureSettings
from aibackend.errors import NotFoundError


class MissingQueue:
    name = "inference-capture"

    def send_batch(self, bodies: Sequence[str], *, delay_s: int | None = None) -> list[str]:
        raise NotFoundError("queue 'inference-capture' does not exist")


def test_a_capture_queue_that_fails_is_logged_and_the_call_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN capture of fraud whose queue is missing
    cap = Capture("fraud", CaptureSettings(rate=1.0), MissingQueue())  # type: ignore[arg-type]
    items = [(f"inf-{i}", {"amount": 1.0}, {"score": 0.1}) for i in range(3)]
    # WHEN three predictions are captured
    with caplog.at_level(logging.ERROR, logger="aib.capture"):
        sent = cap.send(1, items, "req-1")
    # THEN nothing counts as sent, the error says what was lost and why, and nothing raised
    assert sent == 0
    assert "3 record(s) of fraud not captured: NotFoundError" in caplog.text

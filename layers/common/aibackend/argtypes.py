"""argparse types shared by the `aib` subcommands: each refuses a bad value with the form to
use (exit status 2, as argparse refuses)."""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime


def iso_time(text: str) -> datetime:
    """argparse type: an ISO 8601 time (UTC when it names no offset)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-27T10:00:00+00:00"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def positive_int(text: str) -> int:
    """argparse type: a whole number above zero."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {n}")
    return n


def positive_float(text: str) -> float:
    """argparse type: a number above zero."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < x < math.inf:  # nan fails both comparisons
        raise argparse.ArgumentTypeError(f"must be above 0 (and finite), not {text}")
    return x

"""Names derived from declarations: construct ids and export names must stay stable."""

from __future__ import annotations


def pascal(name: str) -> str:
    """`raw-events` / `fraud_score` -> `RawEvents` / `FraudScore`."""
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))

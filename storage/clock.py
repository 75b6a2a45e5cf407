"""One place that says what time it is, so tests can move time (time-machine patches it)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)

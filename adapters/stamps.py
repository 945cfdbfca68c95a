"""Time stamps for change-feed cursors, shared by the adapters that walk a window (SimplePractice, Practice Better)."""

from __future__ import annotations

from datetime import UTC, datetime


def whole_second(moment: datetime) -> datetime:
    """Whole seconds, rounded down: a bound rounded down re-reads a little, never skips."""
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

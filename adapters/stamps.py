"""Time stamps for change-feed cursors, shared by the adapters that walk a window (SimplePractice, Practice Better)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def whole_second(moment: datetime) -> datetime:
    """Whole seconds, rounded down: a bound rounded down re-reads a little, never skips."""
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


SETTLE_SECONDS = 2.0


def settled_cursor(latest: datetime, since: datetime, started: datetime, settle: float = SETTLE_SECONDS) -> datetime:
    """The next `updated_at` cursor: the newest stamp read, but never later than `settle` seconds before the poll
    began, and never before the previous cursor.

    A cursor at the newest stamp skips a record stamped earlier that commits (or is read) later — two writes in one
    second, a transaction that started first and committed last, an EMR stamping a later change a second ahead to
    keep stamps moving. Holding the cursor back re-reads those seconds on the next poll; the caller's digests make a
    re-read record cost nothing more."""
    held = min(latest, started.astimezone(UTC) - timedelta(seconds=settle))
    return max(since, held)

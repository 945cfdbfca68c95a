"""Wall-clock times to instants: a naive time is read in the zone it came with, never the server's."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import ValidationFailed
from schemas.problems import FieldError


def zone(name: str, *, field: str = "time_zone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"{name!r} is not an IANA time zone", errors=[FieldError(field=field, message="unknown time zone")]
        ) from None


def to_instant(value: datetime, tz_name: str, *, field: str) -> datetime:
    """Aware values keep their offset; naive ones are wall time in `tz_name`. A wall time that does not exist
    (the hour skipped when clocks go forward) is refused rather than silently shifted."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC)
    tz = zone(tz_name)
    local = value.replace(tzinfo=tz)
    round_trip = local.astimezone(UTC).astimezone(tz)
    if round_trip.replace(tzinfo=None) != value:
        raise ValidationFailed(
            f"{value.isoformat()} does not exist in {tz_name} (clocks change at that time)",
            errors=[FieldError(field=field, message="nonexistent local time")],
        )
    return local.astimezone(UTC)


def parse_bound(raw: str, tz_name: str, *, field: str, end_of_day: bool) -> datetime:
    """Query bounds: RFC 3339 instant, naive local date-time, or a date (start or end of that local day)."""
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            t = time.max if end_of_day else time.min
            return to_instant(datetime.combine(d, t), tz_name, field=field)
        return to_instant(datetime.fromisoformat(raw.replace("Z", "+00:00")), tz_name, field=field)
    except ValueError:
        raise ValidationFailed(
            f"{field} must be an RFC 3339 date-time or a YYYY-MM-DD date",
            errors=[FieldError(field=field, message="invalid date-time")],
        ) from None


def now_utc() -> datetime:
    return datetime.now(UTC)

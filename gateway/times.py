"""Wall-clock times to instants: a naive time is read in the zone it came with, never the server's."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import ValidationFailed
from schemas.common import ZONE_PATTERN
from schemas.problems import FieldError

ZONE_NAME = re.compile(ZONE_PATTERN)
# Outside these years a zone conversion can overflow (year 1 minus an offset); a booking is never there anyway.
MIN_YEAR, MAX_YEAR = 1900, 2200


def is_zone_name(name: str) -> bool:
    return bool(ZONE_NAME.match(name))


def zone(name: str, *, field: str = "time_zone") -> ZoneInfo:
    if not is_zone_name(name):
        raise ValidationFailed(
            f"{name[:64]!r} is not an IANA Area/City time zone (e.g. Australia/Melbourne)",
            errors=[FieldError(field=field, message="not an Area/City time zone")],
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"{name!r} is not an IANA time zone", errors=[FieldError(field=field, message="unknown time zone")]
        ) from None


def _year_in_range(value: datetime, field: str) -> None:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValidationFailed(
            f"{field} must be between the years {MIN_YEAR} and {MAX_YEAR}",
            errors=[FieldError(field=field, message="year out of range")],
        )


def read_date_time(raw: str, *, field: str) -> datetime:
    """A request's time string as given: aware with its offset, or naive (a wall time for the caller's zone)."""
    text = raw.strip()
    if len(text) > 10 and text[10] in " t":
        text = text[:10] + "T" + text[11:]
    try:
        return datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{field} must be an RFC 3339 date-time, or YYYY-MM-DDTHH:MM:SS in time_zone",
            errors=[FieldError(field=field, message="invalid date-time")],
        ) from None


def to_instant(value: datetime, tz_name: str, *, field: str) -> datetime:
    """Aware values keep their offset; naive ones are wall time in `tz_name`. A wall time that does not exist
    (the hour skipped when clocks go forward) is refused rather than silently shifted."""
    _year_in_range(value, field)
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
    except (ValueError, OverflowError):
        raise ValidationFailed(
            f"{field} must be an RFC 3339 date-time or a YYYY-MM-DD date",
            errors=[FieldError(field=field, message="invalid date-time")],
        ) from None


def now_utc() -> datetime:
    return datetime.now(UTC)


class TimeBounds:
    """What a booking's times may be: not further in the past than `max_past`, not further ahead than `max_ahead`,
    between `min_length` and `max_length` long. A start years in the past or a ten-year appointment is a typo or an
    attack, never a clinic's intent, and some EMRs book it anyway."""

    def __init__(
        self, *, max_past: timedelta, max_ahead: timedelta, min_length: timedelta, max_length: timedelta
    ) -> None:
        self.max_past = max_past
        self.max_ahead = max_ahead
        self.min_length = min_length
        self.max_length = max_length

    def check(self, start: datetime, end: datetime | None, now: datetime, *, start_field: str = "start") -> None:
        if start < now - self.max_past:
            raise ValidationFailed(
                f"{start_field} is more than {_human(self.max_past)} in the past",
                errors=[FieldError(field=start_field, message="too far in the past")],
            )
        if start > now + self.max_ahead:
            raise ValidationFailed(
                f"{start_field} is more than {_human(self.max_ahead)} ahead",
                errors=[FieldError(field=start_field, message="too far ahead")],
            )
        if end is not None:
            self.check_length(end - start)

    def check_length(self, length: timedelta, field: str = "end") -> None:
        if length <= timedelta(0):
            raise ValidationFailed(
                "end must be after start", errors=[FieldError(field=field, message="not after start")]
            )
        if not self.min_length <= length <= self.max_length:
            raise ValidationFailed(
                f"an appointment lasts between {_human(self.min_length)} and {_human(self.max_length)}",
                errors=[FieldError(field=field, message="length out of range")],
            )


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"

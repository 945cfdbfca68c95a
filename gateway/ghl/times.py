"""GHL times: `calendar.startTime` is wall time in `selectedTimezone` without an offset ("YYYY-MM-DDTHH:mm:ss"),
sometimes with `Z` or an offset; both become a UTC instant, never read in the server's zone."""

from __future__ import annotations

from datetime import datetime

from gateway.errors import ValidationFailed
from gateway.times import to_instant
from schemas.problems import FieldError


def parse_ghl_time(raw: str, tz_name: str, *, field: str) -> datetime:
    text = raw.strip()
    if len(text) > 10 and text[10] == " ":
        text = text[:10] + "T" + text[11:]  # "2025-10-15 10:00:00" also appears in hand-built bodies
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{field} {raw!r} is not a date-time (GHL sends YYYY-MM-DDTHH:mm:ss in selectedTimezone)",
            errors=[FieldError(field=field, message="invalid date-time")],
        ) from None
    return to_instant(value, tz_name, field=field)

"""Phone numbers to E.164 with `phonenumbers`, defaulting the region from the location's time zone."""

from __future__ import annotations

import functools
from importlib.resources import files

import phonenumbers

from gateway.errors import ValidationFailed
from schemas.problems import FieldError


@functools.cache
def _zone_countries() -> dict[str, str]:
    """tzdata's zone.tab maps each zone to its ISO country: the best default region for a local number."""
    text = files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) >= 3:
            out[parts[2]] = parts[0]
    return out


def region_for_zone(tz_name: str) -> str | None:
    return _zone_countries().get(tz_name)


def to_e164(raw: str, tz_name: str, *, field: str = "phone") -> str:
    try:
        number = phonenumbers.parse(raw, region_for_zone(tz_name))
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise ValidationFailed("phone is not a valid number", errors=[FieldError(field=field, message="invalid phone")])
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

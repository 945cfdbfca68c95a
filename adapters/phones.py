"""Phone numbers in E.164, one way for every adapter and the gateway (so a lookup by phone matches what adapters
return), with the default region for national formats taken from the location's time zone."""

from __future__ import annotations

import functools
from importlib.resources import files

import phonenumbers


@functools.cache
def _zone_countries() -> dict[str, str]:
    """tzdata's zone.tab maps each zone to its ISO country: the best default region for a local number."""
    text = files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if not line.startswith("#") and len(parts) >= 3:
            out[parts[2]] = parts[0]
    return out


def region_for_zone(tz_name: str) -> str | None:
    return _zone_countries().get(tz_name)


def e164(raw: str | None, region: str | None) -> str | None:
    """E.164 when `raw` is a possible number (national formats read in `region`), else None."""
    if not raw or not raw.strip():
        return None
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

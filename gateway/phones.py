"""Phone numbers to E.164 with `phonenumbers`, defaulting the region from the location's time zone."""

from __future__ import annotations

from adapters.phones import e164, region_for_zone
from gateway.errors import ValidationFailed
from schemas.problems import FieldError

__all__ = ["region_for_zone", "to_e164"]


def to_e164(raw: str, tz_name: str, *, field: str = "phone") -> str:
    number = e164(raw, region_for_zone(tz_name))
    if number is None:
        raise ValidationFailed("phone is not a valid number", errors=[FieldError(field=field, message="invalid phone")])
    return number

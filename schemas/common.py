"""Shared base types for the contract."""

from __future__ import annotations

from typing import Annotated

import msgspec


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=False):
    """Base for request bodies: unknown fields are an error so typos never pass silently."""


class Out(msgspec.Struct, kw_only=True):
    """Base for response bodies and values passed between layers."""


# A request's date-time: RFC 3339 with an offset, or a naive wall time read in the request's `time_zone` (else the
# location's). A string on purpose: a number is never a time.
DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})?$"
LocalDateTime = Annotated[
    str,
    msgspec.Meta(
        pattern=DATE_TIME_PATTERN,
        description="RFC 3339 date-time with an offset, or YYYY-MM-DDTHH:MM:SS read in time_zone",
        examples=["2026-12-01T10:00:00", "2026-12-01T10:00:00+11:00"],
    ),
]
# IANA Area/City names and UTC; `localtime`, `posixrules` and paths would mean the server's own zone.
ZONE_PATTERN = (
    r"^(?:UTC|(?:Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)"
    r"(?:/[A-Za-z0-9_+-]{1,30}){1,2})$"
)
ZoneName = Annotated[
    str,
    msgspec.Meta(
        pattern=ZONE_PATTERN, max_length=64, description="IANA Area/City time zone", examples=["Australia/Melbourne"]
    ),
]

"""Shared base types for the contract, and the text rules every request field is checked against (the same regular
expressions are in the OpenAPI document, so a client knows before it sends what the gateway will refuse)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=False):
    """Base for request bodies: unknown fields are an error so typos never pass silently.

    `exactly_one` / `at_least_one` name fields of which exactly one / at least one must be given (not null): the
    OpenAPI document says so (`oneOf` / `anyOf`), and the gateway checks it with `given` before it uses the body."""

    exactly_one: ClassVar[tuple[str, ...]] = ()
    at_least_one: ClassVar[tuple[str, ...]] = ()
    # Whole bodies as the document shows them (`examples`).
    examples: ClassVar[tuple[dict[str, Any], ...]] = ()


class Out(msgspec.Struct, kw_only=True):
    """Base for response bodies and values passed between layers."""


def given(value: Any, names: tuple[str, ...]) -> list[str]:
    """The fields among `names` that `value` carries (not None, not an empty string)."""
    return [name for name in names if getattr(value, name, None) not in (None, "")]


def anchored(body: str) -> str:
    """`^body$`, also in Python's reading: there `$` matches before a final newline, and `(?!\\n)` refuses that
    (ECMAScript's `$` never did), so the gateway, its document and every client read the pattern alike."""
    return f"^{body}$(?!\\n)"


# Calendar dates that exist, in the years the gateway takes (1900-2200): a pattern a client can check before it sends.
_YEAR = r"(?:19\d\d|2[01]\d\d|2200)"
_LEAP_YEAR = (
    r"(?:19(?:0[48]|[2468][048]|[13579][26])|20(?:[02468][048]|[13579][26])|21(?:0[48]|[2468][048]|[13579][26]))"
)
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))"
)
DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?"
_OFFSET = r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"

# A request's date-time: RFC 3339 with an offset, or a naive wall time read in the request's `time_zone` (else the
# location's). A string on purpose: a number is never a time.
DATE_TIME_PATTERN = anchored(rf"{DATE}[Tt ]{_TIME}{_OFFSET}?")
LocalDateTime = Annotated[
    str,
    msgspec.Meta(
        pattern=DATE_TIME_PATTERN,
        description="RFC 3339 date-time with an offset, or YYYY-MM-DDTHH:MM:SS read in time_zone (years 1900-2200)",
        examples=["2026-12-01T10:00:00", "2026-12-01T10:00:00+11:00"],
    ),
]
# A query bound: a date-time as above, or a date (the whole local day).
BOUND_PATTERN = anchored(rf"{DATE}(?:[Tt ]{_TIME}{_OFFSET}?)?")
# An instant: a date-time with its offset.
INSTANT_PATTERN = anchored(rf"{DATE}[Tt ]{_TIME}{_OFFSET}")

# IANA Area/City names and UTC; `localtime`, `posixrules` and paths would mean the server's own zone.
ZONE_PATTERN = anchored(
    r"(?:UTC|(?:Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)"
    r"(?:/[A-Za-z0-9_+-]{1,30}){1,2})"
)
ZoneName = Annotated[
    str,
    msgspec.Meta(
        pattern=ZONE_PATTERN,
        max_length=64,
        description="IANA Area/City time zone known to the gateway's time zone database",
        examples=["Australia/Melbourne"],
    ),
]

# Control characters (Unicode Cc) are never part of a name; whitespace (what str.isspace() says) alone is no name.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_SPACE = r"\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NAME_PATTERN = anchored(rf"[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*")
# A label the gateway stores (a webhook's description): any text without control characters, which PostgreSQL's text
# columns refuse (NUL) or which would garble a log line.
LABEL_PATTERN = anchored(rf"[^{_CONTROL}]*")
# An address an EMR takes: a dot-atom local part, a host name with a top-level domain (ASCII; 254 characters at most).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = anchored(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")
# Digits with the usual separators, optionally international; whether it is a number is checked with the location's
# country (libphonenumber), which a pattern cannot say.
PHONE_PATTERN = anchored(r"\+?[0-9 ().-]*[0-9][0-9 ().-]*")

Short = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
PersonName = Annotated[
    str,
    msgspec.Meta(
        pattern=NAME_PATTERN,
        max_length=255,
        description="Not blank; no control characters",
        examples=["Alice"],
    ),
]
Email = Annotated[
    str,
    msgspec.Meta(pattern=EMAIL_PATTERN, max_length=254, description="An e-mail address", examples=["ada@example.com"]),
]
Phone = Annotated[
    str,
    msgspec.Meta(
        pattern=PHONE_PATTERN,
        max_length=32,
        description="A phone number: E.164 (+61…) or national, read in the location's country",
        examples=["+61391234567"],
    ),
]

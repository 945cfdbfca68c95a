"""A connection's settings: what the agency chose (tags, calendar mirroring, opt-in fields). Stored as JSON."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec


class CalendarMode(enum.StrEnum):
    OFF = "off"
    APPOINTMENTS = "appointments"  # full appointments on the mapped calendars, linked to the patient's contact
    BUSY = "busy"  # blocked slots only: no contact, no patient data, GHL never offers a time the EMR has taken


class ExtraField(enum.StrEnum):
    """Opt-in contact data beyond name, e-mail and phone (GHL holds PHI only with its paid HIPAA add-on)."""

    DATE_OF_BIRTH = "date_of_birth"


TagPrefix = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=r"^[a-z0-9][a-z0-9_:.-]*$")]


class GhlSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tag_prefix: TagPrefix = "emr:"
    lapsed_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 180
    calendar_mode: CalendarMode = CalendarMode.OFF
    calendars: dict[str, str] = msgspec.field(default_factory=dict)  # EMR practitioner id -> GHL calendar id
    to_notify: bool = False  # GHL's automations on mirrored appointments (off: no reminder storm, no loops)
    history_days: Annotated[int, msgspec.Meta(ge=0, le=3650)] = 30  # older appointments are not mirrored
    extra_fields: list[ExtraField] = msgspec.field(default_factory=list)


def decode_settings(raw: bytes) -> GhlSettings:
    return msgspec.json.decode(raw, type=GhlSettings)


def encode_settings(settings: GhlSettings) -> bytes:
    return msgspec.json.encode(settings)

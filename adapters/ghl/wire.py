"""LeadConnector (GoHighLevel) API v2 bodies, as the v2 OpenAPI files declare them (GHL-docs `apps/contacts.json`,
`apps/locations.json`, `apps/calendars.json`; facts in shared/reference/ghl/destination.md). Only the members the
gateway reads or writes; everything else GHL sends is ignored."""

from __future__ import annotations

from typing import Any

import msgspec

# The `Version` header differs per API (each OpenAPI file declares its own enum).
CONTACTS_VERSION = "2021-07-28"
LOCATIONS_VERSION = "2021-07-28"
CALENDARS_VERSION = "2021-04-15"


class _Wire(msgspec.Struct, rename="camel", omit_defaults=True):
    pass


class Location(_Wire, kw_only=True):
    id: str
    name: str | None = None
    timezone: str | None = None


class LocationBody(_Wire):
    location: Location


class CustomField(_Wire, kw_only=True):
    id: str
    name: str | None = None
    field_key: str | None = None
    data_type: str | None = None
    model: str | None = None


class CustomFieldList(_Wire):
    custom_fields: list[CustomField] = msgspec.field(default_factory=list)


class CustomFieldBody(_Wire):
    custom_field: CustomField


class NewCustomField(_Wire, kw_only=True):
    name: str
    data_type: str
    placeholder: str | None = None
    model: str = "contact"


class FieldValue(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A write: by `id` (or `key`) with `field_value` (snake case, as the spec says; see destination.md §1.3)."""

    id: str
    field_value: str | float | int | list[str]


class ReadFieldValue(msgspec.Struct, kw_only=True):
    """A read: GHL answers `{id, value}`, by id only."""

    id: str | None = None
    value: Any = None


class Contact(_Wire, kw_only=True):
    id: str
    location_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    date_of_birth: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    custom_fields: list[ReadFieldValue] = msgspec.field(default_factory=list)


class ContactBody(_Wire):
    contact: Contact


class MaybeContact(_Wire):
    contact: Contact | None = None


class ContactWrite(_Wire, kw_only=True):
    """`tags` only on the create of a contact the gateway makes (an upsert or PUT with tags replaces the agency's;
    an existing contact's tags go through the tag endpoints); never `gender` (PUT refuses it, upsert drops it)."""

    location_id: str | None = None  # upsert and create only; PUT refuses it
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    date_of_birth: str | None = None
    source: str | None = None
    tags: list[str] | None = None
    custom_fields: list[FieldValue] | None = None


class UpsertAnswer(_Wire, kw_only=True):
    new: bool = False
    contact: Contact
    trace_id: str | None = None


class Tags(_Wire):
    tags: list[str]


class Calendar(_Wire, kw_only=True):
    id: str
    name: str | None = None


class CalendarList(_Wire):
    calendars: list[Calendar] = msgspec.field(default_factory=list)


class Event(_Wire, kw_only=True):
    id: str | None = None
    calendar_id: str | None = None
    contact_id: str | None = None
    title: str | None = None
    appointment_status: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    assigned_user_id: str | None = None


class EventBody(_Wire, kw_only=True):
    """`GET /calendars/events/appointments/{id}`: the spec's example wraps it in `event`."""

    event: Event | None = None
    appointment: Event | None = None

    def found(self) -> Event | None:
        return self.event or self.appointment


class EventList(_Wire):
    events: list[Event] = msgspec.field(default_factory=list)


class AppointmentWrite(_Wire, kw_only=True):
    calendar_id: str | None = None
    location_id: str | None = None
    contact_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    title: str | None = None
    appointment_status: str | None = None
    to_notify: bool = False  # "If set to false, the automations will not run"
    ignore_free_slot_validation: bool = True  # the EMR already decided the slot
    ignore_date_range: bool | None = None


class BlockSlotWrite(_Wire, kw_only=True):
    location_id: str | None = None
    calendar_id: str | None = None
    title: str | None = None
    start_time: str | None = None
    end_time: str | None = None

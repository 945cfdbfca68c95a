"""Cliniko's own JSON shapes, named after the components of its OpenAPI document (reference/cliniko-openapi.yaml).

Response Structs accept the many fields the real API adds (unknown fields are ignored); request Structs leave
unset optional fields out of the body (`UNSET`, `omit_defaults`) so that PATCH only touches what it names and
`{"ends_at": null}` can still be sent on purpose. Ids are strings (`format: int64`). Related records come back as
`{"links": {"self": url}}` only: the id is the last path segment of that url.
"""

from __future__ import annotations

import datetime
import enum

import msgspec
from msgspec import UNSET, UnsetType

# ---------------------------------------------------------------------------------------------- links and envelopes


class LinkRef(msgspec.Struct):
    """`{"self": url}`: the `links` member of every record."""

    self_: str = msgspec.field(name="self")


class Linked(msgspec.Struct):
    """A related record as Cliniko returns it: `{"links": {"self": url}}`."""

    links: LinkRef

    @property
    def id(self) -> str:
        """The related record's id (the last path segment of its url, query string dropped)."""
        return link_id(self.links.self_)


class Links(msgspec.Struct, omit_defaults=True):
    """The `links` of a list envelope; `next` is absent on the last page and `previous` on the first."""

    self_: str = msgspec.field(name="self")
    next: str | None = None
    previous: str | None = None


def link_id(url: str) -> str:
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------- enums


class CancellationReason(enum.IntEnum):
    """`IndividualAppointmentCancel.cancellation_reason` (the request enum; 31 "COVID-19 related" is not in it)."""

    FEELING_BETTER = 10
    CONDITION_WORSE = 20
    SICK = 30
    AWAY = 40
    OTHER = 50
    WORK = 60


CANCELLATION_REASON_DESCRIPTIONS: dict[int, str] = {
    10: "Feeling Better",
    20: "Condition Worse",
    30: "Sick",
    31: "COVID-19 related",
    40: "Away",
    50: "Other",
    60: "Work",
}


class PhoneType(enum.StrEnum):
    FAX = "Fax"
    HOME = "Home"
    MOBILE = "Mobile"
    OTHER = "Other"
    WORK = "Work"


# ---------------------------------------------------------------------------------------------- appointments


class RepeatRule(msgspec.Struct, omit_defaults=True):
    number_of_repeats: int | None = None
    repeat_type: str | None = None
    repeating_interval: int | None = None


class IndividualAppointment(msgspec.Struct, kw_only=True):
    """`components.schemas.IndividualAppointment` (the fields the gateway reads, plus what the emulator serves)."""

    id: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    created_at: datetime.datetime
    updated_at: datetime.datetime
    appointment_type: Linked
    business: Linked
    practitioner: Linked
    patient: Linked
    links: LinkRef
    notes: str | None = None
    patient_name: str | None = None
    cancelled_at: datetime.datetime | None = None
    cancellation_reason: int | None = None
    cancellation_reason_description: str | None = None
    cancellation_note: str | None = None
    archived_at: datetime.datetime | None = None
    deleted_at: datetime.datetime | None = None
    did_not_arrive: bool | None = None
    patient_arrived: bool | None = None
    email_reminder_sent: bool | None = None
    sms_reminder_sent: bool | None = None
    has_patient_appointment_notes: bool | None = None
    online_booking_policy_accepted: bool | None = None
    booking_ip_address: str | None = None
    invoice_status: int | None = None
    treatment_note_status: int | None = None
    telehealth_url: str | None = None
    repeat_rule: RepeatRule | None = None
    repeats: Linked | None = None
    conflicts: Linked | None = None
    attendees: Linked | UnsetType = UNSET
    repeated_from: Linked | UnsetType = UNSET
    patient_case: Linked | UnsetType = UNSET


class IndividualAppointmentCreate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Body of `POST /individual_appointments` (`requestBodies.IndividualAppointment`).

    The document has no `required` list; these five are what Cliniko needs in practice.
    """

    patient_id: str
    practitioner_id: str
    appointment_type_id: str
    business_id: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime | UnsetType = UNSET
    notes: str | UnsetType | None = UNSET
    patient_case_id: str | UnsetType = UNSET
    repeat_rule: RepeatRule | UnsetType | None = UNSET


class IndividualAppointmentUpdate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Body of `PATCH /individual_appointments/{id}`: every field optional; `ends_at=None` recomputes the end."""

    patient_id: str | UnsetType = UNSET
    practitioner_id: str | UnsetType = UNSET
    appointment_type_id: str | UnsetType = UNSET
    business_id: str | UnsetType = UNSET
    starts_at: datetime.datetime | UnsetType = UNSET
    ends_at: datetime.datetime | UnsetType | None = UNSET
    notes: str | UnsetType | None = UNSET
    patient_case_id: str | UnsetType = UNSET
    repeat_rule: RepeatRule | UnsetType | None = UNSET


class IndividualAppointmentCancel(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Body of `PATCH /individual_appointments/{id}/cancel` (answered 204 with no body)."""

    cancellation_reason: CancellationReason
    cancellation_note: str | UnsetType | None = UNSET
    apply_to_repeats: bool | UnsetType = UNSET


class ConflictsExist(msgspec.Struct):
    exist: bool


class Conflicts(msgspec.Struct):
    """`GET /individual_appointments/{id}/conflicts`: `{"conflicts": {"exist": bool}}`."""

    conflicts: ConflictsExist


class IndividualAppointmentList(msgspec.Struct, kw_only=True):
    individual_appointments: list[IndividualAppointment]
    total_entries: int
    links: Links


# ---------------------------------------------------------------------------------------------- patients


class PhoneNumber(msgspec.Struct, kw_only=True):
    """`components.schemas.PhoneNumber` as returned inside a Patient."""

    number: str | None = None
    normalized_number: str | None = None
    phone_type: str | None = None


class PhoneNumberCreate(msgspec.Struct, kw_only=True):
    number: str
    phone_type: PhoneType = PhoneType.MOBILE


class Patient(msgspec.Struct, kw_only=True):
    """`components.schemas.Patient` (the fields the gateway reads)."""

    id: str
    first_name: str
    last_name: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    links: LinkRef
    preferred_first_name: str | None = None
    label: str | None = None
    title: str | None = None
    email: str | None = None
    date_of_birth: datetime.date | None = None
    patient_phone_numbers: list[PhoneNumber] | None = None
    sex: str | None = None
    time_zone: str | None = None
    notes: str | None = None
    archived_at: datetime.datetime | None = None
    deleted_at: datetime.datetime | None = None
    merged_at: datetime.datetime | None = None
    merged_with_patient: Linked | UnsetType = UNSET
    appointments: Linked | UnsetType = UNSET
    latest_booking: Linked | UnsetType = UNSET


class PatientCreate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Body of `POST /patients` (`requestBodies.Patient`)."""

    first_name: str
    last_name: str
    email: str | UnsetType | None = UNSET
    date_of_birth: datetime.date | UnsetType | None = UNSET
    patient_phone_numbers: list[PhoneNumberCreate] | UnsetType = UNSET
    title: str | UnsetType | None = UNSET
    preferred_first_name: str | UnsetType | None = UNSET
    sex: str | UnsetType | None = UNSET
    time_zone: str | UnsetType | None = UNSET
    notes: str | UnsetType | None = UNSET


class PatientList(msgspec.Struct, kw_only=True):
    patients: list[Patient]
    total_entries: int
    links: Links


# ---------------------------------------------------------------------------------------------- catalog


class Practitioner(msgspec.Struct, kw_only=True):
    """`components.schemas.Practitioner`; the e-mail lives on the linked `user`."""

    id: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    links: LinkRef
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    designation: str | None = None
    display_name: str | None = None
    label: str | None = None
    description: str | None = None
    active: bool | None = None
    show_in_online_bookings: bool | None = None
    user: Linked | UnsetType = UNSET
    appointment_types: Linked | UnsetType = UNSET
    appointments: Linked | UnsetType = UNSET


class PractitionerList(msgspec.Struct, kw_only=True):
    practitioners: list[Practitioner]
    total_entries: int
    links: Links


class User(msgspec.Struct, kw_only=True):
    """`components.schemas.User`: a login; practitioners link to theirs (that is where the e-mail is)."""

    id: str
    first_name: str
    last_name: str
    email: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    links: LinkRef
    time_zone: str | None = None
    time_zone_identifier: str | None = None
    title: str | None = None
    active: bool | None = None
    user_active: bool | None = None
    role: str | None = None
    phone_numbers: list[PhoneNumber] | None = None


class UserList(msgspec.Struct, kw_only=True):
    users: list[User]
    total_entries: int
    links: Links


class AppointmentType(msgspec.Struct, kw_only=True):
    """`components.schemas.AppointmentType` (a bookable service)."""

    id: str
    name: str
    duration_in_minutes: int
    created_at: datetime.datetime
    updated_at: datetime.datetime
    links: LinkRef
    category: str | None = None
    color: str | None = None
    description: str | None = None
    max_attendees: int | None = None
    show_in_online_bookings: bool | None = None
    telehealth_enabled: bool | None = None
    online_bookings_lead_time_hours: int | None = None
    archived_at: datetime.datetime | None = None
    practitioners: Linked | UnsetType = UNSET


class AppointmentTypeList(msgspec.Struct, kw_only=True):
    appointment_types: list[AppointmentType]
    total_entries: int
    links: Links


class Business(msgspec.Struct, kw_only=True):
    """`components.schemas.Business` (a location). `time_zone_identifier` is the IANA zone, e.g. Australia/Melbourne."""

    id: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    links: LinkRef
    business_name: str | None = None
    display_name: str | None = None
    label: str | None = None
    address_1: str | None = None
    address_2: str | None = None
    city: str | None = None
    state: str | None = None
    post_code: str | None = None
    country: str | None = None
    country_code: str | None = None
    time_zone: str | None = None
    time_zone_identifier: str | None = None
    show_in_online_bookings: bool | None = None
    appointment_type_ids: list[str] | None = None
    archived_at: datetime.datetime | None = None
    deleted_at: datetime.datetime | None = None
    practitioners: Linked | UnsetType = UNSET
    appointments: Linked | UnsetType = UNSET


class BusinessList(msgspec.Struct, kw_only=True):
    businesses: list[Business]
    total_entries: int
    links: Links


# ---------------------------------------------------------------------------------------------- availability


class AvailableTime(msgspec.Struct):
    """A free start time, UTC; the end is the start plus the appointment type's duration."""

    appointment_start: datetime.datetime


class AvailableTimeList(msgspec.Struct, kw_only=True):
    available_times: list[AvailableTime]
    total_entries: int
    links: Links


class NextAvailableTime(msgspec.Struct, kw_only=True):
    """`…/next_available_time`. With nothing free in the window `appointment_start` is absent (UNCONFIRMED)."""

    links: LinkRef
    total_entries: int = 1
    appointment_start: datetime.datetime | UnsetType = UNSET


# ---------------------------------------------------------------------------------------------- errors


class ValidationError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """422 body: `{"message": "Validation Failed", "errors": {"<field>": "<message>"}}`; `errors` may be absent."""

    message: str
    errors: dict[str, str | list[str] | None] | None = None


class NotFoundError(msgspec.Struct):
    """404 body for an unknown record on a known route: `{"status": "404", "error": "Not Found"}`."""

    status: str
    error: str

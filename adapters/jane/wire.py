"""Jane's JSON as the staff web app and the public booking pages exchange it (only the fields the gateway uses).

Decoding ignores unknown fields: these endpoints are unofficial and Jane adds fields freely. Ids are integers on the
wire. Times carry the clinic's UTC offset (`2026-06-09T21:35:03-04:00`). A treatment's length is `scheduled_duration`
in minutes on `GET /api/v2/treatments` (live probe and a live-built client, evidence-2026-11 §4.2); the booking page's
`treatment_duration` (seconds) is the fallback. Openings and appointments carry `duration` in seconds.
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec

MISSING_DURATION = "Object missing required field `scheduled_duration`"


class Wire(msgspec.Struct, kw_only=True):
    pass


# ------------------------------------------------------------------------------------------------ public reads


class Location(Wire):
    id: int
    name: str
    time_zone: str | None = None
    full_address: str | None = None


class StaffMember(Wire):
    """`all_treatment_ids` is what the public list carries; `treatment_ids` (the booking page's blob) is the fallback.
    None means the member is absent, which `locations verify` reports."""

    id: int
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    professional_name: str | None = None
    email: str | None = None
    location_ids: list[int] = msgspec.field(default_factory=list)
    all_treatment_ids: list[int] | None = None
    treatment_ids: list[int] | None = None

    def offered(self) -> list[int]:
        if self.all_treatment_ids is not None:
            return self.all_treatment_ids
        return self.treatment_ids or []


class Treatment(Wire):
    """Either length field is accepted; one of them is required (a treatment without a length cannot be booked)."""

    id: int
    name: str
    scheduled_duration: int | None = None  # minutes
    treatment_duration: int | None = None  # seconds
    discipline_id: int | None = None
    staff_member_id: int | None = None
    call_to_book: bool = False
    book_online: bool = True

    def __post_init__(self) -> None:
        if self.scheduled_duration is None and self.treatment_duration is None:
            raise ValueError(MISSING_DURATION)

    @property
    def minutes(self) -> int:
        if self.scheduled_duration is not None:
            return self.scheduled_duration
        return (self.treatment_duration or 0) // 60


class Opening(Wire):
    staff_member_id: int
    location_id: int
    treatment_id: int
    duration: int  # seconds
    start_at: datetime
    end_at: datetime
    room_id: int | None = None
    parent_appointment_id: int | None = None
    status: str | None = None


class Shift(Wire):
    start_at: datetime
    end_at: datetime
    call_to_book: bool = False


class StaffOpenings(Wire):
    id: int
    full_name: str | None = None
    first_date: date | None = None
    openings: list[Opening] = msgspec.field(default_factory=list)
    shifts: list[Shift] = msgspec.field(default_factory=list)


# ------------------------------------------------------------------------------------------------ patients


class Patient(Wire):
    id: int
    first_name: str
    last_name: str
    name: str | None = None
    preferred_name: str | None = None
    email: str | None = None
    dob: date | None = None
    mobile_phone: str | None = None
    home_phone: str | None = None
    work_phone: str | None = None
    country: str | None = None
    member_since: date | None = None
    updated_at: datetime | None = None


class PatientLookup(Wire):
    q: str
    limit: int
    autocomplete: bool
    browser_tab_id: str


class NewPatient(Wire, omit_defaults=True):
    first_name: str
    last_name: str
    email: str | None = None
    mobile_phone: str | None = None
    dob: date | None = None


class PatientCreate(Wire):
    patient: NewPatient
    browser_tab_id: str


# ------------------------------------------------------------------------------------------------ appointments


class Appointment(Wire):
    id: int
    state: str  # reserved | booked | arrived | no_show | cancelled | archived
    start_at: datetime
    end_at: datetime
    staff_member_id: int
    location_id: int
    treatment_id: int | None = None
    patient_id: int | None = None
    booked: bool = False
    booked_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancelled_reason: str | None = None
    no_show_at: datetime | None = None
    arrived_at: datetime | None = None
    checked_in_at: datetime | None = None
    archived_at: datetime | None = None
    notes_text: str | None = None
    booking_type: str | None = None
    duration: int | None = None  # seconds
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Provisional(Wire):
    location_id: int
    start_at: datetime
    end_at: datetime
    staff_member_id: int
    break_: bool = msgspec.field(default=False, name="break")
    room_id: int | None = None


class ProvisionalCreate(Wire, kw_only=True):
    """Step one: the hold Jane's calendar makes the moment a slot is clicked (`book: false`)."""

    appointment: Provisional
    book: bool = False
    browser_tab_id: str


Record = dict[str, msgspec.Raw]  # a JSON object kept exactly as Jane sent it, member by member


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A hold: read for the adapter, and kept exactly as Jane sent it for the book step to hand back."""

    record: Appointment
    raw: msgspec.Raw


class BookRequest(Wire, kw_only=True):
    """Step two: the whole reserved record as Jane returned it, with treatment and patient set; the top-level
    `book: true` flips it to booked (the record itself still says `state: reserved`, as in the live capture)."""

    book: bool = True
    appointment: Record
    browser_tab_id: str


def booking(
    reserved: msgspec.Raw, *, treatment_id: int, patient_id: int, patient: msgspec.Raw, notes: str | None
) -> Record:
    """The reserved record with the chosen treatment and patient (id and the patient's own record) set."""
    record = msgspec.json.decode(reserved, type=Record)
    record["treatment_id"] = msgspec.Raw(msgspec.json.encode(treatment_id))
    record["patient_id"] = msgspec.Raw(msgspec.json.encode(patient_id))
    record["patient"] = patient
    if notes is not None:
        record["notes_text"] = msgspec.Raw(msgspec.json.encode(notes))
    return record


class Move(Wire, omit_defaults=True):
    start_at: datetime
    end_at: datetime
    staff_member_id: int
    notes_text: str | None = None


class MoveRequest(Wire, kw_only=True):
    appointment: Move
    browser_tab_id: str


class CancelRequest(Wire, kw_only=True):
    cancelled_reason: str
    with_notifications: bool = False
    send_wlns: bool = False
    browser_tab_id: str


class ErrorBody(Wire):
    error: str | None = None
    errors: dict[str, list[str]] | None = None

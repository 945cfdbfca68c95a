"""Appointments in FHIR R4 vocabulary, independent of any EMR."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from schemas.common import LocalDateTime, Model, Out, ZoneName
from schemas.refs import PatientRef, PractitionerRef, ServiceRef

Notes = Annotated[str, msgspec.Meta(max_length=4000)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class AppointmentStatus(enum.StrEnum):
    """FHIR R4 Appointment.status values (the subset the EMRs can express plus the rest for completeness)."""

    PROPOSED = "proposed"
    PENDING = "pending"
    BOOKED = "booked"
    ARRIVED = "arrived"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"
    CHECKED_IN = "checked-in"
    WAITLIST = "waitlist"


class CancelReason(enum.StrEnum):
    """Why an appointment was cancelled; adapters map these onto the EMR's own codes."""

    FEELING_BETTER = "feeling_better"
    CONDITION_WORSE = "condition_worse"
    SICK = "sick"
    AWAY = "away"
    WORK = "work"
    OTHER = "other"


class Appointment(Out):
    """An appointment as every caller sees it, whatever EMR holds it."""

    id: str
    status: AppointmentStatus
    start: datetime
    end: datetime
    time_zone: str
    patient_id: str
    practitioner_id: str
    service_id: str
    location_id: str
    notes: str | None = None
    cancel_reason: CancelReason | None = None
    cancel_note: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    emr: str = ""
    emr_location_id: str | None = None
    replaces_id: str | None = None
    # The gateway operation that booked it, where the EMR keeps the gateway's marker in its notes: a caller told
    # `504 emr_outcome_unknown` with an `operation_id` recognises the appointment that operation made.
    operation_id: str | None = None


class BookAppointment(Model):
    """Body of POST /v1/appointments. Times need an offset, or are read in `time_zone` (else the location's)."""

    examples: ClassVar[tuple[dict[str, Any], ...]] = (
        {
            "practitioner": {"name": "Alice Nguyen"},
            "service": {"name": "Standard Consultation"},
            "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
            "start": "2026-12-01T10:00:00",
            "time_zone": "Australia/Melbourne",
            "notes": "First visit",
        },
    )

    practitioner: PractitionerRef
    service: ServiceRef
    patient: PatientRef
    start: LocalDateTime
    end: LocalDateTime | None = None
    time_zone: ZoneName | None = None
    notes: Notes | None = None


class RescheduleAppointment(Model):
    """Body of PATCH /v1/appointments/{id}: a new start (and end) and/or new notes."""

    at_least_one: ClassVar[tuple[str, ...]] = ("start", "end", "practitioner", "notes")
    examples: ClassVar[tuple[dict[str, Any], ...]] = (
        {"start": "2026-12-01T11:00:00+11:00"},
        {"notes": "Bring the referral letter"},
    )

    start: LocalDateTime | None = None
    end: LocalDateTime | None = None
    time_zone: ZoneName | None = None
    practitioner: PractitionerRef | None = None
    notes: Notes | None = None


class CancelAppointment(Model):
    """Body of POST /v1/appointments/{id}/cancel."""

    examples: ClassVar[tuple[dict[str, Any], ...]] = ({"reason": "sick", "note": "Called in sick"},)

    reason: CancelReason = CancelReason.OTHER
    note: Notes | None = None


class AppointmentList(Out):
    items: list[Appointment]

"""What a ClinicSync request asks for, in the gateway's own terms: the bridge between their bodies and our commands."""

from __future__ import annotations

from datetime import datetime

from gateway.usecases.appointments import Booking
from schemas.appointments import CancelReason
from schemas.common import Out
from schemas.refs import PatientRef, PractitionerRef, ServiceRef


class LocationRef(Out):
    """A location the caller named; it must be the key's own location (else 404), since a key reaches one."""

    id: str | None = None
    name: str | None = None


class Target(Out):
    """An appointment: `ref` is an external (GoHighLevel) id we linked at booking, or the EMR's own id; or, with
    `patient`, that patient's next booked appointment."""

    ref: str | None = None
    patient: PatientRef | None = None


class BookIntent(Out):
    booking: Booking
    external_id: str | None = None
    location: LocationRef | None = None
    provisional: bool = False  # validate and resolve everything, write nothing (Jane's createAppt)


class RescheduleIntent(Out):
    target: Target
    start: datetime
    end: datetime | None = None
    time_zone: str | None = None
    practitioner: PractitionerRef | None = None
    location: LocationRef | None = None


class CancelIntent(Out):
    target: Target
    reason: CancelReason = CancelReason.OTHER
    note: str | None = None


class CatalogIntent(Out):
    location: LocationRef | None = None


class AvailabilityIntent(Out):
    service: ServiceRef
    practitioner: PractitionerRef | None = None  # None: every practitioner who offers the service
    start_from: datetime | None = None  # None: now
    start_to: datetime | None = None  # None: start_from + days
    days: int = 7
    time_zone: str | None = None
    location: LocationRef | None = None
    earliest_only: bool = False


class PatientIntent(Out):
    ref: PatientRef
    create: bool = True


class PatientAppointmentsIntent(Out):
    ref: PatientRef
    upcoming_only: bool = False


Intent = (
    BookIntent
    | RescheduleIntent
    | CancelIntent
    | CatalogIntent
    | AvailabilityIntent
    | PatientIntent
    | PatientAppointmentsIntent
)

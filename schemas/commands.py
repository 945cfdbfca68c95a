"""Commands the gateway hands an adapter once every reference is resolved to an EMR id."""

from __future__ import annotations

from datetime import date, datetime

from schemas.appointments import CancelReason
from schemas.common import Out


class BookCommand(Out):
    patient_id: str
    practitioner_id: str
    service_id: str
    start: datetime
    end: datetime | None = None
    notes: str | None = None
    # The gateway's operation this booking belongs to: written as a marker where the EMR keeps free text on an
    # appointment, so a create whose answer was lost is recognised as this one and no other.
    operation_id: str | None = None


class RescheduleCommand(Out):
    appointment_id: str
    start: datetime | None = None
    end: datetime | None = None
    practitioner_id: str | None = None
    notes: str | None = None


class CancelCommand(Out):
    appointment_id: str
    reason: CancelReason
    note: str | None = None
    patient_id: str | None = None


class AppointmentQuery(Out):
    patient_id: str | None = None
    practitioner_id: str | None = None
    start_from: datetime | None = None
    start_to: datetime | None = None


class AvailabilityQuery(Out):
    practitioner_id: str
    service_id: str
    start_from: datetime
    start_to: datetime


class NewPatient(Out):
    first_name: str
    last_name: str
    email: str | None = None
    phone: str | None = None
    date_of_birth: date | None = None

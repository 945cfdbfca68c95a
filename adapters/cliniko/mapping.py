"""Cliniko wire Structs <-> the normalized schemas. Pure functions: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from adapters import phones
from adapters.base import AdapterContext
from adapters.cliniko import wire
from adapters.markers import operation_of, with_marker, without_marker
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.catalog import Location, Practitioner, Service
from schemas.commands import BookCommand, NewPatient
from schemas.patients import Patient

EMR_SLUG = "cliniko"

CANCEL_REASON_CODES: dict[CancelReason, wire.CancellationReason] = {
    CancelReason.FEELING_BETTER: wire.CancellationReason.FEELING_BETTER,
    CancelReason.CONDITION_WORSE: wire.CancellationReason.CONDITION_WORSE,
    CancelReason.SICK: wire.CancellationReason.SICK,
    CancelReason.AWAY: wire.CancellationReason.AWAY,
    CancelReason.OTHER: wire.CancellationReason.OTHER,
    CancelReason.WORK: wire.CancellationReason.WORK,
}
_REASON_OF_CODE = {int(code): reason for reason, code in CANCEL_REASON_CODES.items()}
_REASON_OF_CODE[31] = CancelReason.SICK  # "COVID-19 related": older appointments may carry it

# Shard prefix -> the phone region most numbers in that shard belong to (a fallback when the business has no country).
_SHARD_REGIONS = {"au": "AU", "uk": "GB", "ca": "CA", "us": "US", "nz": "NZ"}


def utc(moment: datetime, time_zone: str) -> datetime:
    """An aware UTC instant; a naive time is read in the location's zone, never the server's."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(time_zone))
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """UTC with `Z`, whole seconds: the form Cliniko's `q[]` filters take."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cancel_code(reason: CancelReason) -> wire.CancellationReason:
    return CANCEL_REASON_CODES[reason]


def cancel_reason_of(code: int | None) -> CancelReason | None:
    if code is None:
        return None
    return _REASON_OF_CODE.get(code, CancelReason.OTHER)


def status_of(appointment: wire.IndividualAppointment) -> AppointmentStatus:
    """Archived or deleted appointments are gone for the caller: they read as cancelled."""
    if appointment.cancelled_at or appointment.archived_at or appointment.deleted_at:
        return AppointmentStatus.CANCELLED
    if appointment.did_not_arrive:
        return AppointmentStatus.NOSHOW
    if appointment.patient_arrived:
        return AppointmentStatus.ARRIVED
    return AppointmentStatus.BOOKED


def appointment_of(appointment: wire.IndividualAppointment, context: AdapterContext) -> Appointment:
    cancelled = appointment.cancelled_at is not None
    return Appointment(
        id=appointment.id,
        status=status_of(appointment),
        start=appointment.starts_at.astimezone(UTC),
        end=appointment.ends_at.astimezone(UTC),
        time_zone=context.time_zone,
        patient_id=appointment.patient.id,
        practitioner_id=appointment.practitioner.id,
        service_id=appointment.appointment_type.id,
        location_id=context.location_id,
        notes=without_marker(appointment.notes),
        operation_id=operation_of(appointment.notes),
        cancel_reason=cancel_reason_of(appointment.cancellation_reason) if cancelled else None,
        cancel_note=appointment.cancellation_note if cancelled else None,
        created_at=appointment.created_at.astimezone(UTC),
        updated_at=appointment.updated_at.astimezone(UTC),
        emr=EMR_SLUG,
        emr_location_id=appointment.business.id,
    )


def book_body(command: BookCommand, business_id: str, time_zone: str) -> wire.IndividualAppointmentCreate:
    """`ends_at` only when the caller gave one: otherwise Cliniko derives it from the appointment type."""
    body = wire.IndividualAppointmentCreate(
        patient_id=command.patient_id,
        practitioner_id=command.practitioner_id,
        appointment_type_id=command.service_id,
        business_id=business_id,
        starts_at=utc(command.start, time_zone),
    )
    if command.end is not None:
        body.ends_at = utc(command.end, time_zone)
    notes = with_marker(command.notes, command.operation_id)
    if notes is not None:
        body.notes = notes
    return body


def region_of_shard(shard: str) -> str | None:
    return _SHARD_REGIONS.get(shard[:2].lower())


def e164(phone: wire.PhoneNumber, region: str | None) -> str | None:
    """E.164 when the number parses (in the location's region for national formats), else Cliniko's own form."""
    for candidate in (phone.number, phone.normalized_number):
        if (number := phones.e164(candidate, region)) is not None:
            return number
    return phone.normalized_number or phone.number


def patient_of(patient: wire.Patient, region: str | None) -> Patient:
    phones: list[str] = []
    for phone in patient.patient_phone_numbers or ():
        number = e164(phone, region)
        if number and number not in phones:
            phones.append(number)
    return Patient(
        id=patient.id,
        first_name=patient.first_name,
        last_name=patient.last_name,
        email=patient.email or None,
        phones=phones,
        date_of_birth=patient.date_of_birth,
        created_at=patient.created_at.astimezone(UTC),
        updated_at=patient.updated_at.astimezone(UTC),
    )


def new_patient_body(patient: NewPatient) -> wire.PatientCreate:
    body = wire.PatientCreate(first_name=patient.first_name, last_name=patient.last_name)
    if patient.email is not None:
        body.email = patient.email
    if patient.date_of_birth is not None:
        body.date_of_birth = patient.date_of_birth
    if patient.phone:
        body.patient_phone_numbers = [wire.PhoneNumberCreate(number=patient.phone)]
    return body


def practitioner_of(practitioner: wire.Practitioner, email: str | None) -> Practitioner:
    first = practitioner.first_name or None
    last = practitioner.last_name or None
    name = practitioner.display_name or practitioner.label or " ".join(p for p in (first, last) if p) or practitioner.id
    return Practitioner(
        id=practitioner.id,
        name=name,
        first_name=first,
        last_name=last,
        email=email,
        active=practitioner.active is not False,
    )


def service_of(appointment_type: wire.AppointmentType) -> Service:
    return Service(
        id=appointment_type.id,
        name=appointment_type.name,
        duration_minutes=appointment_type.duration_in_minutes,
        category=appointment_type.category or None,
    )


def location_of(business: wire.Business) -> Location:
    lines = [business.address_1, business.address_2, business.city, business.state, business.post_code]
    address = ", ".join(part for part in lines if part) or None
    return Location(
        id=business.id,
        name=business.display_name or business.business_name or business.label or business.id,
        time_zone=business.time_zone_identifier,
        address=address,
    )

"""Jane records <-> the normalized contract: states, cancel reasons, phones, times in the clinic's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from adapters import phones
from adapters.base import AdapterContext
from adapters.jane import wire
from adapters.markers import operation_of, without_marker
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.catalog import Location, Practitioner, Service
from schemas.patients import Patient

EMR = "jane"

# Jane's `cancelled_reason` is free text; the gateway writes "<label>" or "<label>: <note>" and reads it back.
REASON_LABELS = {
    CancelReason.FEELING_BETTER: "Feeling better",
    CancelReason.CONDITION_WORSE: "Condition worse",
    CancelReason.SICK: "Sick",
    CancelReason.AWAY: "Away",
    CancelReason.WORK: "Work",
    CancelReason.OTHER: "Other",
}
_LABEL_REASONS = {label.lower(): reason for reason, label in REASON_LABELS.items()}


def utc(moment: datetime, time_zone: str) -> datetime:
    """A naive time is wall time in the location's zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(time_zone))
    return moment.astimezone(UTC)


def local(moment: datetime, time_zone: str) -> datetime:
    """What Jane expects on the wire: the clinic's wall time with its offset, to the second."""
    return utc(moment, time_zone).astimezone(ZoneInfo(time_zone)).replace(microsecond=0)


def cancel_text(reason: CancelReason, note: str | None) -> str:
    label = REASON_LABELS[reason]
    return f"{label}: {note}" if note else label


def cancel_reason_of(text: str | None) -> tuple[CancelReason | None, str | None]:
    if not text:
        return None, None
    head, sep, rest = text.partition(":")
    reason = _LABEL_REASONS.get(head.strip().lower())
    if reason is None:
        return CancelReason.OTHER, text
    return reason, (rest.strip() or None) if sep else None


def status_of(appointment: wire.Appointment) -> AppointmentStatus:
    match appointment.state:
        case "reserved":
            return AppointmentStatus.PENDING
        case "cancelled" | "archived":
            return AppointmentStatus.CANCELLED
        case "no_show":
            return AppointmentStatus.NOSHOW
        case "arrived":
            return AppointmentStatus.ARRIVED
        case _:
            return AppointmentStatus.CHECKED_IN if appointment.checked_in_at else AppointmentStatus.BOOKED


def appointment_of(appointment: wire.Appointment, context: AdapterContext) -> Appointment:
    reason, note = cancel_reason_of(appointment.cancelled_reason) if appointment.state == "cancelled" else (None, None)
    return Appointment(
        id=str(appointment.id),
        status=status_of(appointment),
        start=appointment.start_at.astimezone(UTC),
        end=appointment.end_at.astimezone(UTC),
        time_zone=context.time_zone,
        patient_id=str(appointment.patient_id) if appointment.patient_id is not None else "",
        practitioner_id=str(appointment.staff_member_id),
        service_id=str(appointment.treatment_id) if appointment.treatment_id is not None else "",
        location_id=context.location_id,
        notes=without_marker(appointment.notes_text),
        operation_id=operation_of(appointment.notes_text),
        cancel_reason=reason,
        cancel_note=note,
        created_at=_utc_or_none(appointment.created_at),
        updated_at=_utc_or_none(appointment.updated_at),
        emr=EMR,
        emr_location_id=str(appointment.location_id),
    )


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def e164(number: str | None, region: str) -> str | None:
    return phones.e164(number, region)


def patient_of(patient: wire.Patient, region: str) -> Patient:
    phones: list[str] = []
    for number in (patient.mobile_phone, patient.home_phone, patient.work_phone):
        normalized = e164(number, (patient.country or region).upper())
        if normalized and normalized not in phones:
            phones.append(normalized)
    return Patient(
        id=str(patient.id),
        first_name=patient.first_name,
        last_name=patient.last_name,
        email=patient.email or None,
        phones=phones,
        date_of_birth=patient.dob,
        updated_at=_utc_or_none(patient.updated_at),
    )


def staff_name(staff: wire.StaffMember) -> str:
    """`full_name` is optional on the public list (types.ts): `professional_name`, then first and last name."""
    parts = " ".join(n.strip() for n in (staff.first_name, staff.last_name) if n and n.strip())
    return staff.full_name or staff.professional_name or parts or f"Staff member {staff.id}"


def practitioner_of(staff: wire.StaffMember) -> Practitioner:
    return Practitioner(
        id=str(staff.id),
        name=staff_name(staff),
        first_name=staff.first_name,
        last_name=staff.last_name,
        email=staff.email or None,
    )


def service_of(treatment: wire.Treatment, staff: list[wire.StaffMember]) -> Service:
    """Practitioners are the staff offering the treatment (`all_treatment_ids`, else `treatment_ids`) and the staff
    member a staff-scoped treatment belongs to (`staff_member_id`), among `staff` (this location's)."""
    linked = [str(s.id) for s in staff if treatment.id in s.offered() or s.id == treatment.staff_member_id]
    return Service(
        id=str(treatment.id),
        name=treatment.name,
        duration_minutes=treatment.minutes,
        category=str(treatment.discipline_id) if treatment.discipline_id is not None else None,
        practitioner_ids=linked,
    )


def location_of(location: wire.Location) -> Location:
    return Location(
        id=str(location.id), name=location.name, time_zone=location.time_zone, address=location.full_address
    )

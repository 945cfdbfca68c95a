"""SimplePractice JSON:API resources <-> the normalized schemas. Pure functions: no I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers

from adapters import phones
from adapters.base import AdapterContext
from adapters.markers import operation_of, without_marker
from adapters.simplepractice import wire
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.catalog import Location, Practitioner, Service
from schemas.patients import Patient

EMR_SLUG = "simplepractice"
CLIENT_APPOINTMENT = "appointments"  # not `nonClientAppointments` (breaks, blocks) or `externalAppointments`
DEFAULT_REGION = "US"  # SimplePractice serves US practices; numbers with a `+` keep their own country

# `attendanceStatus`, lower-cased with everything but letters removed (the web app shows "Show", "No Show",
# "Late Canceled", "Canceled", "Clinician Canceled"; the wire spelling is UNCONFIRMED, so spellings are folded).
_STATUSES = {
    "show": AppointmentStatus.ARRIVED,
    "attended": AppointmentStatus.ARRIVED,
    "arrived": AppointmentStatus.ARRIVED,
    "noshow": AppointmentStatus.NOSHOW,
    "canceled": AppointmentStatus.CANCELLED,
    "cancelled": AppointmentStatus.CANCELLED,
    "latecanceled": AppointmentStatus.CANCELLED,
    "latecancelled": AppointmentStatus.CANCELLED,
    "latecancel": AppointmentStatus.CANCELLED,
    "cliniciancanceled": AppointmentStatus.CANCELLED,
    "cliniciancancelled": AppointmentStatus.CANCELLED,
}

REASON_LABELS = {
    CancelReason.FEELING_BETTER: "Feeling better",
    CancelReason.CONDITION_WORSE: "Condition worse",
    CancelReason.SICK: "Sick",
    CancelReason.AWAY: "Away",
    CancelReason.WORK: "Work",
    CancelReason.OTHER: "Other",
}
_REASON_OF_LABEL = {label.lower(): reason for reason, label in REASON_LABELS.items()}


def utc(moment: datetime, time_zone: str) -> datetime:
    """An aware UTC instant; a naive time is read in the location's zone, never the server's."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(time_zone))
    return moment.astimezone(UTC)


def local(moment: datetime, time_zone: str) -> datetime:
    """The instant as the location's wall time with its offset: how SimplePractice writes times."""
    return utc(moment, time_zone).astimezone(ZoneInfo(time_zone))


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_of(attendance: str | None) -> AppointmentStatus:
    key = re.sub(r"[^a-z]", "", (attendance or "").lower())
    return _STATUSES.get(key, AppointmentStatus.BOOKED)


def cancel_text(reason: CancelReason, note: str | None) -> str:
    """`cancelReason` is free text in SimplePractice: our reason's label, then the caller's note."""
    label = REASON_LABELS[reason]
    return f"{label}: {note}" if note else label


def parse_cancel_text(text: str | None) -> tuple[CancelReason | None, str | None]:
    if not text:
        return None, None
    label, sep, note = text.partition(": ")
    reason = _REASON_OF_LABEL.get(label.strip().lower())
    if reason is None:
        return CancelReason.OTHER, text
    return reason, (note if sep else None)


def id_of(value: str | int | None) -> str | None:
    return None if value is None or value == "" else str(value)


def clinician_of(appointment: wire.Appointment) -> str | None:
    clinician = id_of(appointment.attributes.clinicianId)
    rel = appointment.relationships.clinician
    if clinician is None and rel is not None and rel.data is not None:
        clinician = rel.data.id
    return clinician


def office_of(appointment: wire.Appointment) -> str | None:
    office = id_of(appointment.attributes.officeId)
    rel = appointment.relationships.office
    if office is None and rel is not None and rel.data is not None:
        office = rel.data.id
    return office


def client_of(appointment: wire.Appointment) -> str | None:
    rel = appointment.relationships.client
    return rel.data.id if rel is not None and rel.data is not None else None


def code_of(appointment: wire.Appointment) -> str | None:
    codes = appointment.attributes.cptCodes or []
    return codes[0].code if codes else None


def is_whole(appointment: wire.Appointment) -> bool:
    """Whether a write's answer says everything verification compares: its instants, clinician and client."""
    return (
        appointment.attributes.endTime is not None
        and clinician_of(appointment) is not None
        and client_of(appointment) is not None
    )


def span_of(appointment: wire.Appointment) -> tuple[datetime, datetime]:
    a = appointment.attributes
    start = a.startTime.astimezone(UTC)
    if a.endTime is not None:
        return start, a.endTime.astimezone(UTC)
    return start, start + timedelta(minutes=a.duration or 0)


def appointment_of(appointment: wire.Appointment, context: AdapterContext) -> Appointment:
    a = appointment.attributes
    status = status_of(a.attendanceStatus)
    reason, note = parse_cancel_text(a.cancelReason) if status is AppointmentStatus.CANCELLED else (None, None)
    start, end = span_of(appointment)
    return Appointment(
        id=appointment.id,
        status=status,
        start=start,
        end=end,
        time_zone=context.time_zone,
        patient_id=client_of(appointment) or "",
        practitioner_id=clinician_of(appointment) or "",
        service_id=code_of(appointment) or "",
        location_id=context.location_id,
        notes=without_marker(a.memo),
        cancel_reason=reason,
        cancel_note=note,
        created_at=a.createdAt.astimezone(UTC) if a.createdAt else None,
        updated_at=a.updatedAt.astimezone(UTC) if a.updatedAt else None,
        emr=EMR_SLUG,
        emr_location_id=office_of(appointment),
        operation_id=operation_of(a.memo),
    )


def e164(number: str) -> str | None:
    return phones.e164(number, DEFAULT_REGION)


def national_digits(number: str) -> str:
    """The digits a person types into the client search (no country code): `+12125550147` -> `2125550147`."""
    try:
        return str(phonenumbers.parse(number, DEFAULT_REGION).national_number)
    except phonenumbers.NumberParseException:
        return "".join(ch for ch in number if ch.isdigit())


def patient_of(client: wire.Client) -> Patient:
    a = client.attributes
    emails = [e.email for e in a.emails or [] if e.email]
    phones: list[str] = []
    for phone in a.phones or []:
        normalized = e164(phone.number)
        if normalized and normalized not in phones:
            phones.append(normalized)
    return Patient(
        id=client.id,
        first_name=a.firstName,
        last_name=a.lastName,
        email=emails[0] if emails else None,
        phones=phones,
        date_of_birth=a.birthDate,
        created_at=a.createdAt.astimezone(UTC) if a.createdAt else None,
        updated_at=a.updatedAt.astimezone(UTC) if a.updatedAt else None,
    )


def practitioner_of(member: wire.TeamMember) -> Practitioner:
    a = member.attributes
    return Practitioner(
        id=member.id,
        name=f"{a.firstName} {a.lastName}".strip(),
        first_name=a.firstName,
        last_name=a.lastName,
        email=a.email,
        active=a.active is None or wire.as_bool(a.active),
    )


def duration_of(code: wire.CptCode) -> int:
    value = code.attributes.duration
    return int(value) if isinstance(value, int) or value.strip().isdigit() else 0


def service_id_of(code: wire.CptCode) -> str:
    """The CPT code itself (appointments carry codes, not ids); the record id if SimplePractice omits the code."""
    return code.attributes.code or code.id


def service_of(code: wire.CptCode) -> Service:
    return Service(
        id=service_id_of(code),
        name=code.attributes.description,
        duration_minutes=duration_of(code),
        code=code.attributes.code,
    )


def location_of(office: wire.Office) -> Location:
    """Offices carry no time zone (the practice's is in the portal's `environment`): the location's own is used,
    and `locations add` asks for `--time-zone` rather than guessing one."""
    a = office.attributes
    line = ", ".join(part for part in (a.street, a.city, a.state, a.zip) if part)
    return Location(id=office.id, name=a.name, time_zone=None, address=line or None)

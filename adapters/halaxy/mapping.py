"""Halaxy's FHIR resources <-> the gateway's schemas. Pure functions: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from adapters.errors import ContractChanged
from adapters.fhir import mapping as fhir
from adapters.fhir import wire
from adapters.halaxy import wire as hx
from adapters.markers import operation_of, without_marker
from schemas.appointments import Appointment, AppointmentStatus
from schemas.catalog import Location, Practitioner, Service
from schemas.patients import Patient

FHIR_STATUSES = {s.value: s for s in AppointmentStatus}
MINUTE_UNITS = frozenset({"min", "minute", "minutes", "mins"})

# The same reading as FHIR's (the adapter calls these through this module): a naive appointment time is in the
# clinic's zone; a zone-less `meta.lastUpdated` (FHIR requires a zone on an instant) is read as UTC.
utc = fhir.utc
updated_at = fhir.updated_at
official_name = fhir.official_name


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC, to the second (what `$find` and `_lastUpdated` are asked with)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def local(moment: datetime, zone: str) -> str:
    """A FHIR instant with the clinic's offset, as the docs' `$book` example writes them (`…T15:00:00+10:00`)."""
    return moment.astimezone(ZoneInfo(zone)).replace(microsecond=0).isoformat()


def missing(path: str) -> ContractChanged:
    return ContractChanged(
        f"Halaxy answered without `{path.rsplit('.', 1)[-1]}`, which this adapter needs",
        path=path,
        problem="missing required field",
    )


def attendance_status(code: str | None) -> AppointmentStatus | None:
    """Halaxy's attendance codes (reference/appointment names "attended" "booked" "confirmed" "cancelled"; the
    SDK writes "cancelled (no charge)"). A non-attendance cancels in Halaxy but is a no-show to callers."""
    if not code:
        return None
    text = code.strip().lower()
    if "non-attend" in text or "not attend" in text or "did not" in text or "no show" in text or "no-show" in text:
        return AppointmentStatus.NOSHOW
    if text.startswith("cancel"):
        return AppointmentStatus.CANCELLED
    if text == "attended":
        return AppointmentStatus.FULFILLED
    if text in ("booked", "confirmed"):
        return AppointmentStatus.BOOKED
    return None


def status_of(appointment: hx.Appointment) -> AppointmentStatus:
    """The patient's attendance extension first (Halaxy's own), then a FHIR `status`, then the participant's FHIR
    status (`declined`); an appointment that says nothing is booked."""
    patient = appointment.participant_of("Patient")
    found = attendance_status(patient.attendance() if patient is not None else None)
    if found is not None:
        return found
    if appointment.status in FHIR_STATUSES:
        return FHIR_STATUSES[appointment.status]
    if patient is not None and patient.status == "declined":
        return AppointmentStatus.CANCELLED
    return AppointmentStatus.BOOKED


def has_patient(appointment: hx.Appointment) -> bool:
    """Whether a patient takes part: a group session nobody has joined yet (Halaxy's `$book` joins one by
    `appt-id`) has only its practitioner, and is no appointment the gateway can show or announce."""
    patient = appointment.actor("Patient")
    return patient is not None and patient.id is not None


class Busy(msgspec.Struct, frozen=True, kw_only=True):
    """The time an appointment takes from its practitioner, patient or not (a group session occupies them too)."""

    id: str
    practitioner_id: str
    status: AppointmentStatus
    start: datetime
    end: datetime
    created_at: datetime | None


def _span(appointment: hx.Appointment, time_zone: str) -> tuple[datetime, datetime]:
    if appointment.start is None:
        raise missing("$.start")
    start = utc(appointment.start, time_zone)
    if appointment.end is not None:
        return start, utc(appointment.end, time_zone)
    if appointment.minutesDuration is not None:
        return start, start + timedelta(minutes=appointment.minutesDuration)
    raise missing("$.end")


def busy_of(appointment: hx.Appointment, time_zone: str) -> Busy:
    if not appointment.id:
        raise missing("$.id")
    start, end = _span(appointment, time_zone)
    role = appointment.actor("PractitionerRole")
    if role is None or role.id is None:
        raise missing("$.participant[].actor")
    created = utc(appointment.created, time_zone) if appointment.created is not None else None
    return Busy(
        id=appointment.id,
        practitioner_id=role.id,
        status=status_of(appointment),
        start=start,
        end=end,
        created_at=created,
    )


def appointment_of(
    appointment: hx.Appointment, *, location_id: str, time_zone: str, organization_id: str
) -> Appointment:
    """The appointment as the gateway shows it; callers skip one without a patient first (`has_patient`)."""
    if not appointment.id:
        raise missing("$.id")
    start, end = _span(appointment, time_zone)
    role = appointment.actor("PractitionerRole")
    patient = appointment.actor("Patient")
    if role is None or role.id is None:
        raise missing("$.participant[].actor")
    if patient is None or patient.id is None:
        raise missing("$.participant[].actor")
    notes = appointment.description if appointment.description is not None else appointment.comment
    return Appointment(
        id=appointment.id,
        status=status_of(appointment),
        start=start,
        end=end,
        time_zone=time_zone,
        patient_id=patient.id,
        practitioner_id=role.id,
        service_id=appointment.service_id() or "",
        location_id=location_id,
        notes=without_marker(notes),
        created_at=utc(appointment.created, time_zone) if appointment.created is not None else None,
        updated_at=updated_at(appointment),
        emr="halaxy",
        emr_location_id=organization_id,
        operation_id=operation_of(notes),
    )


def patient_of(patient: wire.Patient, region: str | None) -> Patient:
    """FHIR's reading (official, then usual, then first name, then its text; E.164 phones, an unparseable one kept
    as Halaxy holds it; a full birth date only), with Halaxy's own error for a Patient without its id."""
    if not patient.id:
        raise missing("$.id")
    return fhir.patient_of(patient, region)


def practitioner_of(role: wire.PractitionerRole, person: wire.Practitioner | None) -> Practitioner:
    """The practitioner at this clinic: the role's `PR-…` id, the person's name and e-mail."""
    if not role.id:
        raise missing("$.entry[].resource.id")
    name = official_name(person.name) if person is not None else None
    first = name.given[0] if name and name.given else None
    last = name.family if name else None
    full = " ".join(p for p in (first, last) if p) or (name.text if name and name.text else role.id)
    emails = [t.value for t in (person.telecom if person else []) + role.telecom if t.system == "email" and t.value]
    return Practitioner(
        id=role.id,
        name=full,
        first_name=first,
        last_name=last,
        email=emails[0] if emails else None,
        active=role.active is not False and (person is None or person.active is not False),
    )


def duration_of(service: wire.HealthcareService, extension_url: str | None) -> int | None:
    """Minutes from the appointment type's duration extension (`extension_url`, else any quantity in minutes)."""
    for ext in service.extension:
        if extension_url is not None and ext.url != extension_url:
            continue
        quantity = ext.valueQuantity or ext.valueDuration
        if quantity is None or quantity.value is None:
            continue
        unit = (quantity.code or quantity.unit or "").strip().lower()
        if unit in MINUTE_UNITS and quantity.value > 0:
            return int(quantity.value)
        if unit in ("h", "hour", "hours") and quantity.value > 0:
            return int(quantity.value * 60)
    return None


def service_of(service: wire.HealthcareService, minutes: int) -> Service:
    if not service.id:
        raise missing("$.entry[].resource.id")
    return Service(id=service.id, name=service.name or service.id, duration_minutes=minutes)


def location_of(organization: wire.Organization, time_zone: str) -> Location:
    if not organization.id:
        raise missing("$.id")
    address = organization.address[0] if organization.address else None
    text = None
    if address is not None:
        parts = [*address.line, address.city, address.state, address.postalCode]
        text = ", ".join(p for p in parts if p) or None
    return Location(id=organization.id, name=organization.name or organization.id, time_zone=time_zone, address=text)

"""FHIR R4 resources <-> the gateway's schemas. Pure functions: no I/O.

Ids: a gateway practitioner is a FHIR `Practitioner` (what `$find` takes as `practitioner` and Appointment search as
`practitioner`; PractitionerRole only scopes the list to the location), a service is a `HealthcareService`, a
location a `Location`. An appointment names its service as a `HealthcareService` participant (R4 allows one as an
actor) and as `serviceType` (the service's `type` coding); either is read back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import phonenumbers

from adapters import phones
from adapters.base import AdapterContext
from adapters.errors import ContractChanged
from adapters.fhir import wire
from adapters.markers import operation_of, without_marker
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.catalog import Location, Practitioner, Service
from schemas.commands import NewPatient
from schemas.patients import Patient

EMR_SLUG = "fhir"
TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
CANCEL_SYSTEM = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
# The gateway's own reason beside HL7's (a CodeableConcept may carry codings of several systems): HL7's value set
# has no "sick", "away" or "work", and a reason must read back as it was given.
GATEWAY_REASON_SYSTEM = "urn:emr-gateway:cancel-reason"
HL7_REASON = {
    CancelReason.FEELING_BETTER: ("pat-fb", "Patient: Feeling Better"),
    CancelReason.CONDITION_WORSE: ("pat", "Patient"),
    CancelReason.SICK: ("pat", "Patient"),
    CancelReason.AWAY: ("pat", "Patient"),
    CancelReason.WORK: ("pat", "Patient"),
    CancelReason.OTHER: ("other", "Other"),
}
STATUS = {s.value: s for s in AppointmentStatus}
ENDED = frozenset({"cancelled", "entered-in-error"})


def utc(moment: datetime, time_zone: str) -> datetime:
    """An aware UTC instant; a naive time is read in the location's zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(time_zone))
    return moment.astimezone(UTC)


def updated_at(resource: wire.Resource) -> datetime | None:
    """`meta.lastUpdated` in UTC. FHIR requires a zone on an instant; a server that leaves it off is read as UTC
    (not the location's zone, nor this host's), as every FHIR-based adapter reads it."""
    stamp = resource.meta.lastUpdated if resource.meta is not None else None
    if stamp is None:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with `Z` and milliseconds (no `+` to escape in a query)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def require_id(resource: wire.Resource, where: str, path: str = "$.entry[].resource.id") -> str:
    """Every resource the adapter keeps must carry its id: one that does not is a changed contract."""
    if not resource.id:
        raise ContractChanged(
            f"the FHIR server answered a {where} without an id", path=path, problem="missing required field"
        )
    return resource.id


def reference(resource_type: str, resource_id: str) -> wire.Reference:
    return wire.Reference(reference=f"{resource_type}/{resource_id}")


def participant(resource_type: str, resource_id: str, status: str = "accepted") -> wire.AppointmentParticipant:
    return wire.AppointmentParticipant(actor=reference(resource_type, resource_id), required="required", status=status)


# ---------------------------------------------------------------------------------------------- appointments


def status_of(appointment: wire.Appointment) -> AppointmentStatus:
    if appointment.status in ENDED:
        return AppointmentStatus.CANCELLED
    return STATUS.get(appointment.status, AppointmentStatus.BOOKED)


def cancel_reason_concept(reason: CancelReason, note: str | None) -> wire.CodeableConcept:
    code, display = HL7_REASON[reason]
    return wire.CodeableConcept(
        coding=[
            wire.Coding(system=CANCEL_SYSTEM, code=code, display=display),
            wire.Coding(system=GATEWAY_REASON_SYSTEM, code=reason.value),
        ],
        text=note,
    )


def cancel_reason_of(concept: wire.CodeableConcept | None) -> CancelReason | None:
    if concept is None:
        return None
    ours = concept.code_in(GATEWAY_REASON_SYSTEM)
    if ours is not None:
        try:
            return CancelReason(ours)
        except ValueError:
            pass
    return CancelReason.FEELING_BETTER if concept.code_in(CANCEL_SYSTEM) == "pat-fb" else CancelReason.OTHER


def actor_id(appointment: wire.Appointment, resource_type: str) -> str | None:
    ref = appointment.actor_of(resource_type)
    return ref.id if ref is not None else None


def service_id_of(appointment: wire.Appointment, by_code: dict[tuple[str | None, str], str]) -> str:
    """The HealthcareService participant, else the service whose `type` coding the appointment's serviceType
    carries (when the catalog is known), else "" (an appointment made without a service)."""
    found = actor_id(appointment, "HealthcareService")
    if found:
        return found
    for concept in appointment.serviceType:
        for coding in concept.coding:
            if coding.code and (hit := by_code.get((coding.system, coding.code))):
                return hit
    return ""


def appointment_of(
    appointment: wire.Appointment, context: AdapterContext, by_code: dict[tuple[str | None, str], str] | None = None
) -> Appointment:
    appointment_id = require_id(appointment, "Appointment")
    if appointment.start is None or appointment.end is None:
        raise ContractChanged(
            "the FHIR server answered an Appointment without start or end",
            path="$.start" if appointment.start is None else "$.end",
            problem="missing required field",
        )
    status = status_of(appointment)
    cancelled = status is AppointmentStatus.CANCELLED
    reason = appointment.cancelationReason
    return Appointment(
        id=appointment_id,
        status=status,
        start=appointment.start.astimezone(UTC),
        end=appointment.end.astimezone(UTC),
        time_zone=context.time_zone,
        patient_id=actor_id(appointment, "Patient") or "",
        practitioner_id=actor_id(appointment, "Practitioner") or "",
        service_id=service_id_of(appointment, by_code or {}),
        location_id=context.location_id,
        notes=without_marker(appointment.comment),
        operation_id=operation_of(appointment.comment),
        cancel_reason=cancel_reason_of(reason) if cancelled else None,
        cancel_note=reason.text if cancelled and reason is not None else None,
        created_at=appointment.created.astimezone(UTC) if appointment.created else None,
        updated_at=updated_at(appointment),
        emr=EMR_SLUG,
        emr_location_id=actor_id(appointment, "Location"),
    )


# ---------------------------------------------------------------------------------------------- patients


def official_name(names: list[wire.HumanName]) -> wire.HumanName | None:
    """The official name, then the usual one, then the first; a caller falls back to its `text` when the chosen
    name has no parts."""
    for use in ("official", "usual", None):
        found = next((n for n in names if use is None or n.use == use), None)
        if found is not None:
            return found
    return None


def patient_of(patient: wire.Patient, region: str | None) -> Patient:
    """The patient as the gateway shows it (Halaxy's adapter reads its Patients with this too). Phones are E.164
    where they parse, else kept as the server holds them, as the Cliniko, Nookal and PracticeBetter adapters do:
    a number the gateway cannot normalise is still the patient's."""
    patient_id = require_id(patient, "Patient")
    name = official_name(patient.name)
    first = (name.given[0] if name and name.given else "") or ""
    last = (name.family if name else "") or ""
    if name is not None and not (first or last) and name.text:
        first, _, last = name.text.partition(" ")
    email = next((t.value for t in patient.telecom if t.system == "email" and t.value), None)
    numbers: list[str] = []
    for t in patient.telecom:
        if t.system in ("phone", "sms") and t.value:
            number = phones.e164(t.value, region) or t.value
            if number not in numbers:
                numbers.append(number)
    return Patient(
        id=patient_id,
        first_name=first,
        last_name=last,
        email=email,
        phones=numbers,
        date_of_birth=birth_date(patient.birthDate),
        updated_at=updated_at(patient),
    )


def birth_date(text: str | None) -> date | None:
    """Only a full FHIR date is a birth date; a year or a month alone is not one."""
    if text is None or len(text) != 10:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def new_patient(patient: NewPatient) -> wire.Patient:
    telecom = []
    if patient.email:
        telecom.append(wire.ContactPoint(system="email", value=patient.email, use="home"))
    if patient.phone:
        telecom.append(wire.ContactPoint(system="phone", value=patient.phone, use="mobile"))
    return wire.Patient(
        active=True,
        name=[wire.HumanName(use="official", family=patient.last_name, given=[patient.first_name])],
        telecom=telecom,
        birthDate=patient.date_of_birth.isoformat() if patient.date_of_birth else None,
    )


def phone_forms(e164: str, region: str | None) -> list[str]:
    """How a server may hold one number: token search matches the stored text exactly, so a lookup ORs the E.164,
    international and national forms."""
    forms = [e164]
    try:
        parsed = phonenumbers.parse(e164, region)
    except phonenumbers.NumberParseException:
        return forms
    for style in (phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.NATIONAL):
        text = phonenumbers.format_number(parsed, style)
        if text not in forms:
            forms.append(text)
    return forms


# ---------------------------------------------------------------------------------------------- catalog


def practitioner_of(practitioner: wire.Practitioner) -> Practitioner:
    practitioner_id = require_id(practitioner, "Practitioner")
    name = official_name(practitioner.name)
    first = (name.given[0] if name and name.given else None) or None
    last = (name.family if name else None) or None
    display = (name.text if name else None) or " ".join(p for p in (first, last) if p) or practitioner_id
    email = next((t.value for t in practitioner.telecom if t.system == "email" and t.value), None)
    return Practitioner(
        id=practitioner_id,
        name=display,
        first_name=first,
        last_name=last,
        email=email,
        active=practitioner.active is not False,
    )


def service_code(service: wire.HealthcareService) -> wire.Coding | None:
    return next((c for concept in service.type for c in concept.coding if c.code), None)


def service_of(service: wire.HealthcareService, minutes: int, practitioner_ids: Iterable[str] | None) -> Service:
    service_id = require_id(service, "HealthcareService")
    coding = service_code(service)
    category = next((c.text or (c.coding[0].display if c.coding else None) for c in service.category), None)
    return Service(
        id=service_id,
        name=service.name or (coding.display if coding else None) or service_id,
        duration_minutes=minutes,
        code=coding.code if coding else None,
        category=category,
        practitioner_ids=sorted(set(practitioner_ids)) if practitioner_ids is not None else None,
    )


def time_zone_of(location: wire.Location) -> str | None:
    found = location.extension_of(TIMEZONE_EXTENSION)
    return found.valueCode if found is not None else None


def location_of(location: wire.Location) -> Location:
    location_id = require_id(location, "Location")
    address = location.address
    parts = [*address.line, address.city, address.state, address.postalCode, address.country] if address else []
    return Location(
        id=location_id,
        name=location.name or location_id,
        time_zone=time_zone_of(location),
        address=", ".join(p for p in parts if p) or None,
    )

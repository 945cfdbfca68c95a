"""ClinicSync bodies to intents: one function per kind of body, shared by every EMR's routes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TypeVar

import msgspec

from adapters.cliniko.mapping import cancel_reason_of
from gateway.compat.bodies import (
    AnyId,
    BookBody,
    CancelBody,
    JaneAppointmentBody,
    JanePatientBody,
    JaneQueryBody,
    UpdateBody,
)
from gateway.compat.intents import (
    AvailabilityIntent,
    BookIntent,
    CancelIntent,
    CatalogIntent,
    LocationRef,
    PatientAppointmentsIntent,
    PatientIntent,
    RescheduleIntent,
    Target,
)
from gateway.errors import ValidationFailed
from gateway.ghl.references import practitioner_ref, service_ref
from gateway.usecases.appointments import Booking
from schemas.appointments import CancelReason
from schemas.problems import FieldError
from schemas.refs import PatientRef, PractitionerRef, ServiceRef

T = TypeVar("T")


def text(value: AnyId | None) -> str | None:
    """GoHighLevel sends "" for an empty field: that is absent, not a value."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


def first(*values: AnyId | None) -> str | None:
    return next((v for v in (text(x) for x in values) if v is not None), None)


def _missing(field: str, what: str) -> ValidationFailed:
    return ValidationFailed(f"{field} is required: {what}", errors=[FieldError(field=field, message="required")])


def when(raw: str | None, field: str) -> datetime | None:
    """RFC 3339 (`Z`, offsets, milliseconds) or a naive wall time, read later in the body's zone."""
    value = text(raw)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{field} must be an ISO 8601 date-time", errors=[FieldError(field=field, message="invalid date-time")]
        ) from None


def birth_date(raw: str | None, field: str) -> date | None:
    value = text(raw)
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ValidationFailed(
            f"{field} must be YYYY-MM-DD", errors=[FieldError(field=field, message="invalid date")]
        ) from None


def minutes(raw: AnyId | None, field: str) -> int | None:
    value = text(raw)
    if value is None:
        return None
    try:
        out = int(float(value))
    except ValueError:
        raise ValidationFailed(
            f"{field} must be minutes", errors=[FieldError(field=field, message="not a number")]
        ) from None
    if out <= 0:
        raise ValidationFailed(f"{field} must be positive", errors=[FieldError(field=field, message="not positive")])
    return out


def person(value: str | None) -> PractitionerRef | None:
    """`staff_member` holds an e-mail in ClinicSync's snapshots; a name or an id works too."""
    if value is None:
        return None
    if "@" in value:
        return PractitionerRef(email=value)
    if value.isdigit():
        return PractitionerRef(id=value)
    return PractitionerRef(name=value)


def _flat(body: BookBody | UpdateBody) -> dict[str, object]:
    return {k: v for k, v in msgspec.structs.asdict(body).items() if not isinstance(v, dict | msgspec.Struct)}


def _scalar(value: object) -> AnyId | None:
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _require(value: T | None, field: str, what: str) -> T:
    if value is None:
        raise _missing(field, what)
    return value


def _end(start: datetime, end: datetime | None, duration: int | None) -> datetime | None:
    if end is None and duration is not None:
        return start + timedelta(minutes=duration)
    return end


# ---------------------------------------------------------------------------------------------- per-EMR REST bodies


def book(body: BookBody) -> BookIntent:
    custom = body.customData
    cal = body.calendar
    flat = _flat(body)  # SimplePractice / Practice Better name them at the top level, with the same key words
    practitioner = practitioner_ref(custom) or practitioner_ref(flat)
    service = service_ref(custom) or service_ref(flat)
    start = when(first(cal.startTime, body.apptStart), "calendar.startTime")
    end = when(first(cal.endTime, body.apptEnd), "calendar.endTime")
    tz = first(cal.selectedTimezone, body.timeZone)
    start = _require(start, "calendar.startTime", "the appointment's start (calendar.startTime or apptStart)")
    duration = minutes(first(_scalar(custom.get("appt_type_duration")), body.apptDuration), "apptDuration")
    patient = PatientRef(
        first_name=first(body.first_name, body.patientFirstName, body.firstName),
        last_name=first(body.last_name, body.patientLastName, body.lastName),
        email=first(body.email, body.patientEmail),
        phone=first(body.phone, body.patientMobile),
        date_of_birth=birth_date(first(body.date_of_birth, body.patientDOB), "patientDOB"),
    )
    booking = Booking(
        practitioner=_require(practitioner, "customData.staff_member", "the practitioner (e-mail or name)"),
        service=_require(service, "customData.treatment_name", "the service (name or code)"),
        patient=patient,
        start=start,
        end=_end(start, end, duration),
        time_zone=tz,
    )
    return BookIntent(booking=booking, external_id=first(cal.appointmentId, cal.id, body.apptId))


def update(body: UpdateBody) -> RescheduleIntent:
    cal = body.calendar
    ref = _require(first(cal.appointmentId, cal.id, body.appointmentId), "appointmentId", "which appointment")
    start = when(first(cal.startTime, body.apptStart), "calendar.startTime")
    return RescheduleIntent(
        target=Target(ref=ref),
        start=_require(start, "calendar.startTime", "the new start (calendar.startTime or apptStart)"),
        end=when(first(cal.endTime, body.apptEnd), "calendar.endTime"),
        time_zone=first(cal.selectedTimezone, body.timeZone),
        practitioner=practitioner_ref(body.customData) or practitioner_ref(_flat(body)),
    )


def reason_of(code: AnyId | None, free_text: str | None) -> tuple[CancelReason, str | None]:
    """Cliniko's numeric codes (10-60) and our own names map to a reason; free text becomes the note."""
    raw = text(code)
    if raw is not None and raw.isdigit():
        return cancel_reason_of(int(raw)) or CancelReason.OTHER, free_text
    if raw is not None:
        try:
            return CancelReason(raw.casefold()), free_text
        except ValueError:
            return CancelReason.OTHER, free_text or raw
    return CancelReason.OTHER, free_text


def cancel(body: CancelBody) -> CancelIntent:
    ref = _require(
        first(body.appointmentId, body.calendar.appointmentId, body.calendar.id), "appointmentId", "which appointment"
    )
    reason, note = reason_of(body.cancellation_reason, first(body.cancellation_note, body.cancelled_reason))
    return CancelIntent(target=Target(ref=ref), reason=reason, note=note)


# ---------------------------------------------------------------------------------------------- Jane AI and voice


def _location(locationId: AnyId | None, location_id: AnyId | None, name: str | None) -> LocationRef | None:
    ident, label = first(location_id, locationId), text(name)
    return LocationRef(id=ident, name=label) if ident or label else None


def _jane_practitioner(id_: AnyId | None, name: str | None, email: str | None) -> PractitionerRef | None:
    if ident := text(id_):
        return PractitionerRef(id=ident)
    if mail := text(email):
        return PractitionerRef(email=mail)
    return person(text(name))


def _jane_service(id_: AnyId | None, name: str | None) -> ServiceRef | None:
    if ident := text(id_):
        return ServiceRef(id=ident)
    return ServiceRef(name=label) if (label := text(name)) else None


def _jane_patient(
    patient_id: AnyId | None,
    first_name: str | None,
    last_name: str | None,
    email: str | None,
    phone: str | None,
    dob: str | None,
) -> PatientRef:
    if ident := text(patient_id):
        return PatientRef(id=ident)
    return PatientRef(
        first_name=text(first_name),
        last_name=text(last_name),
        email=text(email),
        phone=text(phone),
        date_of_birth=birth_date(dob, "dob"),
    )


def jane_book(body: JaneAppointmentBody, *, provisional: bool = False) -> BookIntent:
    """Flat fields, or the provisional `appointment` context `createAppt` returned (which wins)."""
    ctx = body.appointment
    practitioner = _jane_practitioner(
        first(ctx.staff_member_id if ctx else None, body.staff_member_id),
        body.staff_member_name,
        body.staff_member_email,
    )
    service = _jane_service(first(ctx.treatment_id if ctx else None, body.treatment_id), body.treatment_name)
    patient = _jane_patient(
        first(ctx.patient_id if ctx else None, body.patient_id),
        body.first_name,
        body.last_name,
        body.email,
        body.phone,
        body.dob,
    )
    start = when(first(ctx.start_at if ctx else None, body.start_at), "start_at")
    end = when(first(ctx.end_at if ctx else None, body.end_at), "end_at")
    booking = Booking(
        practitioner=_require(
            practitioner, "staff_member_id", "the practitioner (staff_member_id or staff_member_name)"
        ),
        service=_require(service, "treatment_id", "the treatment (treatment_id or treatment_name)"),
        patient=patient,
        start=_require(start, "start_at", "the appointment's start"),
        end=end,
        time_zone=first(ctx.time_zone if ctx else None, body.time_zone),
        notes=first(ctx.notes if ctx else None, body.notes),
    )
    location = _location(
        body.locationId, first(ctx.location_id if ctx else None, body.location_id), body.clinic_location_name
    )
    return BookIntent(booking=booking, location=location, provisional=provisional)


def jane_create(body: JaneAppointmentBody) -> BookIntent:
    return jane_book(body, provisional=True)


def _target(body: JaneAppointmentBody) -> Target:
    if ref := first(body.appointment_id, body.appointmentId):
        return Target(ref=ref)
    if text(body.phone) or text(body.email):
        return Target(
            patient=PatientRef(
                phone=text(body.phone),
                email=text(body.email),
                first_name=text(body.first_name),
                last_name=text(body.last_name),
            )
        )
    raise _missing("appointment_id", "give appointment_id, or the caller's phone to find their next appointment")


def jane_reschedule(body: JaneAppointmentBody) -> RescheduleIntent:
    start = when(first(body.new_start_at, body.start_at), "new_start_at")
    return RescheduleIntent(
        target=_target(body),
        start=_require(start, "new_start_at", "the new start"),
        end=when(first(body.new_end_at, body.end_at), "new_end_at"),
        time_zone=text(body.time_zone),
        practitioner=_jane_practitioner(body.staff_member_id, body.staff_member_name, body.staff_member_email),
        location=_location(body.locationId, body.location_id, body.clinic_location_name),
    )


def jane_cancel(body: JaneAppointmentBody) -> CancelIntent:
    reason, note = reason_of(None, text(body.cancelled_reason))
    return CancelIntent(target=_target(body), reason=reason, note=note)


def jane_catalog(body: JaneQueryBody) -> CatalogIntent:
    return CatalogIntent(location=_location(body.locationId, body.location_id, body.clinic_location_name))


def _availability(body: JaneQueryBody, *, days: int, earliest_only: bool) -> AvailabilityIntent:
    service = _jane_service(body.treatment_id, body.treatment_name)
    return AvailabilityIntent(
        service=_require(service, "treatment_id", "the treatment (treatment_id or treatment_name)"),
        practitioner=_jane_practitioner(body.staff_member_id, body.staff_member_name, body.staff_member_email),
        start_from=when(first(body.requested_time_utc, body.start_date, body.start_at), "start_date"),
        start_to=when(first(body.end_date, body.end_at), "end_date"),
        days=days,
        time_zone=text(body.time_zone),
        location=_location(body.locationId, body.location_id, body.clinic_location_name),
        earliest_only=earliest_only,
    )


def jane_range(body: JaneQueryBody) -> AvailabilityIntent:
    intent = _availability(body, days=7, earliest_only=False)
    _require(intent.start_from, "start_date", "the range's start")
    _require(intent.start_to, "end_date", "the range's end")
    return intent


def jane_next_7_days(body: JaneQueryBody) -> AvailabilityIntent:
    intent = _availability(body, days=7, earliest_only=False)
    return AvailabilityIntent(
        service=intent.service,
        practitioner=intent.practitioner,
        days=7,
        time_zone=intent.time_zone,
        location=intent.location,
    )


def voice_best_slot(body: JaneQueryBody) -> AvailabilityIntent:
    return _availability(body, days=28, earliest_only=True)


def _patient_body_ref(body: JanePatientBody) -> PatientRef:
    return _jane_patient(body.patient_id, body.first_name, body.last_name, body.email, body.phone, body.dob)


def jane_patient(body: JanePatientBody) -> PatientIntent:
    return PatientIntent(ref=_patient_body_ref(body))


def jane_patient_appointments(body: JanePatientBody) -> PatientAppointmentsIntent:
    return PatientAppointmentsIntent(ref=_patient_body_ref(body))


def voice_patient_appointments(body: JanePatientBody) -> PatientAppointmentsIntent:
    return PatientAppointmentsIntent(ref=_patient_body_ref(body), upcoming_only=True)

"""A workflow webhook body -> what the actions need. Errors name GHL's own fields (GHL shows them in its logs)."""

from __future__ import annotations

from datetime import datetime

from gateway.errors import UnknownPractitioner, UnknownService
from gateway.ghl.actions import BookRequest, require
from gateway.ghl.payloads import WorkflowCalendar, WorkflowPayload
from gateway.ghl.references import practitioner_ref, service_ref
from gateway.ghl.times import parse_ghl_time
from gateway.times import zone
from schemas.problems import FieldError
from schemas.refs import PatientRef

_TRIGGER_HINT = " (GHL sends it when the workflow's trigger is an appointment trigger, e.g. Appointment Booked)"
PRACTITIONER_HINT = (
    "customData names no practitioner: add one of practitioner, staff_member, practitionerName, clinicianEmail, "
    "consultantEmail (or practitioner_id / practitioner_email / practitioner_name) to the action's Custom Data"
)
SERVICE_HINT = (
    "customData names no service: add one of service, appt_type_name, treatment_name, serviceName, serviceCode "
    "(or service_id / service_name / service_code) to the action's Custom Data"
)


def calendar_of(body: WorkflowPayload) -> WorkflowCalendar:
    return body.calendar or WorkflowCalendar()


def ghl_id_of(body: WorkflowPayload) -> str:
    return require(calendar_of(body).appointment_id, "calendar.appointmentId", _TRIGGER_HINT)


def time_zone_of(body: WorkflowPayload, default: str) -> str:
    """`selectedTimezone` is the zone GHL wrote the wall times in; without it, the location's."""
    name = (calendar_of(body).selected_timezone or "").strip() or default
    zone(name, field="calendar.selectedTimezone")
    return name


def times_of(body: WorkflowPayload, tz: str) -> tuple[datetime, datetime | None]:
    cal = calendar_of(body)
    start = parse_ghl_time(require(cal.start_time, "calendar.startTime"), tz, field="calendar.startTime")
    end = parse_ghl_time(cal.end_time, tz, field="calendar.endTime") if cal.end_time and cal.end_time.strip() else None
    return start, end


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value[:255] or None


def book_request(body: WorkflowPayload, location_time_zone: str) -> BookRequest:
    ghl_id = ghl_id_of(body)
    tz = time_zone_of(body, location_time_zone)
    start, end = times_of(body, tz)
    practitioner = practitioner_ref(body.custom)
    if practitioner is None:
        raise UnknownPractitioner(PRACTITIONER_HINT, errors=[FieldError(field="customData", message="no practitioner")])
    service = service_ref(body.custom)
    if service is None:
        raise UnknownService(SERVICE_HINT, errors=[FieldError(field="customData", message="no service")])
    first, last = _text(body.first_name), _text(body.last_name)
    if not (first or last) and body.full_name:
        first, _, rest = body.full_name.strip().partition(" ")
        first, last = _text(first), _text(rest)
    patient = PatientRef(
        email=_text(body.email),
        phone=_text(body.phone),
        first_name=first,
        last_name=last,
        date_of_birth=body.birth_date,
    )
    return BookRequest(
        ghl_id=ghl_id,
        practitioner=practitioner,
        service=service,
        patient=patient,
        start=start,
        end=end,
        time_zone=tz,
        notes=(calendar_of(body).notes or "").strip() or None,
    )

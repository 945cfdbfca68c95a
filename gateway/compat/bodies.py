"""The request bodies of ClinicSync Pro's documented routes, as tolerant Structs.

Unknown fields are ignored (GoHighLevel and ClinicSync clients send much more than we read), and where several
EMRs' documents share a path or an action the Struct is the union of their fields. Ids may arrive as strings or
numbers; times stay strings until the translator reads them in the right zone.
"""

from __future__ import annotations

from typing import Any

import msgspec

AnyId = str | int


class Tolerant(msgspec.Struct, kw_only=True):
    """Base: unknown fields are ignored, never an error (a migrating caller's extra fields must not break it)."""


# GoHighLevel `customData` is whatever keys the workflow author typed, so it stays a mapping and is read by
# gateway/ghl/references.py (shared with /ghl/v1). The seed document's keys: Jane `staff_member`, `treatment_name`,
# `clinic_location_name`, `roomName`; Cliniko `staff_member`, `appt_type_name`, `appt_type_category`,
# `appt_type_duration`, `business_name`; Nookal `practitionerName`, `serviceCode`, `locationName`, `region`,
# `basicKey`; Practice Better `serviceName`, `consultantEmail`. Location keys are accepted and ignored: the API key
# decides the location.
CustomData = dict[str, Any]


class Calendar(Tolerant):
    """GoHighLevel `calendar`: times are RFC 3339, or naive wall time in `selectedTimezone`."""

    appointmentId: AnyId | None = None
    id: AnyId | None = None
    startTime: str | None = None
    endTime: str | None = None
    selectedTimezone: str | None = None


def _custom() -> CustomData:
    return {}


def _calendar() -> Calendar:
    return Calendar()


class BookBody(Tolerant):
    """Every documented book body: Jane/Cliniko `/api-book-appointment` and `/bookAppt` (GHL shape), Nookal
    `/api/nookal/book_appt`, SimplePractice `/appointments/book`, Practice Better `/bookSession`."""

    customData: CustomData = msgspec.field(default_factory=_custom)
    calendar: Calendar = msgspec.field(default_factory=_calendar)
    # GHL contact fields (Jane, Cliniko, Practice Better via GHL)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    date_of_birth: str | None = None
    # Nookal
    patientFirstName: str | None = None
    patientLastName: str | None = None
    patientDOB: str | None = None
    patientEmail: str | None = None
    patientMobile: str | None = None
    # SimplePractice and Practice Better
    firstName: str | None = None
    lastName: str | None = None
    apptStart: str | None = None
    apptEnd: str | None = None
    apptDuration: AnyId | None = None
    apptId: AnyId | None = None
    serviceCode: str | None = None
    serviceName: str | None = None
    clinicianEmail: str | None = None
    consultantEmail: str | None = None
    timeZone: str | None = None


class UpdateBody(Tolerant):
    """Every documented reschedule body: Jane/Cliniko `/api-update-appointment` and `/update_appt`, Nookal
    `/api/nookal/update_appt`, SimplePractice `/appointments/update`, Practice Better `/rescheduleSession`."""

    calendar: Calendar = msgspec.field(default_factory=_calendar)
    customData: CustomData = msgspec.field(default_factory=_custom)
    appointmentId: AnyId | None = None
    apptStart: str | None = None
    apptEnd: str | None = None
    serviceCode: str | None = None  # SimplePractice: the service is not changed by a reschedule (ignored)
    clinicianEmail: str | None = None
    timeZone: str | None = None


class CancelBody(Tolerant):
    """Every documented cancel body: Jane (`cancelled_reason`, notification flags), Cliniko (`cancellation_note`,
    `cancellation_reason` code), Nookal, SimplePractice, Practice Better (`appointmentId` only)."""

    appointmentId: AnyId | None = None
    calendar: Calendar = msgspec.field(default_factory=_calendar)
    cancelled_reason: str | None = None
    cancellation_note: str | None = None
    cancellation_reason: AnyId | None = None
    with_notifications: bool | None = None  # accepted; notifications are the EMR's own settings
    send_wlns: bool | None = None  # accepted; wait-list notifications are not sent by the gateway


class ProvisionalContext(Tolerant):
    """What `/ai_brain/createAppt` answers and `/ai_brain/bookAppt` expects back."""

    staff_member_id: AnyId | None = None
    treatment_id: AnyId | None = None
    patient_id: AnyId | None = None
    location_id: AnyId | None = None
    start_at: str | None = None
    end_at: str | None = None
    time_zone: str | None = None
    notes: str | None = None


class JaneAppointmentBody(Tolerant):
    """Jane AI receptionist writes (`createAppt`, `bookAppt`, `rescheduleAppt`, `cancelAppt`) and the voice book,
    cancel and reschedule query strings: one vocabulary (Jane's field names)."""

    locationId: AnyId | None = None
    location_id: AnyId | None = None
    clinic_location_name: str | None = None
    appointment_id: AnyId | None = None
    appointmentId: AnyId | None = None
    appointment: ProvisionalContext | None = None
    staff_member_id: AnyId | None = None
    staff_member_name: str | None = None
    staff_member_email: str | None = None
    treatment_id: AnyId | None = None
    treatment_name: str | None = None
    start_at: str | None = None
    end_at: str | None = None
    new_start_at: str | None = None
    new_end_at: str | None = None
    time_zone: str | None = None
    patient_id: AnyId | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    dob: str | None = None
    notes: str | None = None
    cancelled_reason: str | None = None
    with_notifications: bool | str | None = None
    send_wlns: bool | str | None = None


class JaneQueryBody(Tolerant):
    """Jane AI receptionist reads (`fetchAll*`, `fetchAvailability*`) and the voice `clinic-info` / `bestSlot`."""

    locationId: AnyId | None = None
    location_id: AnyId | None = None
    clinic_location_name: str | None = None
    staff_member_id: AnyId | None = None
    staff_member_name: str | None = None
    staff_member_email: str | None = None
    treatment_id: AnyId | None = None
    treatment_name: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    start_at: str | None = None
    end_at: str | None = None
    requested_time_utc: str | None = None
    time_zone: str | None = None


class JanePatientBody(Tolerant):
    """`/ai_brain/lookup-create-patient`, `/ai_brain/fetchPatientsAppointments`, voice `patientAppointments`."""

    locationId: AnyId | None = None
    location_id: AnyId | None = None
    patient_id: AnyId | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    dob: str | None = None
    city: str | None = None  # accepted; addresses are not written by the gateway
    state: str | None = None
    country: str | None = None

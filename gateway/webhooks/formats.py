"""Payload formats: `normalized` (our envelope) and `clinicsync` (the seed document's per-EMR patient-update payload).

`clinicsync` reproduces, key for key and in order, the example payloads of the ClinicSync Pro documentation's
"Webhook Payload (For Non GHL Users): <EMR> Patient Update" sections, so a receiver built for ClinicSync keeps
working. Values the gateway does not read from the EMR (money, marketing consent, address, reminders) are null; the
list is in docs/change-detection.md. Only `patient.updated` has a ClinicSync shape: other events (appointment.*,
endpoint.disabled) are sent in the normalized envelope whatever the format, since the seed defines none for them
and every appointment transition also changes the snapshot, so a `patient.updated` follows it anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from gateway.sync.snapshots import VISITED
from schemas.appointments import AppointmentStatus
from schemas.webhooks import AppointmentSummary, PatientSnapshot, PayloadFormat, WebhookEvent


class _Payload(msgspec.Struct, kw_only=True):
    """Every field is always sent (null when unknown): the receiver sees exactly the seed's keys."""


class ClinikoPatientUpdate(_Payload):
    firstName: str
    lastName: str
    email: str | None
    phone: str | None
    dateOfBirth: date | None
    state: str | None
    city: str | None
    upcoming_appointment_cancelled_at: datetime | None
    upcoming_appointment_cancellation_reason: str | None
    upcoming_appointment_name: str | None
    last_appointment_name: str | None
    last_updated_date_via_api: datetime
    last_appointment_cancelled_at: datetime | None
    last_appointment_did_not_arrive: bool | None
    last_appointment_cancellation_reason: str | None
    upcoming_appointment_reminder_start_time: datetime | None
    patient_id: str
    upcoming_appointment_start_time: datetime | None
    upcoming_appointment_business_name: str | None
    upcoming_appointment_practitioner_name: str | None
    upcoming_appointment_type: str | None
    upcoming_appointment_counts: int
    accepted_email_marketing: str | None
    accepted_sms_marketing: str | None
    total_amount_spent: float | None
    total_amount_spent_this_month: float | None
    total_number_of_appointments: int
    last_appointment_start_time: datetime | None
    last_appointment_business_name: str | None
    last_appointment_practitioner_name: str | None
    last_appointment_type: str | None


class NookalPatientUpdate(_Payload):
    last_updated_date_via_api: date
    patient_id: str
    firstName: str
    lastName: str
    email: str | None
    phone: str | None
    dateOfBirth: date | None
    state: str | None
    city: str | None
    gender: str | None
    address1: str | None
    postalCode: str | None
    appointments_count: int
    last_appt_arrived: datetime | None
    last_appt_dna: datetime | None
    last_appt_cancelled: datetime | None
    last_appt_cancellationDate: date | None
    last_appt_practitioner_name: str | None
    last_appt_type: str | None
    last_appt_location: str | None
    last_appt_date: date | None
    upcoming_appt_type: str | None
    upcoming_appt_location: str | None
    upcoming_appt_date: date | None
    upcoming_appt_practitioner_name: str | None
    upcoming_appt_reminder_time: datetime | None
    total_amount_paid: float | None
    total_unpaid_balance: float | None


class SimplePracticeClientUpdate(_Payload):
    client_id: str
    last_updated_date_via_api: date
    last_appt_start_at: datetime | None
    last_appt_end_at: datetime | None
    last_appt_location_name: str | None
    last_appt_treatment_name: str | None
    last_appt_staff_member_name: str | None
    last_appt_state: str | None
    upcoming_appt_start_at: datetime | None
    upcoming_appt_end_at: datetime | None
    upcoming_appt_location_name: str | None
    upcoming_appt_treatment_name: str | None
    upcoming_appt_staff_member_name: str | None
    upcoming_appt_state: str | None
    upcoming_appt_reminder_start_time: datetime | None
    total_payment_made: float | None
    total_remaining_balance: float | None
    total_appt_arrived: int
    total_appt_cancelled: int
    total_appt_no_show: int


class PracticeBetterClientUpdate(_Payload):
    """One session per payload: the upcoming one, else the last one (the seed's payload describes one session)."""

    client_id: str
    client_isActive: bool | None
    client_status: str | None
    client_preferredName: str | None
    client_referredBy: str | None
    client_notes: str | None
    client_amountPaid: float | None
    session_service_name: str | None
    session_serviceType: str | None
    session_consultant_firstName: str | None
    session_consultant_lastName: str | None
    session_consultant_emailAddress: str | None
    session_sessionDate: datetime | None
    session_endDate: datetime | None
    session_duration: int | None
    session_actualDuration: int | None
    session_location_name: str | None
    session_location_address: str | None
    session_location_room: str | None
    session_paymentStatus: str | None
    session_fee_amount: float | None
    session_cancelled: bool | None
    session_upcoming: bool | None
    session_isRecurring: bool | None
    session_isSubscription: bool | None
    session_hasRecording: bool | None
    session_confirmationStatus: str | None
    session_clientConfirmationStatus: str | None
    session_dateConfirmed: datetime | None
    session_dateCreated: datetime | None
    session_dateModified: datetime | None
    session_notes: str | None
    dietLifestyle_dateCreated: date | None
    dietLifestyle_dietaryRestrictions: str | None
    dietLifestyle_drinksCoffee: bool | None
    dietLifestyle_drinksAlcohol: bool | None
    dietLifestyle_smoker: bool | None
    dietLifestyle_exerciseInformation: str | None
    dietLifestyle_sleepInformation: str | None
    dietLifestyle_mainStressors: str | None
    dietLifestyle_hasPets: bool | None
    dietLifestyle_notes: str | None


def _phone(snapshot: PatientSnapshot) -> str | None:
    return snapshot.patient.phones[0] if snapshot.patient.phones else None


def _local_date(appointment: AppointmentSummary | None) -> date | None:
    if appointment is None:
        return None
    return appointment.start.astimezone(ZoneInfo(appointment.time_zone)).date()


def _when(appointment: AppointmentSummary | None, *statuses: AppointmentStatus) -> datetime | None:
    return appointment.start if appointment is not None and appointment.status in statuses else None


def cliniko(snapshot: PatientSnapshot, at: datetime) -> ClinikoPatientUpdate:
    last, nxt, patient = snapshot.last_appointment, snapshot.upcoming_appointment, snapshot.patient
    return ClinikoPatientUpdate(
        firstName=patient.first_name,
        lastName=patient.last_name,
        email=patient.email,
        phone=_phone(snapshot),
        dateOfBirth=patient.date_of_birth,
        state=None,
        city=None,
        upcoming_appointment_cancelled_at=nxt.cancelled_at if nxt else None,
        upcoming_appointment_cancellation_reason=nxt.cancel_reason if nxt else None,
        # Cliniko names an appointment by its appointment type: `_name` and `_type` carry the same value.
        upcoming_appointment_name=nxt.service_name if nxt else None,
        last_appointment_name=last.service_name if last else None,
        last_updated_date_via_api=at,
        last_appointment_cancelled_at=last.cancelled_at if last else None,
        last_appointment_did_not_arrive=(last.status == AppointmentStatus.NOSHOW) if last else None,
        last_appointment_cancellation_reason=last.cancel_reason if last else None,
        upcoming_appointment_reminder_start_time=None,
        patient_id=patient.id,
        upcoming_appointment_start_time=nxt.start if nxt else None,
        upcoming_appointment_business_name=nxt.location_name if nxt else None,
        upcoming_appointment_practitioner_name=nxt.practitioner_name if nxt else None,
        upcoming_appointment_type=nxt.service_name if nxt else None,
        upcoming_appointment_counts=snapshot.upcoming_count,
        accepted_email_marketing=None,
        accepted_sms_marketing=None,
        total_amount_spent=None,
        total_amount_spent_this_month=None,
        total_number_of_appointments=snapshot.total_appointments,
        last_appointment_start_time=last.start if last else None,
        last_appointment_business_name=last.location_name if last else None,
        last_appointment_practitioner_name=last.practitioner_name if last else None,
        last_appointment_type=last.service_name if last else None,
    )


def nookal(snapshot: PatientSnapshot, at: datetime) -> NookalPatientUpdate:
    last, nxt, patient = snapshot.last_appointment, snapshot.upcoming_appointment, snapshot.patient
    return NookalPatientUpdate(
        last_updated_date_via_api=at.date(),
        patient_id=patient.id,
        firstName=patient.first_name,
        lastName=patient.last_name,
        email=patient.email,
        phone=_phone(snapshot),
        dateOfBirth=patient.date_of_birth,
        state=None,
        city=None,
        gender=None,
        address1=None,
        postalCode=None,
        appointments_count=snapshot.total_appointments,
        last_appt_arrived=_when(last, *VISITED),
        last_appt_dna=_when(last, AppointmentStatus.NOSHOW),
        last_appt_cancelled=_when(last, AppointmentStatus.CANCELLED),
        last_appt_cancellationDate=last.cancelled_at.date() if last and last.cancelled_at else None,
        last_appt_practitioner_name=last.practitioner_name if last else None,
        last_appt_type=last.service_name if last else None,
        last_appt_location=last.location_name if last else None,
        last_appt_date=_local_date(last),
        upcoming_appt_type=nxt.service_name if nxt else None,
        upcoming_appt_location=nxt.location_name if nxt else None,
        upcoming_appt_date=_local_date(nxt),
        upcoming_appt_practitioner_name=nxt.practitioner_name if nxt else None,
        upcoming_appt_reminder_time=None,
        total_amount_paid=None,
        total_unpaid_balance=None,
    )


_SP_STATES = {
    AppointmentStatus.ARRIVED: "arrived",
    AppointmentStatus.CHECKED_IN: "arrived",
    AppointmentStatus.FULFILLED: "arrived",
    AppointmentStatus.CANCELLED: "cancelled",
    AppointmentStatus.NOSHOW: "no_show",
}


def _sp_state(appointment: AppointmentSummary | None) -> str | None:
    return _SP_STATES.get(appointment.status, "booked") if appointment else None


def simplepractice(snapshot: PatientSnapshot, at: datetime) -> SimplePracticeClientUpdate:
    last, nxt = snapshot.last_appointment, snapshot.upcoming_appointment
    return SimplePracticeClientUpdate(
        client_id=snapshot.patient.id,
        last_updated_date_via_api=at.date(),
        last_appt_start_at=last.start if last else None,
        last_appt_end_at=last.end if last else None,
        last_appt_location_name=last.location_name if last else None,
        last_appt_treatment_name=last.service_name if last else None,
        last_appt_staff_member_name=last.practitioner_name if last else None,
        last_appt_state=_sp_state(last),
        upcoming_appt_start_at=nxt.start if nxt else None,
        upcoming_appt_end_at=nxt.end if nxt else None,
        upcoming_appt_location_name=nxt.location_name if nxt else None,
        upcoming_appt_treatment_name=nxt.service_name if nxt else None,
        upcoming_appt_staff_member_name=nxt.practitioner_name if nxt else None,
        upcoming_appt_state=_sp_state(nxt),
        upcoming_appt_reminder_start_time=None,
        total_payment_made=None,
        total_remaining_balance=None,
        total_appt_arrived=snapshot.visit_count,
        total_appt_cancelled=snapshot.cancellation_count,
        total_appt_no_show=snapshot.no_show_count,
    )


def practicebetter(snapshot: PatientSnapshot, at: datetime) -> PracticeBetterClientUpdate:
    session = snapshot.upcoming_appointment or snapshot.last_appointment
    first, last = _split_name(session.practitioner_name if session else None)
    none: dict[str, Any] = {
        name: None
        for name in PracticeBetterClientUpdate.__struct_fields__
        if name.startswith("dietLifestyle_") or name in _PB_UNKNOWN
    }
    return PracticeBetterClientUpdate(
        client_id=snapshot.patient.id,
        session_service_name=session.service_name if session else None,
        session_consultant_firstName=first,
        session_consultant_lastName=last,
        session_sessionDate=session.start if session else None,
        session_endDate=session.end if session else None,
        session_duration=int((session.end - session.start).total_seconds() // 60) if session else None,
        session_location_name=session.location_name if session else None,
        session_cancelled=(session.status == AppointmentStatus.CANCELLED) if session else None,
        session_upcoming=(session is snapshot.upcoming_appointment) if session else None,
        **none,
    )


_PB_UNKNOWN = frozenset(
    {
        "client_isActive",
        "client_status",
        "client_preferredName",
        "client_referredBy",
        "client_notes",
        "client_amountPaid",
        "session_serviceType",
        "session_consultant_emailAddress",
        "session_actualDuration",
        "session_location_address",
        "session_location_room",
        "session_paymentStatus",
        "session_fee_amount",
        "session_isRecurring",
        "session_isSubscription",
        "session_hasRecording",
        "session_confirmationStatus",
        "session_clientConfirmationStatus",
        "session_dateConfirmed",
        "session_dateCreated",
        "session_dateModified",
        "session_notes",
    }
)


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    """The summary carries the display name only; "Jane Doe" → ("Jane", "Doe")."""
    if not name:
        return None, None
    first, _, last = name.rpartition(" ")
    return (first, last) if first else (last, None)


# Jane's payload is Jane's own patient record (plus ClinicSync's counters), with appointments as Jane renders them.
# The key lists are the seed example's, in order; a key whose seed value is a list is [] when unknown, else null.
JANE_PATIENT_KEYS = (
    "id", "first_name", "last_name", "middle_name", "name", "email", "home_phone", "work_phone", "mobile_phone",
    "prefix", "addressable_name", "fax_phone", "street_address", "street_address_2", "city", "province", "postal",
    "country", "personal_health_number", "dob", "member_since", "patient_number", "send_notifications",
    "send_sms_notifications", "email_wait_list_notifications", "sms_wait_list_notifications",
    "email_auto_pay_balance_notifications", "sms_auto_pay_balance_notifications", "enable_financial_notifications",
    "enable_auto_pay_balance_notifications", "reminder_type_ids", "last_login", "msp_eligible", "guardian_name",
    "referral_source", "referring_staff_member_id", "marketing_emails", "gender", "identifying_gender",
    "do_not_email", "ratings_emails", "preferred_name", "preferred_first_name", "all_names", "pronouns",
    "occupation", "employer", "staff_member_id", "staff_user", "emergency_contact_name", "emergency_contact_phone",
    "emergency_contact_relationship", "referring_professional", "referring_professional_phone",
    "referring_professional_email", "family_doctor", "family_doctor_phone", "family_doctor_email", "medical_alert",
    "discharged", "deceased", "online_booking_policy", "online_booking_payment_policy", "primary_phone",
    "test_patient", "patient_type", "public_id", "selected_reminder_types", "last_appointment",
    "upcoming_appointments", "logins", "relationships", "received_relationships", "default_adjustments", "passes",
    "credit_card_details", "notes", "photo", "photo_lg", "appointments_count", "upcoming_appointments_count",
    "active_booking_reminders_count", "no_show_count", "chart_entries_count", "relationships_count",
    "email_status", "email_ok", "email_intake_form_ok", "email_notify_ok", "mobile_status", "mobile_ok", "balance",
    "available_credit", "amount_owing", "claims_amount_owing", "loyalty_balance", "additional_receipt_recipients",
    "last_payment_reminder", "second_upcoming_appointment", "total_purchased", "last_updated_date_via_api",
    "total_payment_amount", "total_remaining_balance", "total_payment_made", "total_appt_booked",
    "total_appt_cancelled", "total_appt_no_show", "total_appt_arrived", "total_appt_rescheduled", "patient_notes",
    "credit_card_expiry_formatted", "intake_forms_summary", "appointmentsObject",
)  # fmt: skip
JANE_APPOINTMENT_KEYS = (
    "id", "location_id", "room_id", "resource_ids", "start_at", "end_at", "patient_id", "primary_patient_id",
    "staff_member_id", "staff_member_name", "treatment_id", "archived_at", "no_show_at", "cancelled_at",
    "booked_at", "break", "state", "additional_states", "arrived_at", "checked_in_at", "patient_name",
    "patient_is_primary", "primary_patient_name", "patient", "primary_patient", "patient_video_session_state",
    "treatment_name", "color", "capacity", "class_booking", "parent_appointment_id", "participant_count",
    "arrived_participant_count", "purchase_id", "sale_id", "purchased", "purchase_state", "patient_paid",
    "has_notes", "notes_text", "first_visit", "insurance_state", "updated_at", "chart_status", "reschedulable",
    "order_id", "order_item_id", "pass", "pass_id", "package_id", "membership_id", "child_appointment_ids",
    "original_appointment_id", "rescheduled", "cancelled", "online_only", "wait_list_block", "booking_type",
    "group_booking", "treatment_add_ons", "referral_source",
)  # fmt: skip
_JANE_LISTS = frozenset(
    (
        "reminder_type_ids", "selected_reminder_types", "upcoming_appointments", "logins", "relationships",
        "received_relationships", "default_adjustments", "passes", "credit_card_details", "notes",
        "second_upcoming_appointment", "appointmentsObject", "resource_ids", "additional_states",
        "insurance_state", "child_appointment_ids", "treatment_add_ons",
    )
)  # fmt: skip
_JANE_RENAMES = {"pass": "pass_", "break": "break_"}


def _jane_struct(name: str, keys: tuple[str, ...]) -> type[_Payload]:
    fields = [(_JANE_RENAMES.get(k, k), Any) for k in keys]
    rename = {v: k for k, v in _JANE_RENAMES.items() if k in keys}
    return msgspec.defstruct(name, fields, bases=(_Payload,), kw_only=True, rename=rename)  # type: ignore[return-value]


JanePatientUpdate = _jane_struct("JanePatientUpdate", JANE_PATIENT_KEYS)
JaneAppointment = _jane_struct("JaneAppointment", JANE_APPOINTMENT_KEYS)

_JANE_STATES = {
    AppointmentStatus.CANCELLED: "cancelled",
    AppointmentStatus.NOSHOW: "no_show",
    AppointmentStatus.ARRIVED: "arrived",
    AppointmentStatus.CHECKED_IN: "arrived",
    AppointmentStatus.FULFILLED: "arrived",
    AppointmentStatus.PENDING: "reserved",
}


def _jane_id(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _jane_defaults(keys: tuple[str, ...]) -> dict[str, Any]:
    return {_JANE_RENAMES.get(k, k): [] if k in _JANE_LISTS else None for k in keys}


def _jane_appointment(appointment: AppointmentSummary, snapshot: PatientSnapshot) -> _Payload:
    zone = ZoneInfo(appointment.time_zone)
    patient = snapshot.patient
    name = f"{patient.first_name} {patient.last_name}"
    values = _jane_defaults(JANE_APPOINTMENT_KEYS)
    values.update(
        id=_jane_id(appointment.id),
        location_id=_jane_id(appointment.location_id),
        start_at=appointment.start.astimezone(zone),
        end_at=appointment.end.astimezone(zone),
        patient_id=_jane_id(patient.id),
        primary_patient_id=_jane_id(patient.id),
        staff_member_id=_jane_id(appointment.practitioner_id),
        staff_member_name=appointment.practitioner_name,
        treatment_id=_jane_id(appointment.service_id),
        cancelled_at=appointment.cancelled_at.astimezone(zone) if appointment.cancelled_at else None,
        break_=False,
        state=_JANE_STATES.get(appointment.status, "booked"),
        patient_name=name,
        patient_is_primary=True,
        primary_patient_name=name,
        treatment_name=appointment.service_name,
        cancelled=appointment.status == AppointmentStatus.CANCELLED,
        booking_type="one_on_one_booking",
        class_booking=False,
        group_booking=False,
    )
    return JaneAppointment(**values)


def jane(snapshot: PatientSnapshot, at: datetime) -> _Payload:
    """Fields the gateway does not read from Jane (money, address, consent, reminders, notes) stay null or []."""
    patient, last, nxt = snapshot.patient, snapshot.last_appointment, snapshot.upcoming_appointment
    name = f"{patient.first_name} {patient.last_name}"
    known = [a for a in (last, nxt) if a is not None]
    values = _jane_defaults(JANE_PATIENT_KEYS)
    values.update(
        id=_jane_id(patient.id),
        first_name=patient.first_name,
        last_name=patient.last_name,
        name=name,
        email=patient.email,
        mobile_phone=_phone(snapshot),
        addressable_name=patient.first_name,
        dob=patient.date_of_birth,
        patient_number=patient.id,
        preferred_first_name=patient.first_name,
        all_names=name,
        last_appointment=_jane_appointment(last, snapshot) if last else None,
        upcoming_appointments=[_jane_appointment(nxt, snapshot)] if nxt else [],
        appointments_count=snapshot.total_appointments,
        upcoming_appointments_count=snapshot.upcoming_count,
        no_show_count=snapshot.no_show_count,
        last_updated_date_via_api=at,
        total_appt_cancelled=snapshot.cancellation_count,
        total_appt_no_show=snapshot.no_show_count,
        total_appt_arrived=snapshot.visit_count,
        appointmentsObject=[_jane_appointment(a, snapshot) for a in known],
    )
    return JanePatientUpdate(**values)


CLINICSYNC: dict[str, Callable[[PatientSnapshot, datetime], _Payload]] = {
    "cliniko": cliniko,
    "nookal": nookal,
    "simplepractice": simplepractice,
    "practicebetter": practicebetter,
    "jane": jane,
}
"""EMR slug → its ClinicSync patient-update shape. PtEverywhere's is not built."""


def render(event: WebhookEvent, fmt: PayloadFormat) -> bytes:
    """The request body for one subscriber. The signature covers exactly these bytes."""
    if fmt == PayloadFormat.CLINICSYNC and isinstance(event.data, PatientSnapshot):
        shape = CLINICSYNC.get(event.emr)
        if shape is not None:
            return msgspec.json.encode(shape(event.data, event.timestamp))
    return msgspec.json.encode(event)

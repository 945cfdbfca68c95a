"""Payload formats: the normalized envelope, and ClinicSync's per-EMR patient update key for key."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import msgspec

from gateway.storage.outbox import decode_event
from gateway.webhooks.formats import render
from schemas.appointments import AppointmentStatus
from schemas.patients import Patient
from schemas.webhooks import AppointmentSummary, EventType, PatientSnapshot, PayloadFormat, WebhookEvent

# Copied verbatim, in order, from the seed document's example payloads
# ("Webhook Payload (For Non GHL Users): <EMR> Patient Update", reference/seeds/clinicsync-pro-documentation.txt).
SEED_KEYS = {
    "cliniko": [
        "firstName", "lastName", "email", "phone", "dateOfBirth", "state", "city", "upcoming_appointment_cancelled_at",
        "upcoming_appointment_cancellation_reason", "upcoming_appointment_name", "last_appointment_name",
        "last_updated_date_via_api", "last_appointment_cancelled_at", "last_appointment_did_not_arrive",
        "last_appointment_cancellation_reason", "upcoming_appointment_reminder_start_time", "patient_id",
        "upcoming_appointment_start_time", "upcoming_appointment_business_name",
        "upcoming_appointment_practitioner_name", "upcoming_appointment_type", "upcoming_appointment_counts",
        "accepted_email_marketing", "accepted_sms_marketing", "total_amount_spent", "total_amount_spent_this_month",
        "total_number_of_appointments", "last_appointment_start_time", "last_appointment_business_name",
        "last_appointment_practitioner_name", "last_appointment_type",
    ],
    "nookal": [
        "last_updated_date_via_api", "patient_id", "firstName", "lastName", "email", "phone", "dateOfBirth", "state",
        "city", "gender", "address1", "postalCode", "appointments_count", "last_appt_arrived", "last_appt_dna",
        "last_appt_cancelled", "last_appt_cancellationDate", "last_appt_practitioner_name", "last_appt_type",
        "last_appt_location", "last_appt_date", "upcoming_appt_type", "upcoming_appt_location", "upcoming_appt_date",
        "upcoming_appt_practitioner_name", "upcoming_appt_reminder_time", "total_amount_paid", "total_unpaid_balance",
    ],
    "simplepractice": [
        "client_id", "last_updated_date_via_api", "last_appt_start_at", "last_appt_end_at", "last_appt_location_name",
        "last_appt_treatment_name", "last_appt_staff_member_name", "last_appt_state", "upcoming_appt_start_at",
        "upcoming_appt_end_at", "upcoming_appt_location_name", "upcoming_appt_treatment_name",
        "upcoming_appt_staff_member_name", "upcoming_appt_state", "upcoming_appt_reminder_start_time",
        "total_payment_made", "total_remaining_balance", "total_appt_arrived", "total_appt_cancelled",
        "total_appt_no_show",
    ],
    "practicebetter": [
        "client_id", "client_isActive", "client_status", "client_preferredName", "client_referredBy", "client_notes",
        "client_amountPaid", "session_service_name", "session_serviceType", "session_consultant_firstName",
        "session_consultant_lastName", "session_consultant_emailAddress", "session_sessionDate", "session_endDate",
        "session_duration", "session_actualDuration", "session_location_name", "session_location_address",
        "session_location_room", "session_paymentStatus", "session_fee_amount", "session_cancelled",
        "session_upcoming", "session_isRecurring", "session_isSubscription", "session_hasRecording",
        "session_confirmationStatus", "session_clientConfirmationStatus", "session_dateConfirmed",
        "session_dateCreated", "session_dateModified", "session_notes", "dietLifestyle_dateCreated",
        "dietLifestyle_dietaryRestrictions", "dietLifestyle_drinksCoffee", "dietLifestyle_drinksAlcohol",
        "dietLifestyle_smoker", "dietLifestyle_exerciseInformation", "dietLifestyle_sleepInformation",
        "dietLifestyle_mainStressors", "dietLifestyle_hasPets", "dietLifestyle_notes",
    ],
}  # fmt: skip

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def summary(appointment_id: str, start: datetime, status: AppointmentStatus, **extra: str) -> AppointmentSummary:
    return AppointmentSummary(
        id=appointment_id,
        status=status,
        start=start,
        end=start + timedelta(minutes=30),
        time_zone="Australia/Sydney",
        practitioner_id="p1",
        practitioner_name="Alice Nguyen",
        service_id="s1",
        service_name="Standard Consultation",
        location_id="loc_1",
        location_name="North Clinic",
        **extra,  # type: ignore[arg-type]
    )


def event(emr: str) -> WebhookEvent:
    snapshot = PatientSnapshot(
        patient=Patient(
            id="123456",
            first_name="Sam",
            last_name="Smith",
            email="sam.smith@example.com",
            phones=["+61400000000"],
            date_of_birth=date(1990, 1, 1),
        ),
        last_appointment=summary("a1", NOW - timedelta(days=3), AppointmentStatus.NOSHOW),
        upcoming_appointment=summary("a2", NOW + timedelta(days=2), AppointmentStatus.BOOKED),
        upcoming_count=1,
        visit_count=4,
        cancellation_count=1,
        no_show_count=1,
        total_appointments=7,
    )
    return WebhookEvent(
        id="evt_1", type=EventType.PATIENT_UPDATED, timestamp=NOW, location_id="loc_1", emr=emr, data=snapshot
    )


def test_clinicsync_payloads_have_exactly_the_seed_keys_in_order() -> None:
    for emr, keys in SEED_KEYS.items():
        body = msgspec.json.decode(render(event(emr), PayloadFormat.CLINICSYNC))
        assert list(body) == keys, emr


def test_clinicsync_cliniko_values_come_from_the_snapshot() -> None:
    body = msgspec.json.decode(render(event("cliniko"), PayloadFormat.CLINICSYNC))
    assert body["firstName"] == "Sam"
    assert body["phone"] == "+61400000000"
    assert body["dateOfBirth"] == "1990-01-01"
    assert body["patient_id"] == "123456"
    assert body["last_appointment_did_not_arrive"] is True
    assert body["upcoming_appointment_start_time"] == "2026-03-04T09:00:00Z"
    assert body["upcoming_appointment_practitioner_name"] == "Alice Nguyen"
    assert body["upcoming_appointment_business_name"] == "North Clinic"
    assert body["upcoming_appointment_type"] == "Standard Consultation"
    assert (body["upcoming_appointment_counts"], body["total_number_of_appointments"]) == (1, 7)
    assert body["total_amount_spent"] is None  # the gateway reads no invoices
    assert body["last_updated_date_via_api"] == "2026-03-02T09:00:00Z"


def test_nookal_and_simplepractice_dates_and_states() -> None:
    nookal = msgspec.json.decode(render(event("nookal"), PayloadFormat.CLINICSYNC))
    assert nookal["last_appt_dna"] == "2026-02-27T09:00:00Z"
    assert nookal["last_appt_arrived"] is None
    assert nookal["upcoming_appt_date"] == "2026-03-04"  # the appointment's local day (Sydney)
    practice = msgspec.json.decode(render(event("simplepractice"), PayloadFormat.CLINICSYNC))
    assert (practice["last_appt_state"], practice["upcoming_appt_state"]) == ("no_show", "booked")
    assert (practice["total_appt_arrived"], practice["total_appt_no_show"]) == (4, 1)


def test_normalized_is_the_standard_webhooks_envelope_and_round_trips() -> None:
    original = event("cliniko")
    body = render(original, PayloadFormat.NORMALIZED)
    decoded = msgspec.json.decode(body)
    assert {"type", "timestamp", "data", "id", "location_id", "emr"} <= set(decoded)
    assert decoded["type"] == "patient.updated"
    assert decoded["data"]["visit_count"] == 4
    assert decode_event(body) == original
    # Only patient.updated has a ClinicSync shape; other events keep the normalized envelope.
    assert render(original, PayloadFormat.CLINICSYNC) != body

"""Jane's ClinicSync patient update: the seed's patient record key for key, appointments rendered as Jane does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from gateway.webhooks.formats import JANE_APPOINTMENT_KEYS, JANE_PATIENT_KEYS, render
from schemas.webhooks import PayloadFormat
from tests.sync.test_formats import event

SEED = Path("/work/shared/reference/seeds/clinicsync-pro-documentation.txt")


def test_jane_keys_are_the_seed_example_keys_in_order() -> None:
    if SEED.exists():  # the reference copy is outside the repository; the key lists in formats.py are its transcript
        text = SEED.read_text()
        start = text.index("\n{", text.index("Webhook Payload (For non GHL Users): Jane Patient Update"))
        end = re.search(r"\n}", text[start + 2 :])
        assert end is not None
        seed = json.loads(text[start : start + 2 + end.end()])
        assert list(seed) == list(JANE_PATIENT_KEYS)
        assert list(seed["last_appointment"]) == list(JANE_APPOINTMENT_KEYS)
    body = msgspec.json.decode(render(event("jane"), PayloadFormat.CLINICSYNC))
    assert list(body) == list(JANE_PATIENT_KEYS)
    assert list(body["last_appointment"]) == list(JANE_APPOINTMENT_KEYS)
    assert [list(a) for a in body["upcoming_appointments"]] == [list(JANE_APPOINTMENT_KEYS)]


def test_jane_values_come_from_the_snapshot() -> None:
    body = msgspec.json.decode(render(event("jane"), PayloadFormat.CLINICSYNC))
    assert (body["id"], body["patient_number"]) == (123456, "123456")
    assert (body["first_name"], body["name"], body["mobile_phone"]) == ("Sam", "Sam Smith", "+61400000000")
    assert body["dob"] == "1990-01-01"
    assert (body["appointments_count"], body["upcoming_appointments_count"]) == (7, 1)
    assert (body["total_appt_arrived"], body["total_appt_no_show"], body["total_appt_cancelled"]) == (4, 1, 1)
    assert body["last_updated_date_via_api"] == "2026-03-02T09:00:00Z"
    last, upcoming = body["last_appointment"], body["upcoming_appointments"][0]
    assert last["state"] == "no_show"
    assert upcoming["state"] == "booked"
    assert upcoming["start_at"] == "2026-03-04T20:00:00+11:00"  # Jane renders the clinic's wall time with its offset
    assert (upcoming["staff_member_name"], upcoming["treatment_name"]) == ("Alice Nguyen", "Standard Consultation")
    assert upcoming["break"] is False
    assert body["balance"] is None  # the gateway reads no invoices
    assert body["logins"] == []
    assert [a["id"] for a in body["appointmentsObject"]] == ["a1", "a2"]

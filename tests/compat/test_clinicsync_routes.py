"""Every documented ClinicSync book/update/cancel body, replayed verbatim against the gateway and its EMR emulator."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from adapters.emulation import Fault, FaultKind
from gateway.compat.table import CLINICSYNC_ROUTES
from tests.compat.conftest import emulator_appointment, future
from tests.gateway.conftest import Harness

BODIES = Path(__file__).parent / "bodies"

# The document's placeholders -> what the emulator's seed holds (the only edit made to the documented bodies).
SEEDED = {
    "practitioner@email.com": "alice.nguyen@example.com",
    "Physio Consult": "Standard Consultation",
    "Dr. Jane Doe": "Alice Nguyen",
    "PHYSIO30": "Standard Consultation",  # a code that matches no code is tried as a name
    "therapist@example.com": "ben.carter@example.com",
    "90791": "Initial Assessment",
    "practitioner@clinic.com": "ben.carter@example.com",
    "Initial Consultation": "Initial Assessment",
}


class Step(msgspec.Struct, frozen=True):
    path: str
    body: str  # file in bodies/
    start: str | None  # where the appointment must be in the EMR afterwards; None: cancelled
    keys: frozenset[str]  # the documented success response's top-level keys
    values: dict[str, Any] = {}
    nested: frozenset[str] = frozenset()  # documented keys of response["appointment"]


BOOK_KEYS = frozenset({"success", "appointment", "message", "bookedAppointment"})  # Cliniko's and Jane's, one path
OK_APPT = frozenset({"success", "appointment"})
SP_BOOKED = frozenset(
    {"id", "start", "end", "serviceCode", "duration", "clientId", "clinicianId", "practiceId", "source"}
)


def _ghl(emr: str, book: str, update: str, cancel: str, new_start: str) -> list[Step]:
    return [
        Step(book, f"{emr}_book.json", "2024-08-02T10:00:00Z", BOOK_KEYS,
             {"success": True, "message": "Appointment booked successfully"}),
        Step(update, f"{emr}_update.json", new_start, OK_APPT, {"success": True}),
        Step(cancel, f"{emr}_cancel.json", None, OK_APPT, {"success": True}),
    ]  # fmt: skip


FLOWS: dict[str, list[Step]] = {
    "jane": _ghl("jane", "/api-book-appointment", "/api-update-appointment", "/api-cancel-appointment",
                 "2024-08-02T12:00:00Z"),
    "jane-ghl": _ghl("jane", "/bookAppt", "/update_appt", "/cancel_appt", "2024-08-02T12:00:00Z"),
    "cliniko": _ghl("cliniko", "/api-book-appointment", "/api-update-appointment", "/api-cancel-appointment",
                    "2024-08-02T11:00:00Z"),
    "cliniko-ghl": _ghl("cliniko", "/bookAppt", "/update_appt", "/cancel_appt", "2024-08-02T11:00:00Z"),
    "nookal": [
        Step("/api/nookal/book_appt", "nookal_book.json", "2024-08-02T10:00:00Z",
             frozenset({"success", "apptID", "appointment"}), {"success": True}),
        Step("/api/nookal/update_appt", "nookal_update.json", "2024-08-02T11:00:00Z",
             frozenset({"success", "updated"}), {"success": True}),
        Step("/api/nookal/cancel_appt", "nookal_cancel.json", None, frozenset({"success", "canceled"}),
             {"success": True}),
    ],
    "simplepractice": [
        Step("/appointments/book", "simplepractice_book.json", "2025-03-20T10:00:00Z",
             frozenset({"status", "appointment"}), {"status": "booked"}, SP_BOOKED),
        Step("/appointments/update", "simplepractice_update.json", "2025-03-20T11:00:00Z",
             frozenset({"status", "appointment"}), {"status": "updated"},
             frozenset({"id", "start", "end", "serviceCode"})),
        Step("/appointments/cancel", "simplepractice_cancel.json", None,
             frozenset({"ok", "deleted", "appointmentId"}), {"ok": True, "deleted": True}),
    ],
    "practicebetter": [
        Step("/bookSession", "practicebetter_book.json", "2026-02-01T01:00:00Z",
             frozenset({"status", "appointmentId"}), {"status": "booked"}),
        Step("/rescheduleSession", "practicebetter_update.json", "2026-02-02T02:00:00Z",
             frozenset({"status", "appointment"}), {"status": "updated"},
             frozenset({"id", "start", "end", "duration"})),
        Step("/cancelSession", "practicebetter_cancel.json", None,
             frozenset({"ok", "cancelled", "appointmentId"}), {"ok": True, "cancelled": True}),
    ],
}  # fmt: skip

# Ids the documents write as the EMR's own (the book response tells the real one); the others are GHL/external ids
# the gateway linked at booking and are sent verbatim.
EMR_ID_PLACEHOLDERS = ("123456", "YOUR_EXTERNAL_APPT_ID")


def _body(name: str, emr_id: str | None) -> dict[str, Any]:
    text = future((BODIES / name).read_text())
    for documented, seeded in SEEDED.items():
        text = text.replace(documented, seeded)
    for placeholder in EMR_ID_PLACEHOLDERS:
        if emr_id is not None:
            text = text.replace(f'"{placeholder}"', json.dumps(emr_id))
    body: dict[str, Any] = json.loads(text)
    return body


def _appointment_id(answer: dict[str, Any]) -> str:
    for key in ("appointment", "updated", "canceled"):
        if isinstance(answer.get(key), dict):
            return str(answer[key]["id"])
    return str(answer.get("apptID") or answer["appointmentId"])


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(future(text).replace("Z", "+00:00"))


def test_every_documented_body_books_moves_and_cancels(emr_harness: Harness) -> None:
    """One harness per backend; the flows run one after another (each ends cancelled, freeing the slot)."""
    h = emr_harness
    with h.client() as client:
        for flow, steps in FLOWS.items():
            emr_id: str | None = None
            for step in steps:
                answer = client.post(step.path, json=_body(step.body, emr_id))
                assert answer.status_code == 200, f"{flow} {step.path}: {answer.text}"
                data = answer.json()
                assert step.keys <= data.keys(), f"{flow} {step.path}: {sorted(data)}"
                assert {k: data[k] for k in step.values} == step.values, f"{flow} {step.path}"
                if step.nested:
                    assert step.nested <= data["appointment"].keys(), f"{flow} {step.path}"
                found = _appointment_id(data)
                emr_id = emr_id or found
                start, cancelled = emulator_appointment(h, client, found)
                if step.start is None:
                    assert cancelled, f"{flow} {step.path}: not cancelled in the EMR"
                else:
                    assert not cancelled, f"{flow} {step.path}: cancelled in the EMR"
                    assert start == _instant(step.start), f"{flow} {step.path}: {start}"


def test_documented_cancel_reason_and_note_reach_the_emr(emr_harness: Harness) -> None:
    h = emr_harness
    with h.client() as client:
        booked = client.post("/api-book-appointment", json=_body("cliniko_book.json", None)).json()
        appointment_id = booked["appointment"]["id"]
        answer = client.post("/api-cancel-appointment", json=_body("cliniko_cancel.json", None)).json()
        assert answer["appointment"]["status"] == "cancelled"
        assert answer["appointment"]["cancel_note"] == "Client requested cancellation"
        assert answer["appointment"]["cancel_reason"] == "other"  # Cliniko's code 50
        assert answer["appointment"]["id"] == appointment_id


def test_a_retried_ghl_webhook_books_once(emr_harness: Harness) -> None:
    h = emr_harness
    with h.client() as client:
        first = client.post("/bookAppt", json=_body("jane_book.json", None))
        again = client.post("/bookAppt", json=_body("jane_book.json", None))
        assert first.status_code == again.status_code == 200
        assert first.json()["appointment"]["id"] == again.json()["appointment"]["id"]
        mine = client.get("/v1/appointments", params={"patient_id": first.json()["appointment"]["patient_id"]})
        assert len([a for a in mine.json()["items"] if a["status"] == "booked"]) == 1


def test_compat_routes_need_the_key_and_say_what_is_missing(emr_harness: Harness) -> None:
    h = emr_harness
    with h.anonymous() as anonymous:
        for route in CLINICSYNC_ROUTES:
            assert anonymous.post(route.path, json={}).status_code == 401, route.path
    with h.client() as client:
        missing = client.post("/api-book-appointment", json={"calendar": {"startTime": "2026-12-01T10:00:00Z"}})
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "customData.staff_member"
        unknown_id = client.post("/api/nookal/cancel_appt", json={"appointmentId": "999"})
        assert unknown_id.status_code == 404


def test_the_table_covers_every_documented_path() -> None:
    documented = {
        "/api-book-appointment", "/api-update-appointment", "/api-cancel-appointment", "/bookAppt", "/update_appt",
        "/cancel_appt", "/api/nookal/book_appt", "/api/nookal/update_appt", "/api/nookal/cancel_appt",
        "/appointments/book", "/appointments/update", "/appointments/cancel", "/bookSession", "/rescheduleSession",
        "/cancelSession", "/ai_brain/fetchAllStaff", "/ai_brain/fetchAllTreatments", "/ai_brain/fetchAllLocations",
        "/ai_brain/fetchAvailabilityForRange", "/ai_brain/fetchAvailabilityNext7Days",
        "/ai_brain/lookup-create-patient",
        "/ai_brain/fetchPatientsAppointments", "/ai_brain/createAppt", "/ai_brain/bookAppt", "/ai_brain/cancelAppt",
        "/ai_brain/rescheduleAppt",
    }  # fmt: skip
    assert {r.path for r in CLINICSYNC_ROUTES} == documented


def test_concurrent_retries_of_one_ghl_booking_are_in_flight_not_slot_unavailable(harness: Harness) -> None:
    """GHL fires its retry while the first call is still booking (a slow EMR): the retry is told the booking is in
    flight (409 idempotency_in_flight), never slot_unavailable for the caller's own booking; one appointment."""
    harness.emulator.faults.add(Fault(kind=FaultKind.LATENCY, method="POST", delay_ms=1200))
    body = _body("jane_book.json", None)
    with ThreadPoolExecutor(2) as pool, harness.client() as client:
        first, second = pool.map(lambda _: client.post("/bookAppt", json=body), range(2))
    answers = sorted([first, second], key=lambda r: r.status_code)
    assert [r.status_code for r in answers] == [200, 409], [r.text for r in answers]
    assert answers[1].json()["code"] == "idempotency_in_flight"
    with harness.client() as client:
        patient = answers[0].json()["appointment"]["patient_id"]
        mine = client.get("/v1/appointments", params={"patient_id": patient}).json()["items"]
        assert len([a for a in mine if a["status"] == "booked"]) == 1
        # Once the first has finished, a retry is answered with the booking it made.
        later = client.post("/bookAppt", json=body)
        assert later.status_code == 200
        assert later.json()["appointment"]["id"] == answers[0].json()["appointment"]["id"]

"""GHL workflow webhook actions end to end: GHL's body as sent, both auth paths, retries, Chicago wall times."""

from __future__ import annotations

import concurrent.futures
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapters.emulation import Fault, FaultKind
from tests.gateway.conftest import Harness
from tests.ghl.conftest import emr_appointment, new_token, workflow_body

CHICAGO = ZoneInfo("America/Chicago")


def future(days: int) -> str:
    return (datetime.now(CHICAGO).date() + timedelta(days=days)).isoformat()


def emr_start(h: Harness, appointment_id: str) -> datetime:
    return datetime.fromisoformat(emr_appointment(h, appointment_id)["starts_at"].replace("Z", "+00:00"))


def test_the_sample_books_once_whichever_auth_path_the_retry_takes(harness: Harness) -> None:
    d = future(3)
    body = workflow_body("ghl-appt-1", f"{d}T10:00:00", f"{d}T10:30:00")
    body["brand_new_field_from_ghl"] = {"anything": [1, 2, 3]}  # unknown fields are ignored, never an error
    token = new_token(harness)
    with harness.client() as c:
        first = c.post("/ghl/v1/appointments/book", json=body)
    assert first.status_code == 201, first.text
    appt = first.json()
    assert appt["status"] == "booked"
    assert datetime.fromisoformat(appt["start"]) == datetime.fromisoformat(f"{d}T10:00:00").replace(tzinfo=CHICAGO)
    with harness.anonymous() as c:
        again = c.post(f"/ghl/v1/{token}/appointments/book", json=body)
    assert again.status_code == 201, again.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == appt["id"]
    assert harness.emulator.stats().active_appointments == 1


@pytest.mark.parametrize("month", [7, 1])
def test_ten_oclock_in_chicago_is_the_right_instant_in_summer_and_winter(harness: Harness, month: int) -> None:
    year = datetime.now(UTC).year + 1
    day = f"{year}-{month:02d}-15"
    with harness.client() as c:
        r = c.post("/ghl/v1/appointments/book", json=workflow_body(f"chi-{month}", f"{day}T10:00:00", None))
    assert r.status_code == 201, r.text
    expected = datetime(year, month, 15, 15 if month == 7 else 16, tzinfo=UTC)  # CDT -5, CST -6
    assert datetime.fromisoformat(r.json()["start"]) == expected
    assert emr_start(harness, r.json()["id"]) == expected


def test_times_with_z_or_an_offset_keep_their_instant(harness: Harness) -> None:
    d = future(6)
    with harness.client() as c:
        z = c.post("/ghl/v1/appointments/book", json=workflow_body("z-1", f"{d}T15:00:00Z", f"{d}T15:30:00Z"))
        off = c.post("/ghl/v1/appointments/book", json=workflow_body("o-1", f"{d}T12:00:00-05:00", None))
    assert z.status_code == 201, z.text
    assert off.status_code == 201, off.text
    assert emr_start(harness, z.json()["id"]) == datetime.fromisoformat(f"{d}T15:00:00+00:00")
    assert emr_start(harness, off.json()["id"]) == datetime.fromisoformat(f"{d}T17:00:00+00:00")


def test_reschedule_and_cancel_carry_only_the_ghl_id(harness: Harness) -> None:
    d = future(4)
    token = new_token(harness)
    url = f"/ghl/v1/{token}/appointments"
    with harness.anonymous() as c:
        booked = c.post(f"{url}/book", json=workflow_body("ghl-r1", f"{d}T09:00:00", None)).json()
        start_a = emr_start(harness, booked["id"])

        moved = c.post(f"{url}/reschedule", json=workflow_body("ghl-r1", f"{d}T11:00:00", None))
        assert moved.status_code == 200, moved.text
        assert moved.json()["id"] == booked["id"]
        assert emr_start(harness, booked["id"]) == start_a + timedelta(hours=2)

        # A -> B -> A moves it back (an earlier reschedule's answer does not replay)
        back = c.post(f"{url}/reschedule", json=workflow_body("ghl-r1", f"{d}T09:00:00", None))
        assert back.status_code == 200, back.text
        assert emr_start(harness, booked["id"]) == start_a

        cancelled = c.post(f"{url}/cancel", json=workflow_body("ghl-r1", f"{d}T09:00:00", None, reason="sick"))
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert emr_appointment(harness, booked["id"])["cancelled_at"] is not None
        retried = c.post(f"{url}/cancel", json=workflow_body("ghl-r1", f"{d}T09:00:00", None))
        assert retried.status_code == 200
        assert retried.json()["status"] == "cancelled"

        unknown = c.post(f"{url}/cancel", json=workflow_body("never-booked", f"{d}T09:00:00", None))
        assert unknown.status_code == 404
        assert "never-booked" in unknown.json()["detail"]


def test_concurrent_retries_through_both_paths_book_once(harness: Harness) -> None:
    d = future(5)
    token = new_token(harness)
    body = workflow_body("ghl-race", f"{d}T13:00:00", None)
    harness.emulator.faults.add(Fault(kind=FaultKind.LATENCY, method="POST", delay_ms=300))

    def send(i: int) -> httpx.Response:
        if i % 2:
            with harness.anonymous() as c:
                return c.post(f"/ghl/v1/{token}/appointments/book", json=body)
        with harness.client() as c:
            return c.post("/ghl/v1/appointments/book", json=body)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, range(4)))
    codes = sorted(r.status_code for r in results)
    assert 201 in codes, [r.text for r in results]
    assert set(codes) <= {201, 409}, [r.text for r in results]
    assert harness.emulator.stats().active_appointments == 1
    harness.emulator.faults.clear()
    with harness.client() as c:  # and a later retry replays the booking
        late = c.post("/ghl/v1/appointments/book", json=body)
    assert late.status_code == 201
    assert late.headers.get("idempotent-replayed") == "true"


def test_calls_without_a_key_or_token_are_refused(harness: Harness) -> None:
    body = workflow_body("ghl-auth", f"{future(3)}T10:00:00", None)
    with harness.anonymous() as c:
        assert c.post("/ghl/v1/appointments/book", json=body).status_code == 401
        r = c.post("/ghl/v1/egw_ghl_notarealtokenatallreally/appointments/book", json=body)
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
        assert c.post("/ghl/v1/whatever/appointments/book", json=body).status_code == 401
    assert harness.emulator.stats().appointments == 0


@pytest.mark.parametrize(
    ("change", "status", "code", "needle"),
    [
        ({"customData": {"appt_type_name": "Standard Consultation"}}, 422, "unknown_practitioner", "staff_member"),
        ({"customData": {"practitionerName": "Alice Nguyen"}}, 422, "unknown_service", "appt_type_name"),
        (
            {"customData": {"practitioner": "Nobody Here", "service": "Standard Consultation"}},
            422,
            "unknown_practitioner",
            "no practitioner matches",
        ),
        ({"calendar": {"startTime": "2030-01-01T10:00:00"}}, 422, "validation_failed", "appointmentId"),
        ({"calendar": {"appointmentId": "x", "startTime": "tomorrow"}}, 422, "validation_failed", "startTime"),
        (
            {"calendar": {"appointmentId": "x", "startTime": "2030-01-01T10:00:00", "selectedTimezone": "Mars/Base"}},
            422,
            "validation_failed",
            "Mars/Base",
        ),
    ],
)
def test_bad_bodies_get_problems_that_say_what_to_fix(
    harness: Harness, change: dict[str, object], status: int, code: str, needle: str
) -> None:
    body = workflow_body("ghl-bad", f"{future(3)}T10:00:00", None)
    body.update(change)
    with harness.client() as c:
        r = c.post("/ghl/v1/appointments/book", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    assert needle in r.text
    assert harness.emulator.stats().appointments == 0


def test_each_emrs_customdata_keys_name_the_practitioner_and_service(harness: Harness) -> None:
    d = future(8)
    variants = [
        {"staff_member": "alice.nguyen@example.com", "treatment_name": "Standard Consultation"},  # Jane
        {"practitionerName": "Ben Carter", "service": "Standard Consultation"},  # Nookal + neutral
        {"clinicianEmail": "ben.carter@example.com", "appt_type_name": "initial  assessment"},  # SP + Cliniko
        {"consultantEmail": "alice.nguyen@example.com", "serviceName": "Initial Assessment"},  # Practice Better
    ]
    with harness.client() as c:
        for i, custom in enumerate(variants):
            r = c.post(
                "/ghl/v1/appointments/book", json=workflow_body(f"k-{i}", f"{d}T{9 + 2 * i:02d}:00:00", None, **custom)
            )
            assert r.status_code == 201, (custom, r.text)
    assert harness.emulator.stats().active_appointments == len(variants)


def test_the_token_never_reaches_a_log(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = new_token(harness)
    body = workflow_body("ghl-log", f"{future(3)}T10:00:00", None)
    with harness.anonymous() as c:
        assert c.post(f"/ghl/v1/{token}/appointments/book", json=body).status_code == 201
        r = c.post(f"/ghl/v1/{token}/appointments/cancel", json={**body, "calendar": {"appointmentId": "nope"}})
        assert r.status_code == 404
        assert token not in r.text
        c.post(f"/ghl/v1/{token}x/appointments/book", json=body)
    assert "/ghl/v1/{token" in caplog.text  # the access log logged the route template
    for secret in (token, token[8:], "jane.doe@example.com", "+15555550123"):
        assert secret not in caplog.text

"""Voice-agent GET routes: query strings in, short sentences with local times out; by-phone acts on the next visit."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.compat.conftest import emulator_appointment
from tests.gateway.conftest import Harness

ZONE = ZoneInfo("Australia/Melbourne")  # the seeded location's zone
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T")
CALLER = {"first_name": "Vera", "last_name": "Caller", "phone": "0412 000 111"}


def _said(moment: datetime) -> str:
    """How the gateway must speak a time: the location's wall clock, e.g. 'Tuesday 3 March at 1:15 PM'."""
    local = moment.astimezone(ZONE)
    clock = local.strftime("%I:%M").lstrip("0").removesuffix(":00")
    return f"{local:%A} {local.day} {local:%B} at {clock} {local:%p}"


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _day(offset: int) -> datetime:
    return datetime.combine(datetime.now(ZONE).date() + timedelta(days=offset), time(0), ZONE)


def _get(client: httpx.Client, path: str, **params: str) -> dict[str, object]:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, f"{path}: {answer.text}"
    data: dict[str, object] = answer.json()
    assert data["success"] is True
    message = str(data["message"])
    assert message.endswith(".")
    assert len(message) < 300
    assert not ISO.search(message)
    return data


def test_best_slot_is_the_earliest_opening_at_or_after_the_requested_time(emr_harness: Harness) -> None:
    h = emr_harness
    day = _day(3)
    requested = day + timedelta(hours=13, minutes=7)
    with h.client() as client:
        # Alice is busy at 13:15; Ben is free.
        busy = client.post(
            "/v1/appointments",
            json={
                "practitioner": {"name": "Alice Nguyen"},
                "service": {"name": "Standard Consultation"},
                "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
                "start": (day + timedelta(hours=13, minutes=15)).isoformat(),
            },
        )
        assert busy.status_code == 201, busy.text
        location = client.get("/v1/locations").json()["items"][0]["name"]
        query = {"treatment_name": "Standard Consultation", "requested_time_utc": _z(requested),
                 "clinic_location_name": location, "time_zone": "Australia/Melbourne"}  # fmt: skip
        anyone = _get(client, "/voice/bestSlot", **query)
        expected = day + timedelta(hours=13, minutes=15)
        assert anyone["found"] is True
        assert anyone["slot"]["start_at"] == _z(expected).replace(".000Z", "Z")  # type: ignore[index]
        assert (
            anyone["message"] == f"The earliest opening is Standard Consultation with Ben Carter on {_said(expected)}."
        )
        alice = _get(client, "/voice/bestSlot", staff_member_name="Alice Nguyen", **query)
        assert alice["message"] == (
            f"The earliest opening is Standard Consultation with Alice Nguyen on "
            f"{_said(day + timedelta(hours=13, minutes=45))}."
        )
        elsewhere = client.get("/voice/bestSlot", params={**query, "clinic_location_name": "Somewhere Else"})
        assert elsewhere.status_code == 404


def test_voice_book_then_by_phone_reschedule_and_cancel_act_on_the_next_appointment(emr_harness: Harness) -> None:
    h = emr_harness
    first = _day(2) + timedelta(hours=15)
    later = _day(4) + timedelta(hours=10)
    with h.client() as client:
        booked = _get(client, "/voice/book", **CALLER, email="vera@example.com",
                      start_at=first.replace(tzinfo=None).isoformat(), treatment_name="Standard Consultation",
                      staff_member_name="Ben Carter")  # fmt: skip
        assert booked["message"] == f"You're booked for Standard Consultation with Ben Carter on {_said(first)}."
        first_id = str(booked["appointment"]["id"])  # type: ignore[index]
        assert emulator_appointment(h, client, first_id) == (first.astimezone(UTC), False)
        second = _get(client, "/voice/book", **CALLER, start_at=_z(later), treatment_name="Initial Assessment",
                      staff_member_name="Alice Nguyen")  # fmt: skip
        second_id = str(second["appointment"]["id"])  # type: ignore[index]

        listed = _get(client, "/voice/patientAppointments", **CALLER)
        assert [a["id"] for a in listed["appointments"]] == [first_id, second_id]  # type: ignore[attr-defined]
        assert listed["message"] == (
            f"You have 2 upcoming appointments: Standard Consultation with Ben Carter on {_said(first)}; "
            f"Initial Assessment with Alice Nguyen on {_said(later)}."
        )

        moved_to = first + timedelta(hours=1)
        moved = _get(client, "/voice/reschedule", **CALLER, new_start_at=_z(moved_to))
        assert moved["appointment"]["id"] == first_id  # type: ignore[index]
        assert (
            moved["message"] == f"Done. Your Standard Consultation with Ben Carter on {_said(moved_to)} is confirmed."
        )
        assert emulator_appointment(h, client, first_id) == (moved_to.astimezone(UTC), False)

        cancelled = _get(client, "/voice/cancel", **CALLER, cancelled_reason="Feeling better")
        assert cancelled["appointment"]["id"] == first_id  # type: ignore[index]
        assert cancelled["message"] == f"Your Standard Consultation with Ben Carter on {_said(moved_to)} is cancelled."
        assert emulator_appointment(h, client, first_id)[1] is True
        assert emulator_appointment(h, client, second_id) == (later.astimezone(UTC), False)

        by_id = _get(client, "/voice/cancel", appointment_id=second_id)
        assert by_id["appointment"]["cancelled"] is True  # type: ignore[index]
        nothing = _get(client, "/voice/patientAppointments", **CALLER)
        assert nothing["message"] == "You have no upcoming appointments."
        assert client.get("/voice/cancel", params=CALLER).status_code == 404


def test_clinic_info_reads_the_catalog_aloud(emr_harness: Harness) -> None:
    with emr_harness.client() as client:
        info = _get(client, "/voice/clinic-info")
        assert {s["full_name"] for s in info["staff"]} == {"Alice Nguyen", "Ben Carter"}  # type: ignore[attr-defined]
        assert {t["name"] for t in info["treatments"]} == {"Standard Consultation", "Initial Assessment"}  # type: ignore[attr-defined]
    with emr_harness.anonymous() as anonymous:
        assert anonymous.get("/voice/clinic-info").status_code == 401

"""The Jane AI receptionist routes (/ai_brain/...): catalog, availability, patients, createAppt -> bookAppt, moves."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.compat.conftest import emulator_appointment
from tests.gateway.conftest import Harness

ZONE = ZoneInfo("Australia/Melbourne")


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _post(client: httpx.Client, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    answer = client.post(f"/ai_brain/{path}", json=body)
    assert answer.status_code == status, f"{path}: {answer.text}"
    data: dict[str, Any] = answer.json()
    return data


def test_receptionist_flow_from_catalog_to_cancellation(emr_harness: Harness) -> None:
    h = emr_harness
    day = datetime.combine(datetime.now(ZONE).date() + timedelta(days=2), time(0), ZONE)
    with h.client() as client:
        staff = _post(client, "fetchAllStaff", {})["staff_members"]
        alice = next(s for s in staff if s["full_name"] == "Alice Nguyen")
        treatments = _post(client, "fetchAllTreatments", {})["treatments"]
        consult = next(t for t in treatments if t["name"] == "Standard Consultation")
        assert consult["duration"] == 30
        assert alice["id"] in consult["staff_member_ids"]
        location = _post(client, "fetchAllLocations", {})["locations"][0]
        assert _post(client, "fetchAllStaff", {"locationId": location["id"]})["staff_members"] == staff
        assert _post(client, "fetchAllStaff", {"locationId": "loc_of_someone_else"}, 404)["code"] == "not_found"

        ranged = _post(client, "fetchAvailabilityForRange", {
            "staff_member_id": alice["id"], "treatment_id": consult["id"],
            "start_date": _z(day), "end_date": _z(day + timedelta(hours=23, minutes=59, seconds=59.999)),
        })["availability"]  # fmt: skip
        assert ranged[0]["start_at"] == _z(day + timedelta(hours=9)).replace(".000Z", "Z")
        assert all(s["staff_member_id"] == alice["id"] for s in ranged)
        week = _post(client, "fetchAvailabilityNext7Days", {"staff_member_name": "Alice Nguyen",
                                                             "treatment_name": "Standard Consultation"})  # fmt: skip
        assert week["availability"]

        person = {"first_name": "Sam", "last_name": "Smith", "phone": "+61400000000", "email": "sam.smith@example.com",
                  "city": "Sydney", "state": "NSW", "country": "AU"}  # fmt: skip
        created = _post(client, "lookup-create-patient", person)
        assert created["created"] is True
        again = _post(client, "lookup-create-patient", person)
        assert again["created"] is False
        assert again["patient"]["id"] == created["patient"]["id"]

        start = day + timedelta(hours=10)
        before = h.emulator.stats().appointments
        provisional = _post(
            client,
            "createAppt",
            {
                "staff_member_id": alice["id"],
                "treatment_id": consult["id"],
                "patient_id": created["patient"]["id"],
                "start_at": _z(start),
            },
        )
        context = provisional["appointment"]
        assert context["end_at"] == _z(start + timedelta(minutes=30)).replace(".000Z", "Z")
        assert h.emulator.stats().appointments == before  # provisional: nothing written to the EMR yet

        booked = _post(client, "bookAppt", {"appointment": context})["appointment"]
        assert booked["state"] == "booked"
        assert booked["treatment_name"] == "Standard Consultation"
        assert emulator_appointment(h, client, booked["id"]) == (start.astimezone(UTC), False)
        taken = _post(
            client,
            "createAppt",
            {
                "staff_member_id": alice["id"],
                "treatment_id": consult["id"],
                "patient_id": created["patient"]["id"],
                "start_at": _z(start),
            },
            409,
        )
        assert taken["code"] == "slot_unavailable"

        listed = _post(client, "fetchPatientsAppointments", {"patient_id": created["patient"]["id"]})
        assert [a["id"] for a in listed["appointments"]] == [booked["id"]]

        later = start + timedelta(hours=2)
        moved = _post(client, "rescheduleAppt", {"appointment_id": booked["id"], "start_at": _z(later)})
        assert moved["appointment"]["start_at"] == _z(later).replace(".000Z", "Z")
        assert emulator_appointment(h, client, booked["id"]) == (later.astimezone(UTC), False)

        gone = _post(client, "cancelAppt", {"appointment_id": booked["id"], "cancelled_reason": "Patient is away",
                                            "with_notifications": True, "send_wlns": True})  # fmt: skip
        assert gone["appointment"]["cancelled"] is True
        assert gone["appointment"]["notes"] is None
        assert emulator_appointment(h, client, booked["id"])[1] is True

"""A change made through the gateway is announced as the write returns, and the poll that reads it back adds nothing."""

from __future__ import annotations

from typing import Any

from schemas.webhooks import AppointmentEventData, EventType, PatientSnapshot
from tests.gateway.conftest import Harness
from tests.sync.support import TZ, Sync, day_ahead

BOOKED, RESCHEDULED, CANCELLED, UPDATED = (
    EventType.APPOINTMENT_BOOKED,
    EventType.APPOINTMENT_RESCHEDULED,
    EventType.APPOINTMENT_CANCELLED,
    EventType.PATIENT_UPDATED,
)


def booking(start: str) -> dict[str, Any]:
    return {
        "practitioner": {"email": "alice.nguyen@example.com"},
        "service": {"name": "Standard Consultation"},
        "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
        "start": start,
        "time_zone": TZ,
    }


def test_gateway_writes_are_announced_at_once_and_never_twice(harness: Harness) -> None:
    sync = Sync(harness)
    here = harness.sites[0].location_id
    sync.tick()  # the poll's cursor predates every write below, so each later poll reads them all back
    d = day_ahead()
    with harness.client() as c:
        r = c.post("/v1/appointments", json=booking(f"{d}T10:00:00"), headers={"Idempotency-Key": "b-1"})
        assert r.status_code == 201, r.text
        appointment_id = r.json()["id"]
        booked, updated = sync.new_events()  # before any poll
        assert (booked.type, booked.location_id, updated.type) == (BOOKED, here, UPDATED)
        assert isinstance(booked.data, AppointmentEventData)
        assert booked.data.appointment.id == appointment_id
        sync.tick()
        assert sync.new_events() == []

        replay = c.post("/v1/appointments", json=booking(f"{d}T10:00:00"), headers={"Idempotency-Key": "b-1"})
        assert replay.headers.get("Idempotent-Replayed") == "true"
        assert sync.new_events() == []

        r = c.patch(f"/v1/appointments/{appointment_id}", json={"start": f"{d}T14:30:00"})
        assert r.status_code == 200, r.text
        moved, updated = sync.new_events()
        assert (moved.type, updated.type) == (RESCHEDULED, UPDATED)
        assert isinstance(moved.data, AppointmentEventData)
        assert moved.data.previous_start == booked.data.appointment.start
        sync.tick()
        assert sync.new_events() == []

        r = c.post(f"/v1/appointments/{appointment_id}/cancel", json={"reason": "sick"})
        assert r.status_code == 200, r.text
        cancelled, updated = sync.new_events()
        assert (cancelled.type, updated.type) == (CANCELLED, UPDATED)
        assert isinstance(cancelled.data, AppointmentEventData)
        assert cancelled.data.appointment.cancel_reason == "sick"
        assert isinstance(updated.data, PatientSnapshot)
        assert updated.data.cancellation_count == 1
        sync.tick()
        assert sync.new_events() == []

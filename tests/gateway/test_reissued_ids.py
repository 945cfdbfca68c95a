"""An EMR that re-issues a rescheduled appointment under a new id (Nookal's rebook as cancel + book): the answer says
so, and a caller or GoHighLevel holding the old id still gets and cancels the right appointment."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from adapters.nookal.emulator import NookalEmulator
from gateway.crypto import Keyring
from gateway.storage.store import Store
from tests.gateway.conftest import Harness, running_harness, two_business_seed

TZ = "Australia/Melbourne"


@pytest.fixture
def nookal(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    emulator = NookalEmulator(two_business_seed(), rebook="new_id")
    with running_harness("nookal", database_url, keyring, emulator=emulator) as h:
        yield h


def test_old_id_follows_the_reissued_appointment(nookal: Harness) -> None:
    day = datetime.now(ZoneInfo(TZ)).date() + timedelta(days=3)
    body = {
        "practitioner": {"email": "alice.nguyen@example.com"},
        "service": {"name": "Standard Consultation"},
        "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
        "start": f"{day}T10:00:00",
        "time_zone": TZ,
    }
    with nookal.client() as c:
        booked = c.post("/v1/appointments", json=body)
        assert booked.status_code == 201, booked.text
        old_id = booked.json()["id"]
        asyncio.run(_link(nookal, old_id))
        moved = c.patch(f"/v1/appointments/{old_id}", json={"start": f"{day}T14:00:00", "time_zone": TZ})
        assert moved.status_code == 200, moved.text
        new_id = moved.json()["id"]
        assert new_id != old_id
        assert moved.json()["replaces_id"] == old_id
        # The caller still holding the old id gets the new appointment, at the new time.
        got = c.get(f"/v1/appointments/{old_id}").json()
        assert got["id"] == new_id
        assert datetime.fromisoformat(got["start"]).astimezone(ZoneInfo(TZ)).hour == 14
        # GoHighLevel's link followed it too.
        assert asyncio.run(_find(nookal)) == new_id
        cancelled = c.post(f"/v1/appointments/{old_id}/cancel", json={"reason": "other"})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["id"] == new_id
        assert cancelled.json()["status"] == "cancelled"
    assert nookal.emulator.stats().active_appointments == 0


async def _link(h: Harness, emr_id: str) -> None:
    store = await Store.open(h.database_url, h.keyring)
    try:
        await store.link_appointment(h.sites[0].location_id, "ghl", "ghl-1", emr_id)
    finally:
        await store.close()


async def _find(h: Harness) -> str | None:
    store = await Store.open(h.database_url, h.keyring)
    try:
        return await store.find_link(h.sites[0].location_id, "ghl", "ghl-1")
    finally:
        await store.close()


def test_an_emr_that_fixes_the_length_refuses_a_chosen_end_clearly(nookal: Harness) -> None:
    """Nookal books an appointment type's own length: a REST caller's different `end` is a clear 422, not a 502."""
    day = datetime.now(ZoneInfo(TZ)).date() + timedelta(days=4)
    body = {
        "practitioner": {"email": "alice.nguyen@example.com"},
        "service": {"name": "Standard Consultation"},
        "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
        "start": f"{day}T10:00:00",
        "end": f"{day}T11:00:00",
        "time_zone": TZ,
    }
    with nookal.client() as c:
        r = c.post("/v1/appointments", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "end"
        r = c.post("/v1/appointments", json={**body, "end": f"{day}T10:30:00"})  # the service's own 30 minutes
        assert r.status_code == 201, r.text
    assert nookal.emulator.stats().active_appointments == 1

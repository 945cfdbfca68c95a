"""GoHighLevel's workflow sample, as GHL sends it, books, retries, reschedules and cancels on every EMR's emulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from adapters.emulators import EMULATORS
from gateway.crypto import Keyring
from tests.gateway.conftest import Harness, running_harness
from tests.ghl.conftest import new_token, workflow_body

TZ = "Australia/Melbourne"  # the seeded clinics' zone, so the times fall in open hours on every emulator


@pytest.fixture(params=sorted(EMULATORS))
def any_emr(request: pytest.FixtureRequest, database_url: str, keyring: Keyring) -> Iterator[Harness]:
    with running_harness(request.param, database_url, keyring) as h:
        yield h


def test_workflow_sample_on_every_emr(any_emr: Harness) -> None:
    h = any_emr
    day = (datetime.now(ZoneInfo(TZ)).date() + timedelta(days=5)).isoformat()
    body = workflow_body("ghl-every-1", f"{day}T10:00:00", f"{day}T10:30:00", tz=TZ)
    token = new_token(h)
    with h.anonymous() as c:
        booked = c.post(f"/ghl/v1/{token}/appointments/book", json=body)
        assert booked.status_code == 201, booked.text
        again = c.post(f"/ghl/v1/{token}/appointments/book", json=body)  # GHL's retry
        assert again.json()["id"] == booked.json()["id"]
        assert datetime.fromisoformat(booked.json()["start"]) == datetime.fromisoformat(f"{day}T10:00:00").replace(
            tzinfo=ZoneInfo(TZ)
        )
        moved_body = workflow_body("ghl-every-1", f"{day}T13:00:00", f"{day}T13:30:00", tz=TZ)
        moved = c.post(f"/ghl/v1/{token}/appointments/reschedule", json=moved_body)
        assert moved.status_code == 200, moved.text
        assert datetime.fromisoformat(moved.json()["start"]).astimezone(ZoneInfo(TZ)).hour == 13
        cancelled = c.post(f"/ghl/v1/{token}/appointments/cancel", json=moved_body)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
    # What the EMR holds, read back through the adapter (it asks the EMR every time).
    with h.client() as c:
        held = c.get(f"/v1/appointments/{cancelled.json()['id']}").json()
    assert held["status"] == "cancelled"
    assert h.emulator.stats().active_appointments == 0

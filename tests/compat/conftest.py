"""The gateway harness (live gateway + EMR emulator on loopback, on each storage backend), and the EMRs to run on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulators import EMULATORS
from gateway.crypto import Keyring
from tests.gateway.conftest import Harness, harness, running_harness  # noqa: F401 - re-exported fixture

# Every EMR with an emulator: the documented bodies replay against each of them.
EMRS = sorted(EMULATORS)


@pytest.fixture(params=EMRS)
def emr_harness(request: pytest.FixtureRequest, database_url: str, keyring: Keyring) -> Iterator[Harness]:
    with running_harness(request.param, database_url, keyring) as h:
        yield h


def emulator_appointment(h: Harness, client: httpx.Client, appointment_id: str) -> tuple[datetime, bool]:
    """(start, cancelled) as the EMR holds it: the emulator's own record when we can read it, else through the
    adapter (GET /v1/appointments/{id} goes to the EMR every time)."""
    if isinstance(h.emulator, ClinikoEmulator):
        rec = h.emulator.appointments[appointment_id]
        return rec.starts_at, rec.cancelled_at is not None
    got = client.get(f"/v1/appointments/{appointment_id}")
    assert got.status_code == 200, got.text
    body = got.json()
    return datetime.fromisoformat(body["start"]), body["status"] == "cancelled"

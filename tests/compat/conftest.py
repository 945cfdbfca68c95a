"""The gateway harness (live gateway + EMR emulator on loopback, on each storage backend), and the EMRs to run on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta

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


_DATE = re.compile(r"\b(20\d\d)-(\d\d)-(\d\d)(?=T)")


def future(text: str) -> str:
    """ClinicSync's documented bodies carry dates now in the past, which the gateway refuses (more than a day ago):
    every `YYYY-MM-DDT` moves to the next such month and day after tomorrow, keeping the time of day. The same date
    always maps to the same new date, so a body and its expected instant stay in step."""

    def moved(match: re.Match[str]) -> str:
        month, day = int(match.group(2)), int(match.group(3))
        floor = date.today() + timedelta(days=2)
        year = floor.year
        while date(year, month, day) < floor:
            year += 1
        return f"{year}-{month:02d}-{day:02d}"

    return _DATE.sub(moved, text)

"""What a Nookal poll costs at the EMR (issue 17), counted by the emulator over real HTTP: the first poll of a new
location sends nothing, a quiet poll exactly getPatients and getAppointments, and the clinic's zone still comes from
Nookal (getLocations `Timezone`), read once an hour per key for the whole process, not on every poll."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.emulation import SeedBusiness, ServerThread, default_seed
from adapters.errors import AuthFailed
from adapters.nookal.adapter import NookalAdapter
from adapters.nookal.emulator import PREFIX, NookalEmulator
from adapters.nookal.locations import LOCATIONS, TTL_SECONDS
from gateway.emr import build_adapter
from schemas.commands import AppointmentQuery, BookCommand
from schemas.patients import PatientQuery

UTC = dt.UTC
PERTH = ZoneInfo("Australia/Perth")  # no DST, and 2-3 hours from Melbourne
FIRST_LOCATION_ONLY = "nookal-key-covering-the-first-location-only"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Clinic:
    emulator: NookalEmulator
    base_url: str
    http: httpx.AsyncClient
    zone: ZoneInfo

    def adapter(self, *, index: int = 0, time_zone: str | None = None, api_key: str | None = None) -> NookalAdapter:
        """A fresh instance, built as the gateway builds one for every poll."""
        settings, credentials = self.emulator.location_config(self.base_url, index)
        if api_key is not None:
            credentials = msgspec.json.encode({"api_key": api_key})
        adapter = build_adapter(
            "nookal", settings, credentials, http=self.http, location_id="loc", time_zone=time_zone or self.zone.key
        )
        assert isinstance(adapter, NookalAdapter)
        return adapter

    def sent(self) -> int:
        return self.emulator.traffic.requests

    async def calls(self, since: int) -> list[tuple[str, dict[str, list[str]]]]:
        """Each Nookal method and its query after the `since`-th request (once the emulator has recorded them)."""
        for _ in range(100):
            if len(self.emulator.traffic.exchanges) >= self.sent():
                break
            await asyncio.sleep(0.01)
        recent = list(self.emulator.traffic.exchanges)[since:]
        return [(e.path.removeprefix(PREFIX + "/"), parse_qs(e.query)) for e in recent]

    async def methods(self, since: int) -> list[str]:
        return [method for method, _ in await self.calls(since)]


@pytest.fixture
async def clinic() -> AsyncIterator[Clinic]:
    seed = default_seed()
    seed.businesses = [SeedBusiness(name="North"), SeedBusiness(name="South")]
    emulator = NookalEmulator(seed, extra_keys={FIRST_LOCATION_ONLY: [0]})
    server = ServerThread(emulator.app())
    try:
        base_url = server.start()
        async with httpx.AsyncClient(timeout=5) as http:
            yield Clinic(emulator, base_url, http, ZoneInfo(seed.time_zone))
    finally:
        server.stop()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(LOCATIONS, "clock", made)
    return made


async def _book(clinic: Clinic, start: dt.datetime) -> str:
    adapter = clinic.adapter()
    [patient] = await adapter.find_patients(PatientQuery(email="jane.citizen@example.com"))
    practitioner = (await adapter.list_practitioners())[0]
    service = min(await adapter.list_services(), key=lambda s: s.duration_minutes)
    booked = await adapter.book(
        BookCommand(patient_id=patient.id, practitioner_id=practitioner.id, service_id=service.id, start=start)
    )
    return booked.id


async def test_the_first_poll_sends_nothing_and_quiet_polls_send_two_requests(clinic: Clinic) -> None:
    await asyncio.sleep(1.05 - time.time() % 1.0)  # the seeded records fall in an earlier second than the cursor
    before = clinic.sent()
    first = await clinic.adapter().changes_since(None)
    assert (first.patients, first.appointments, clinic.sent()) == ([], [], before)

    await clinic.adapter().check()  # `locations add` and readiness: the one read of getLocations
    for _ in range(3):  # every poll builds a fresh adapter
        before = clinic.sent()
        quiet = await clinic.adapter().changes_since(first.cursor)
        assert (quiet.patients, quiet.appointments) == ([], [])
        assert clinic.sent() - before == 2
        assert sorted(await clinic.methods(before)) == ["getAppointments", "getPatients"]


async def test_a_new_process_reads_the_zone_once_then_polls_cost_two(clinic: Clinic) -> None:
    cursor = (await clinic.adapter().changes_since(None)).cursor
    before = clinic.sent()
    await clinic.adapter().changes_since(cursor)
    assert await clinic.methods(before) == ["getLocations", "getPatients", "getAppointments"]
    before = clinic.sent()
    await clinic.adapter().changes_since(cursor)
    assert clinic.sent() - before == 2


async def test_instances_starting_together_read_get_locations_once(clinic: Clinic) -> None:
    cursor = (await clinic.adapter().changes_since(None)).cursor
    before = clinic.sent()
    await asyncio.gather(
        clinic.adapter().list_locations(),
        clinic.adapter().changes_since(cursor),
        clinic.adapter().changes_since(cursor),
    )
    assert (await clinic.methods(before)).count("getLocations") == 1


async def test_times_follow_nookals_zone_even_when_the_configured_zone_differs(clinic: Clinic) -> None:
    """The clinic-local wall time Nookal stores is read in Nookal's zone, and the poll asks Nookal in it too."""
    day = dt.datetime.now(clinic.zone).date() + dt.timedelta(days=3)
    local = dt.datetime.combine(day, dt.time(10, 30), clinic.zone)
    cursor = (await clinic.adapter().changes_since(None)).cursor
    booked_id = await _book(clinic, local.astimezone(UTC))
    stored = clinic.emulator.appointments[booked_id]
    assert (stored.date, stored.start) == (day, dt.time(10, 30))

    misconfigured = clinic.adapter(time_zone="UTC")
    [seen] = await misconfigured.list_appointments(AppointmentQuery(start_from=local - dt.timedelta(hours=1)))
    assert seen.start == local.astimezone(UTC)
    assert seen.time_zone == clinic.zone.key

    before = clinic.sent()
    changes = await clinic.adapter(time_zone="UTC").changes_since(cursor)
    assert [a.id for a in changes.appointments] == [booked_id]
    assert clinic.sent() - before == 2
    since = dt.datetime.fromisoformat(cursor.replace("Z", "+00:00")).astimezone(clinic.zone)
    asked = {method: query["last_modified"] for method, query in await clinic.calls(before)}
    wall = since.strftime("%Y-%m-%d %H:%M:%S")  # Melbourne's wall clock, not UTC's
    assert asked == {"getPatients": [wall], "getAppointments": [wall]}


async def test_a_zone_changed_in_nookal_is_used_once_the_shared_copy_expires(clinic: Clinic, clock: Clock) -> None:
    day = dt.datetime.now(clinic.zone).date() + dt.timedelta(days=3)
    booked_id = await _book(clinic, dt.datetime.combine(day, dt.time(10), clinic.zone).astimezone(UTC))
    clinic.emulator.edit_location(clinic.emulator.location_ids()[0], time_zone=PERTH.key)

    clock.now += TTL_SECONDS - 1  # within the hour: the zone as last read, with no request for it
    before = clinic.sent()
    still = await clinic.adapter().get_appointment(booked_id)
    assert still.start == dt.datetime.combine(day, dt.time(10), clinic.zone)
    assert "getLocations" not in await clinic.methods(before)

    clock.now += 2  # the hour is up: read again, and Nookal's 10:00 is now Perth's
    moved = await clinic.adapter().get_appointment(booked_id)
    assert moved.start == dt.datetime.combine(day, dt.time(10), PERTH)
    assert moved.time_zone == PERTH.key


async def test_check_reads_the_zone_afresh_for_every_instance(clinic: Clinic, clock: Clock) -> None:
    day = dt.datetime.now(clinic.zone).date() + dt.timedelta(days=3)
    booked_id = await _book(clinic, dt.datetime.combine(day, dt.time(10), clinic.zone).astimezone(UTC))
    clinic.emulator.edit_location(clinic.emulator.location_ids()[0], time_zone=PERTH.key)
    await clinic.adapter().check()
    assert (await clinic.adapter().get_appointment(booked_id)).start == dt.datetime.combine(day, dt.time(10), PERTH)


async def test_a_location_the_key_does_not_list_is_never_taken_from_the_shared_copy(clinic: Clinic) -> None:
    await clinic.adapter(index=0, api_key=FIRST_LOCATION_ONLY).check()
    for _ in range(2):
        before = clinic.sent()
        with pytest.raises(AuthFailed, match="does not cover location"):
            await clinic.adapter(index=1, api_key=FIRST_LOCATION_ONLY).list_locations()
        assert await clinic.methods(before) == ["getLocations"]  # asked again: the key may have been ticked since

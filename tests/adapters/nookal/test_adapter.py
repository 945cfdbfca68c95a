"""The Nookal adapter against the Nookal emulator over real HTTP: what a clinic would notice if it went wrong."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.base import AdapterContext
from adapters.emulation import EmulatorSeed, SeedBusiness, ServerThread, default_seed
from adapters.errors import AuthFailed, NotFound, SlotUnavailable
from adapters.http import RetryPolicy
from adapters.nookal.adapter import NookalAdapter
from adapters.nookal.emulator import PREFIX, NookalEmulator, RebookMode
from adapters.nookal.settings import NookalCredentials, NookalSettings
from schemas.appointments import AppointmentStatus, CancelReason
from schemas.commands import AppointmentQuery, BookCommand, CancelCommand, RescheduleCommand
from schemas.patients import PatientQuery

UTC = dt.UTC
FAST = RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.002, jitter=0.001)
OTHER_KEY = "emulator-nookal-key-first-location-only"


@dataclass
class Clinic:
    emulator: NookalEmulator
    base_url: str
    http: httpx.AsyncClient
    zone: ZoneInfo

    def adapter(self, index: int = 0, api_key: str | None = None) -> NookalAdapter:
        settings = NookalSettings(location_id=self.emulator.location_ids()[index], base_url=self.base_url + PREFIX)
        credentials = NookalCredentials(api_key=api_key or self.emulator.api_key)
        context = AdapterContext(location_id=f"loc_{index}", time_zone=self.zone.key)
        adapter = NookalAdapter(settings, credentials, self.http, context)
        adapter.retry = FAST
        return adapter

    def calls(self, method: str) -> list[dict[str, list[str]]]:
        """The parameters of every call to a Nookal method (query string and form body together)."""
        found = []
        for exchange in self.emulator.traffic.exchanges:
            if exchange.path == f"{PREFIX}/{method}":
                params = parse_qs(exchange.query)
                params.update(parse_qs(exchange.request_body.decode()))
                found.append(params)
        return found


def _serve(seed: EmulatorSeed, rebook: RebookMode = "in_place") -> Iterator[tuple[NookalEmulator, str]]:
    emulator = NookalEmulator(seed, rebook=rebook, extra_keys={OTHER_KEY: [0]})
    server = ServerThread(emulator.app())
    try:
        yield emulator, server.start()
    finally:
        server.stop()


@pytest.fixture(params=["in_place"])
async def clinic(request: pytest.FixtureRequest) -> AsyncIterator[Clinic]:
    seed = default_seed()
    seed.businesses = [SeedBusiness(name="North"), SeedBusiness(name="South")]
    seed.open_from, seed.open_until = "00:00", "23:45"  # so a test can book around a DST change at 2-3 am
    for emulator, base_url in _serve(seed, request.param):
        async with httpx.AsyncClient(timeout=5) as http:
            yield Clinic(emulator, base_url, http, ZoneInfo(seed.time_zone))


async def _command(adapter: NookalAdapter, start: dt.datetime) -> BookCommand:
    practitioners = await adapter.list_practitioners()
    services = sorted(await adapter.list_services(), key=lambda s: s.duration_minutes)
    [patient] = await adapter.find_patients(PatientQuery(email="jane.citizen@example.com"))
    return BookCommand(
        patient_id=patient.id, practitioner_id=practitioners[0].id, service_id=services[0].id, start=start
    )


def _next_transition(zone: ZoneInfo) -> dt.date:
    """The next local date on which the zone's UTC offset changes."""
    day = dt.datetime.now(zone).date() + dt.timedelta(days=2)
    for _ in range(400):
        noon_before = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), zone).utcoffset()
        if dt.datetime.combine(day, dt.time(12), zone).utcoffset() != noon_before:
            return day
        day += dt.timedelta(days=1)
    raise AssertionError("no DST change within a year")


async def test_booking_on_the_day_clocks_change_reads_back_the_right_instant(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    day = _next_transition(clinic.zone)
    before = dt.datetime.combine(day, dt.time(1, 0), clinic.zone)  # before the 2-3 am change, either direction
    after = dt.datetime.combine(day, dt.time(10, 0), clinic.zone)
    assert before.utcoffset() != after.utcoffset()

    for local in (before, after):
        command = await _command(adapter, local.astimezone(UTC))
        booked = await adapter.book(command)
        assert booked.start == local.astimezone(UTC)
        again = await clinic.adapter().get_appointment(booked.id)  # a fresh adapter: nothing cached
        assert again.start == local.astimezone(UTC)
        assert again.time_zone == clinic.zone.key
    # What went to Nookal is the clinic's wall clock, not UTC.
    sent = clinic.calls("addAppointmentBooking")
    assert [(c["appointment_date"][0], c["start_time"][0]) for c in sent] == [
        (day.isoformat(), "01:00:00"),
        (day.isoformat(), "10:00:00"),
    ]


async def test_naive_times_are_clinic_local(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    day = dt.datetime.now(clinic.zone).date() + dt.timedelta(days=3)
    booked = await adapter.book(await _command(adapter, dt.datetime.combine(day, dt.time(9, 30))))
    assert booked.start == dt.datetime.combine(day, dt.time(9, 30), clinic.zone).astimezone(UTC)


async def test_cancel_sends_the_patient_id_nookal_requires(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=11, minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
    booked = await adapter.book(await _command(adapter, start))
    fresh = clinic.adapter()  # does not know the patient: must look the appointment up
    cancelled = await fresh.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.SICK, note="flu"))
    assert cancelled.status is AppointmentStatus.CANCELLED
    assert cancelled.cancel_reason is CancelReason.SICK
    [sent] = clinic.calls("cancelAppointment")
    assert sent["appointment_id"] == [booked.id]
    assert sent["patient_id"] == [booked.patient_id]
    # Cancelling again is a no-op, and the slot is free again.
    assert (await fresh.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.OTHER))).id == booked.id
    assert len(clinic.calls("cancelAppointment")) == 1
    assert (await adapter.book(await _command(adapter, start))).start == booked.start


@pytest.mark.parametrize("mode", ["new_id", "absent"])
async def test_reschedule_that_gets_a_new_id_says_which_it_replaces(mode: RebookMode) -> None:
    seed = default_seed()
    for emulator, base_url in _serve(seed, mode):
        async with httpx.AsyncClient(timeout=5) as http:
            clinic = Clinic(emulator, base_url, http, ZoneInfo(seed.time_zone))
            adapter = clinic.adapter()
            start = dt.datetime.now(clinic.zone).replace(hour=10, minute=0, second=0, microsecond=0)
            start += dt.timedelta(days=2)
            booked = await adapter.book(await _command(adapter, start))
            new_start = start + dt.timedelta(minutes=15)  # overlaps the old time: only itself, so allowed

            moved = await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=new_start))
            assert moved.id != booked.id
            assert moved.replaces_id == booked.id
            assert moved.start == new_start
            assert moved.status is AppointmentStatus.BOOKED
            old = await clinic.adapter().get_appointment(booked.id)
            assert old.status is AppointmentStatus.CANCELLED
            stats = emulator.stats()
            assert (stats.appointments, stats.active_appointments) == (2, 1)

            # Moved again: the same adapter remembers that rebooking does not work here and goes straight on.
            later = await adapter.reschedule(
                RescheduleCommand(appointment_id=moved.id, start=new_start + dt.timedelta(hours=2))
            )
            assert later.replaces_id == moved.id
            assert len(clinic.calls("rebookAppointment")) == (2 if mode == "new_id" else 1)


async def test_reschedule_in_place_keeps_the_id(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=13, minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
    booked = await adapter.book(await _command(adapter, start))
    moved = await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(days=1)))
    assert (moved.id, moved.replaces_id) == (booked.id, None)


async def test_reschedule_onto_a_taken_slot_leaves_the_original(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=14, minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
    first = await adapter.book(await _command(adapter, start))
    second = await adapter.book(await _command(adapter, start + dt.timedelta(hours=1)))
    with pytest.raises(SlotUnavailable):
        await adapter.reschedule(RescheduleCommand(appointment_id=second.id, start=start + dt.timedelta(minutes=15)))
    assert (await adapter.get_appointment(second.id)).start == second.start
    assert (await adapter.get_appointment(first.id)).status is AppointmentStatus.BOOKED


async def test_a_key_that_does_not_cover_the_location_names_the_cause(clinic: Clinic) -> None:
    adapter = clinic.adapter(index=1, api_key=OTHER_KEY)
    with pytest.raises(AuthFailed) as caught:
        await adapter.check()
    assert "does not cover location" in caught.value.message
    assert clinic.emulator.location_ids()[1] in caught.value.message
    await clinic.adapter(index=0, api_key=OTHER_KEY).check()  # the location it does cover works


async def test_another_locations_appointment_is_not_found(clinic: Clinic) -> None:
    north, south = clinic.adapter(0), clinic.adapter(1)
    start = dt.datetime.now(clinic.zone).replace(hour=15, minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
    booked = await north.book(await _command(north, start))
    with pytest.raises(NotFound):
        await south.get_appointment(booked.id)
    assert await south.list_appointments(AppointmentQuery(patient_id=booked.patient_id)) == []


async def test_changes_since_reports_edited_patients_and_new_appointments(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    first = await adapter.changes_since(None)
    assert (first.patients, first.appointments) == ([], [])
    [patient] = await adapter.find_patients(PatientQuery(email="jane.citizen@example.com"))
    clinic.emulator.edit_patient(patient.id, mobile="0412 999 888")
    start = dt.datetime.now(clinic.zone).replace(hour=16, minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
    booked = await adapter.book(await _command(adapter, start))

    changes = await adapter.changes_since(first.cursor)
    assert [p.id for p in changes.patients] == [patient.id]
    assert changes.patients[0].phones == ["+61412999888"]
    assert [a.id for a in changes.appointments] == [booked.id]
    assert changes.cursor >= first.cursor
    sent = clinic.calls("getPatients")[-1]["last_modified"][0]
    assert dt.datetime.strptime(sent, "%Y-%m-%d %H:%M:%S")  # clinic-local wall clock, no offset


async def test_long_lists_follow_next_page(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    for i in range(230):
        clinic.emulator.add_patient(
            "addPatient",
            {"first_name": f"P{i}", "last_name": "Manyfamily", "api_key": clinic.emulator.api_key},
            set(clinic.emulator.location_ids()),
        )
    found = await adapter.find_patients(PatientQuery(last_name="Manyfamily"))
    assert len(found) == 230
    assert [c["page"][0] for c in clinic.calls("searchPatients")[-2:]] == ["1", "2"]


async def test_emulator_envelope_strings_and_failures(clinic: Clinic) -> None:
    url = f"{clinic.base_url}{PREFIX}"
    response = await clinic.http.get(f"{url}/getAppointmentTypes", params={"api_key": clinic.emulator.api_key})
    body = msgspec.json.decode(response.content)
    assert body["status"] == "success"
    assert isinstance(body["data"]["results"]["services"][0]["ID"], str)
    assert body["settings"] == {"currentPage": "1", "nextPage": None, "pageLength": 100}

    missing = msgspec.json.decode((await clinic.http.post(f"{url}/getLocations")).content)
    assert missing["details"]["errorCode"] == "L000_1"
    assert missing["details"]["alerts"] == ["Missing variable: api_key"]
    bad = await clinic.http.post(f"{url}/verify", data={"api_key": "nope-nope-nope"})
    assert bad.status_code == 200
    assert msgspec.json.decode(bad.content)["details"]["errorCode"] == "L003"


async def test_emulator_refuses_overlaps_unless_allowed(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    day = (dt.datetime.now(clinic.zone) + dt.timedelta(days=2)).date().isoformat()
    command = await _command(adapter, dt.datetime.now(UTC))
    form = {
        "api_key": clinic.emulator.api_key,
        "location_id": clinic.emulator.location_ids()[0],
        "appointment_date": day,
        "start_time": "09:00",
        "patient_id": command.patient_id,
        "practitioner_id": command.practitioner_id,
        "appointment_type_id": command.service_id,
    }
    url = f"{clinic.base_url}{PREFIX}/addAppointmentBooking"
    first = msgspec.json.decode((await clinic.http.post(url, data=form)).content)
    assert first["status"] == "success"
    assert isinstance(first["data"]["results"]["appointment_id"], str)
    refused = msgspec.json.decode((await clinic.http.post(url, data=form)).content)
    assert refused["status"] == "failure"
    allowed = msgspec.json.decode((await clinic.http.post(url, data={**form, "allow_overlap_bookings": "1"})).content)
    assert allowed["status"] == "success"

"""The Nookal adapter against the Nookal emulator over real HTTP: what a clinic would notice if it went wrong."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.base import AdapterContext
from adapters.emulation import EmulatorSeed, Fault, FaultKind, SeedBusiness, ServerThread, default_seed
from adapters.errors import (
    AuthFailed,
    ContractChanged,
    NotFound,
    OutcomeUnknown,
    SlotUnavailable,
    Unavailable,
    Unsupported,
    WriteMismatch,
)
from adapters.http import RetryPolicy
from adapters.nookal import wire
from adapters.nookal.adapter import NookalAdapter
from adapters.nookal.client import MethodUnavailable, NookalFailure, failure_error, is_unknown_method_page
from adapters.nookal.emulator import PREFIX, NookalEmulator, RebookMode
from adapters.nookal.settings import NookalCredentials, NookalSettings
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.commands import AppointmentQuery, BookCommand, CancelCommand, NewPatient, RescheduleCommand
from schemas.patients import PatientQuery
from schemas.verify import ProbeStatus

UTC = dt.UTC
FAST = RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.002, jitter=0.001)
OTHER_KEY = "emulator-nookal-key-first-location-only"
PATIENCE = 0.8  # how long a write whose answer was lost is watched for (the gateway uses twice its EMR timeout)


@dataclass
class Clinic:
    emulator: NookalEmulator
    base_url: str
    http: httpx.AsyncClient
    zone: ZoneInfo

    def adapter(self, index: int = 0, api_key: str | None = None) -> NookalAdapter:
        settings = NookalSettings(location_id=self.emulator.location_ids()[index], base_url=self.base_url + PREFIX)
        credentials = NookalCredentials(api_key=api_key or self.emulator.api_key)
        context = AdapterContext(location_id=f"loc_{index}", time_zone=self.zone.key, write_patience_seconds=PATIENCE)
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


# ---------------------------------------------------------------------------------------------- evidence (2026-11 §2)


async def test_unknown_method_is_nookals_html_404_page_and_a_typed_error(clinic: Clinic) -> None:
    # Live (2026-08-03): `getServices` does not exist (the method is getAppointmentTypes); Nookal answers an unknown
    # name with its themed HTML 404 page, before looking at the key.
    for params in ({"api_key": clinic.emulator.api_key}, {}):
        page = await clinic.http.post(f"{clinic.base_url}{PREFIX}/getServices", data=params)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert b"404 page not found" in page.content.lower()
        assert b"hold it right there" in page.content.lower()

    adapter = clinic.adapter()
    with pytest.raises(MethodUnavailable) as caught:
        await adapter.client.read("getServices", wire.Services)
    assert caught.value.method == "getServices"
    assert not isinstance(caught.value, Unavailable)
    assert len(await adapter.list_services()) == 2  # the real name works


def test_only_an_html_404_is_the_unknown_method_page() -> None:
    html = {"content-type": "text/html; charset=UTF-8"}
    envelope = b'{"status":"failure","details":{"errorMessage":"Missing required variables"}}'
    assert is_unknown_method_page(httpx.Response(404, content=b"<html>Hold it right there!</html>", headers=html))
    # PHP labels JSON text/html: a JSON failure envelope with a 404 is not the page.
    assert not is_unknown_method_page(httpx.Response(404, content=envelope, headers=html))
    assert not is_unknown_method_page(httpx.Response(200, content=b"<html></html>", headers=html))
    assert not is_unknown_method_page(httpx.Response(503, content=b"<html>404 page not found</html>", headers=html))


async def test_reschedule_falls_back_when_rebook_is_the_404_page() -> None:
    seed = default_seed()
    for emulator, base_url in _serve(seed, "absent"):
        async with httpx.AsyncClient(timeout=5) as http:
            clinic = Clinic(emulator, base_url, http, ZoneInfo(seed.time_zone))
            adapter = clinic.adapter()
            start = dt.datetime.now(clinic.zone).replace(hour=9, minute=0, second=0, microsecond=0)
            start += dt.timedelta(days=3)
            booked = await adapter.book(await _command(adapter, start))
            moved = await adapter.reschedule(
                RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(hours=2))
            )
            assert (moved.replaces_id, moved.start) == (booked.id, start + dt.timedelta(hours=2))
            [rebook] = [e for e in emulator.traffic.exchanges if e.path == f"{PREFIX}/rebookAppointment"]
            assert rebook.status == 404
            assert (await adapter.get_appointment(booked.id)).status is AppointmentStatus.CANCELLED


async def test_an_answer_missing_a_required_field_names_it(clinic: Clinic) -> None:
    clinic.emulator.faults.add(
        Fault(kind=FaultKind.RESHAPE, drop_field="ID", path_prefix=f"{PREFIX}/getPractitioners", count=5)
    )
    with pytest.raises(ContractChanged) as caught:
        await clinic.adapter().list_practitioners()
    assert caught.value.path == "$.data.results.practitioners[0].ID"
    assert caught.value.problem == "missing required field"


# ---------------------------------------------------------------------------------------------- write verification


def _misstore(clinic: Clinic, method: str, count: int = 1, **change: int) -> None:
    clinic.emulator.faults.add(
        Fault(kind=FaultKind.MISSTORE, method="POST", path_prefix=f"{PREFIX}/{method}", count=count, **change)
    )


def _active(clinic: Clinic) -> list[tuple[str, dt.datetime]]:
    """(id, start) of every live appointment, from the emulator's own state."""
    found = []
    for a in clinic.emulator.appointments.values():
        if not a.cancelled:
            found.append((a.id, dt.datetime.combine(a.date, a.start, clinic.zone).astimezone(UTC)))
    return found


async def test_a_booking_nookal_stores_at_another_time_is_cancelled(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=10, minute=0, second=0, microsecond=0) + dt.timedelta(days=3)
    command = await _command(adapter, start)
    _misstore(clinic, "addAppointmentBooking", shift_minutes=60)
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)
    assert caught.value.differences == [("start", 60), ("end", 60)]
    assert "time_zone" in caught.value.settings["start"]
    assert caught.value.undone
    assert _active(clinic) == []  # neither at the wrong time nor at the asked one
    assert len(clinic.calls("cancelAppointment")) == 1


async def test_a_booking_nookal_stores_with_another_length_is_cancelled(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=11, minute=0, second=0, microsecond=0) + dt.timedelta(days=3)
    command = await _command(adapter, start)  # the 30-minute type
    _misstore(clinic, "addAppointmentBooking", length_minutes=45)
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)
    assert caught.value.differences == [("end", 15)]
    assert caught.value.settings == {"end": NookalAdapter.write_settings["end"]}
    assert _active(clinic) == []


async def test_a_reschedule_nookal_stores_at_another_time_is_moved_back(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=12, minute=0, second=0, microsecond=0) + dt.timedelta(days=3)
    booked = await adapter.book(await _command(adapter, start))
    _misstore(clinic, "rebookAppointment", shift_minutes=-120)
    with pytest.raises(WriteMismatch) as caught:
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(days=1)))
    assert caught.value.differences == [("start", -120), ("end", -120)]
    assert caught.value.undone
    assert _active(clinic) == [(booked.id, booked.start)]


@pytest.mark.parametrize("count", [2, 3])
async def test_a_misstore_that_also_hits_the_way_back_still_ends_at_the_original_time(
    clinic: Clinic, count: int
) -> None:
    """The move and the first move back misread (count=2), or the misreading persists (count=3): every move back is
    verified, and the appointment ends where it was, with its id."""
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=13, minute=0, second=0, microsecond=0) + dt.timedelta(days=3)
    booked = await adapter.book(await _command(adapter, start))
    _misstore(clinic, "rebookAppointment", count=count, shift_minutes=60)
    with pytest.raises(WriteMismatch) as caught:
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(hours=3)))
    assert caught.value.undone
    assert caught.value.differences == [("start", 60), ("end", 60)]
    assert _active(clinic) == [(booked.id, booked.start)]
    assert (await clinic.adapter().get_appointment(booked.id)).start == booked.start


async def test_a_book_then_cancel_reschedule_that_misstores_is_moved_back() -> None:
    seed = default_seed()
    for emulator, base_url in _serve(seed, "absent"):
        async with httpx.AsyncClient(timeout=5) as http:
            clinic = Clinic(emulator, base_url, http, ZoneInfo(seed.time_zone))
            adapter = clinic.adapter()
            start = dt.datetime.now(clinic.zone).replace(hour=10, minute=0, second=0, microsecond=0)
            start += dt.timedelta(days=3)
            booked = await adapter.book(await _command(adapter, start))
            _misstore(clinic, "addAppointmentBooking", shift_minutes=30)
            with pytest.raises(WriteMismatch) as caught:
                await adapter.reschedule(
                    RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(hours=4))
                )
            assert caught.value.differences == [("start", 30), ("end", 30)]
            # The original was cancelled by the fallback; the move back booked its time again under a new id.
            [(new_id, new_start)] = _active(clinic)
            assert new_start == booked.start
            assert new_id != booked.id
            assert caught.value.appointment_id == new_id
            again = await clinic.adapter().get_appointment(new_id)
            assert (again.patient_id, again.practitioner_id) == (booked.patient_id, booked.practitioner_id)


# ---------------------------------------------------------------------------------------------- locations verify


async def test_verify_on_the_emulator_is_ok(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=10, minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
    await adapter.book(await _command(adapter, start))
    report = await clinic.adapter().verify()
    assert report.ok, report
    statuses = {p.name: p.status for p in report.probes}
    assert ProbeStatus.FAILED not in statuses.values()
    for name in ("patients", "patient search", "change feed (last day)", "appointment read"):
        assert statuses[name] is ProbeStatus.OK
    assert {s.setting: s.agrees for s in report.settings} == {
        "time_zone": True,
        "appointment type Duration unit": True,
    }


async def test_verify_names_a_field_the_answers_dropped(clinic: Clinic) -> None:
    clinic.emulator.faults.add(
        Fault(kind=FaultKind.RESHAPE, drop_field="ID", path_prefix=f"{PREFIX}/getPractitioners", count=1000)
    )
    report = await clinic.adapter().verify()
    assert not report.ok
    [failed] = [p for p in report.probes if p.status is ProbeStatus.FAILED]
    assert (failed.name, failed.field_path, failed.seen) == (
        "practitioners",
        "$.data.results.practitioners[0].ID",
        "missing required field",
    )

    clinic.emulator.faults.clear()
    clinic.emulator.faults.add(Fault(kind=FaultKind.RESHAPE, drop_field="ID", count=1000))
    report = await clinic.adapter().verify()
    assert (report.probes[0].name, report.probes[0].field_path) == ("authentication", "$.data.results.locations[0].ID")


async def test_observed_zone_agrees_when_it_is_the_clinics_nookal_zone(clinic: Clinic) -> None:
    [zone, length] = await clinic.adapter().observed_settings()
    assert (zone.setting, zone.configured, zone.observed, zone.agrees) == (
        "time_zone",
        clinic.zone.key,
        clinic.zone.key,
        True,
    )
    assert "§2" in zone.source
    assert (length.agrees, length.observed) == (None, "0 of 0 appointment(s) last their type's Duration in minutes")


async def test_observed_zone_disagrees_with_another_configured_zone(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    adapter.context = AdapterContext(location_id="loc_0", time_zone="America/New_York")
    [zone, _] = await adapter.observed_settings()
    assert (zone.configured, zone.observed, zone.agrees) == ("America/New_York", clinic.zone.key, False)
    assert not (await adapter.verify()).ok


async def test_observed_zone_accepts_an_alias_and_is_unknown_without_a_nookal_zone() -> None:
    seed = default_seed()
    seed.time_zone = "Etc/UTC"
    for emulator, base_url in _serve(seed):
        async with httpx.AsyncClient(timeout=5) as http:
            clinic = Clinic(emulator, base_url, http, ZoneInfo("UTC"))
            [zone, _] = await clinic.adapter().observed_settings()
            assert (zone.configured, zone.observed, zone.agrees) == ("UTC", "Etc/UTC", True)

            emulator.faults.add(Fault(kind=FaultKind.RESHAPE, drop_field="Timezone", count=10))
            [zone, _] = await clinic.adapter().observed_settings()
            assert (zone.observed, zone.agrees) == (None, None)


async def test_observed_length_disagrees_when_no_appointment_lasts_its_types_duration(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = dt.datetime.now(clinic.zone).replace(hour=15, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    booked = await adapter.book(await _command(adapter, start))
    clinic.emulator.types[booked.service_id].duration = 1  # as if Duration were in hours
    [_, length] = await clinic.adapter().observed_settings()
    assert (length.agrees, length.observed) == (False, "0 of 1 appointment(s) last their type's Duration in minutes")


# ---------------------------------------------------------------------------------------------- one appointment (#15)

QUOTING = "Jane Citizen (jane.citizen@example.com, +61 412 345 678, born 1985-04-12) is invalid"
PATIENT_DATA = ("Jane", "Citizen", "jane.citizen@example.com", "412 345 678", "1985-04-12")
Handler = Callable[[NookalEmulator, str, dict[str, str], set[str]], dict[str, Any]]


def _with_op(command: BookCommand, operation_id: str, notes: str | None = None) -> BookCommand:
    return msgspec.structs.replace(command, operation_id=operation_id, notes=notes)


def _day(clinic: Clinic, days: int, hour: int, minute: int = 0) -> dt.datetime:
    local = dt.datetime.now(clinic.zone).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return local + dt.timedelta(days=days)


def _raw_notes(clinic: Clinic, appointment_id: str) -> str | None:
    return clinic.emulator.appointments[appointment_id].notes


def _staff_double_booking(monkeypatch: pytest.MonkeyPatch, notes: str | None) -> list[str]:
    """As a create applies, staff book the same patient with the same practitioner at the same time in Nookal's own
    screens (which may overlap): a newer appointment exactly like ours, with `notes`. Returns the ids it made."""
    original: Handler = NookalEmulator.METHODS["addAppointmentBooking"]
    made: list[str] = []

    def booked_twice(em: NookalEmulator, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        answer = original(em, method, params, scope)
        ours = em.appointments[answer["data"]["results"]["appointment_id"]]
        twin = dataclasses.replace(ours, id=str(int(max(em.appointments, key=int)) + 1000), notes=notes)
        em.appointments[twin.id] = twin
        made.append(twin.id)
        return answer

    monkeypatch.setitem(NookalEmulator.METHODS, "addAppointmentBooking", booked_twice)
    return made


async def test_the_marker_is_written_stripped_for_callers_and_kept_across_a_reschedule(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = _day(clinic, 3, 9)
    command = _with_op(await _command(adapter, start), "op_marker_1", notes="Bring the referral")
    booked = await adapter.book(command)
    [sent] = clinic.calls("addAppointmentBooking")
    assert sent["notes"] == ["Bring the referral [egw:op_marker_1]"]
    assert (booked.notes, booked.operation_id) == ("Bring the referral", "op_marker_1")
    again = await clinic.adapter().get_appointment(booked.id)
    assert (again.notes, again.operation_id) == ("Bring the referral", "op_marker_1")
    [listed] = await adapter.list_appointments(AppointmentQuery(patient_id=booked.patient_id))
    assert (listed.notes, listed.operation_id) == ("Bring the referral", "op_marker_1")

    # The notes a caller sees are not a change of notes; other notes are (v2 cannot change them).
    moved = await adapter.reschedule(
        RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(days=1), notes="Bring the referral")
    )
    assert (moved.id, moved.notes, moved.operation_id) == (booked.id, "Bring the referral", "op_marker_1")
    assert _raw_notes(clinic, booked.id) == "Bring the referral [egw:op_marker_1]"
    with pytest.raises(Unsupported):
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, notes="Something else"))


async def test_a_book_then_cancel_reschedule_copies_the_notes_and_keeps_the_marker() -> None:
    seed = default_seed()
    for emulator, base_url in _serve(seed, "absent"):
        async with httpx.AsyncClient(timeout=5) as http:
            clinic = Clinic(emulator, base_url, http, ZoneInfo(seed.time_zone))
            adapter = clinic.adapter()
            start = _day(clinic, 3, 10)
            booked = await adapter.book(_with_op(await _command(adapter, start), "op_marker_2", notes="Knee"))
            moved = await adapter.reschedule(
                RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(hours=2))
            )
            assert moved.replaces_id == booked.id
            assert (moved.notes, moved.operation_id) == ("Knee", "op_marker_2")
            assert clinic.calls("addAppointmentBooking")[-1]["notes"] == ["Knee [egw:op_marker_2]"]
            assert _raw_notes(clinic, moved.id) == "Knee [egw:op_marker_2]"


async def test_a_late_create_is_adopted_by_its_marker_beside_the_same_patients_other_appointment(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create's answer is lost (504) and it lands while the adapter watches; at that moment staff booked the
    same patient with the same practitioner at the same time. The newer, unmarked appointment is not this one."""
    twins = _staff_double_booking(monkeypatch, notes="booked by reception")
    adapter = clinic.adapter()
    command = _with_op(await _command(adapter, _day(clinic, 4, 9)), "op_late_1")
    clinic.emulator.faults.add(Fault(kind=FaultKind.APPLY_LATE, method="POST", delay_ms=int(PATIENCE * 1000 / 4)))
    booked = await adapter.book(command)
    [twin] = twins
    assert booked.id != twin
    assert int(booked.id) < int(twin)  # by id alone the newer one would have been taken
    assert booked.operation_id == "op_late_1"
    assert _raw_notes(clinic, booked.id) == "[egw:op_late_1]"
    assert len(clinic.calls("addAppointmentBooking")) == 1  # watched for, never sent again
    assert not clinic.calls("cancelAppointment")  # the earlier of the two keeps the slot: ours


async def test_a_create_that_lands_after_patience_is_unknown_and_found_by_its_marker_only(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    twins = _staff_double_booking(monkeypatch, notes="[egw:op_someone_else]")
    adapter = clinic.adapter()
    command = _with_op(await _command(adapter, _day(clinic, 4, 11)), "op_late_2")
    clinic.emulator.faults.add(Fault(kind=FaultKind.APPLY_LATE, method="POST", delay_ms=int(PATIENCE * 2000)))
    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)
    assert caught.value.operation_id == "op_late_2"
    assert "Jane" not in caught.value.message
    for _ in range(300):
        if twins:
            break
        await asyncio.sleep(0.01)
    found = await adapter.find_booking(command)
    assert found is not None
    assert found.id not in twins
    assert found.operation_id == "op_late_2"
    assert len(clinic.calls("addAppointmentBooking")) == 1
    # Another operation at the same slot finds neither ours nor the other operation's booking as its own.
    assert await adapter.find_booking(_with_op(command, "op_never_sent")) is None


async def test_a_reschedule_fallback_whose_create_lands_late_is_never_sent_twice() -> None:
    """Where Nookal lacks rebook, the new time is a create: its lost answer is watched for, never resent, and the
    original is left alone until the outcome is known."""
    seed = default_seed()
    for emulator, base_url in _serve(seed, "absent"):
        async with httpx.AsyncClient(timeout=5) as http:
            clinic = Clinic(emulator, base_url, http, ZoneInfo(seed.time_zone))
            adapter = clinic.adapter()
            start = _day(clinic, 3, 9)
            booked = await adapter.book(_with_op(await _command(adapter, start), "op_moved"))
            emulator.faults.add(
                Fault(
                    kind=FaultKind.APPLY_LATE,
                    method="POST",
                    path_prefix=f"{PREFIX}/addAppointmentBooking",
                    delay_ms=int(PATIENCE * 2000),
                )
            )
            with pytest.raises(OutcomeUnknown) as caught:
                await adapter.reschedule(
                    RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(hours=3))
                )
            assert f"original appointment {booked.id} was left as it was" in caught.value.message
            await asyncio.sleep(PATIENCE * 2)
            assert len(clinic.calls("addAppointmentBooking")) == 2  # the booking, and the copy once
            assert not clinic.calls("cancelAppointment")
            assert (await adapter.get_appointment(booked.id)).status is AppointmentStatus.BOOKED
            [copy] = [a for a in emulator.appointments.values() if a.id != booked.id]
            assert copy.notes == "[egw:op_moved]"  # the reconciler can recognise it


async def test_a_booking_whose_read_back_fails_is_withdrawn(clinic: Clinic) -> None:
    """The read-back is the race check: when it cannot run, the booking is cancelled, not assumed alone."""
    adapter = clinic.adapter()
    command = _with_op(await _command(adapter, _day(clinic, 5, 9)), "op_unchecked")
    clinic.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, method="GET", status=503, count=1000, armed_by="POST"))
    with pytest.raises(Unavailable) as caught:
        await adapter.book(command)
    assert "withdrawn" in caught.value.message
    assert _active(clinic) == []
    assert len(clinic.calls("addAppointmentBooking")) == 1
    assert len(clinic.calls("cancelAppointment")) == 1


async def test_a_booking_that_can_be_neither_checked_nor_withdrawn_is_unknown(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    command = _with_op(await _command(adapter, _day(clinic, 5, 11)), "op_stuck")
    clinic.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, method="GET", status=503, count=1000, armed_by="POST"))
    clinic.emulator.faults.add(
        Fault(kind=FaultKind.ERROR_5XX, path_prefix=f"{PREFIX}/cancelAppointment", status=503, count=1000)
    )
    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)
    assert caught.value.operation_id == "op_stuck"
    assert len(_active(clinic)) == 1  # the gateway's reconciler owns it now


async def test_racers_keep_one_booking_even_where_nookal_accepts_overlaps(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether Nookal refuses an overlap is unconfirmed: with an account that accepts them, the read-back sees the
    rivals and only the earliest booking stays."""
    monkeypatch.setattr(clinic.emulator, "_check_slot", lambda *args, **kwargs: None)
    adapter = clinic.adapter()
    first = await _command(adapter, _day(clinic, 6, 14))
    racers = [first]
    for n in range(3):
        patient = await adapter.create_patient(NewPatient(first_name=f"Racer{n}", last_name="Overlap"))
        racers.append(msgspec.structs.replace(first, patient_id=patient.id))
    # All four pass the calendar pre-check before any of them books (they arrive at the same moment).
    barrier = asyncio.Barrier(len(racers))
    add_booking = adapter._add_booking

    async def at_once(*args: Any, **kwargs: Any) -> str:
        await barrier.wait()
        return await add_booking(*args, **kwargs)

    monkeypatch.setattr(adapter, "_add_booking", at_once)
    results = await asyncio.gather(*(adapter.book(c) for c in racers), return_exceptions=True)
    assert len(clinic.calls("addAppointmentBooking")) == len(racers)
    kept = [r for r in results if isinstance(r, Appointment)]
    assert len(kept) == 1, results
    assert all(isinstance(r, SlotUnavailable) for r in results if not isinstance(r, Appointment)), results
    assert [a_id for a_id, _ in _active(clinic)] == [kept[0].id]


async def test_a_move_that_meets_a_rival_in_the_new_slot_goes_back(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clinic.emulator, "_check_slot", lambda *args, **kwargs: None)
    original: Handler = NookalEmulator.METHODS["rebookAppointment"]

    def rival_arrives(em: NookalEmulator, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        answer = original(em, method, params, scope)
        moved = em.appointments[answer["data"]["results"]["appointment_id"]]
        if not any(a.notes == "rival" for a in em.appointments.values()):
            rival = dataclasses.replace(moved, id=str(int(max(em.appointments, key=int)) + 1), notes="rival")
            em.appointments[rival.id] = rival
        return answer

    monkeypatch.setitem(NookalEmulator.METHODS, "rebookAppointment", rival_arrives)
    adapter = clinic.adapter()
    start = _day(clinic, 6, 9)
    booked = await adapter.book(await _command(adapter, start))
    with pytest.raises(SlotUnavailable) as caught:
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(hours=2)))
    assert "moved back" in caught.value.message
    assert (await clinic.adapter().get_appointment(booked.id)).start == booked.start
    assert len(clinic.calls("rebookAppointment")) == 2


async def test_a_move_whose_read_back_fails_goes_back(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    start = _day(clinic, 6, 11)
    booked = await adapter.book(await _command(adapter, start))
    clinic.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, method="GET", status=503, count=1000, armed_by="POST"))
    with pytest.raises(Unavailable) as caught:
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=start + dt.timedelta(hours=2)))
    assert "moved back" in caught.value.message
    clinic.emulator.faults.clear()
    assert _active(clinic) == [(booked.id, booked.start)]


@pytest.mark.parametrize("status", [200, 400, 409, 422])
async def test_a_refusal_quoting_a_patient_leaks_nothing(
    clinic: Clinic, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = clinic.adapter()
    command = await _command(adapter, _day(clinic, 7, 10))
    clinic.emulator.faults.add(
        Fault(
            kind=FaultKind.REJECT,
            path_prefix=f"{PREFIX}/addAppointmentBooking",
            status=status,
            message=QUOTING,
            count=5,
        )
    )
    with pytest.raises(NookalFailure) as caught:
        await adapter.book(command)
    [exchange] = [e for e in clinic.emulator.traffic.exchanges if e.path.endswith("/addAppointmentBooking")]
    assert QUOTING.encode() in exchange.response_body  # the emulator's refusal does quote the patient
    error = caught.value
    assert (error.code, error.fields, error.emr_status) == ("V001", ["first_name"], status)
    assert error.emr_message == "code V001; fields: first_name"
    said = " ".join(str(x) for x in (error, error.message, error.emr_message, vars(error)))
    for datum in PATIENT_DATA:
        assert datum not in said, said
        assert datum not in caplog.text


def test_a_failure_envelope_keeps_only_its_code_and_the_parameters_it_blames() -> None:
    failure = wire.Failure(
        errorMessage="Patient Jane Citizen already has an appointment",
        errorCode="L000_1",
        alerts=["Missing variable: date_of_birth", "Invalid variable: Jane", "Jane Citizen: jane@example.com", "x"],
    )
    error = failure_error(failure, 200)
    assert isinstance(error, NookalFailure)
    assert (error.code, error.fields) == ("L000_1", ["date_of_birth"])
    assert error.message == "Nookal says a required parameter is missing (date_of_birth)"
    assert "Jane" not in repr(vars(error))
    # A code that is prose is no code; a numeric one is.
    assert failure_error(wire.Failure(errorCode="Jane Citizen", errorMessage="Jane"), 422).emr_message is None
    assert failure_error(wire.Failure(errorCode=7), 200).emr_message == "code 7"
    auth = failure_error(wire.Failure(errorCode="L003", errorMessage="Key of Jane Citizen"), 200)
    assert isinstance(auth, AuthFailed)
    assert auth.emr_message == "code L003"


async def test_a_patient_nookal_created_is_reported_even_if_its_read_back_fails(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    await adapter.check()
    clinic.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, method="GET", status=503, count=1000, armed_by="POST"))
    created = await adapter.create_patient(NewPatient(first_name="Read", last_name="Backfails", phone="0412 111 222"))
    assert created.id in clinic.emulator.patients
    assert created.phones == ["+61412111222"]
    assert len(clinic.calls("addPatient")) == 1

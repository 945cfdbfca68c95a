"""What a caller of the `fhir` adapter would notice when the server is a plain one, when the clinic acts at the same
moment, or when a record is unusual: each test drives the emulator over real HTTP, with a documented switch
(`FhirEmulator`: `slots_enforced`, `book_changes`, `history`, `undeclared`) or test hook (`on_request`: the
clinic's own screens acting between two of the adapter's requests) where a real server's behaviour needs one."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.base import Capability
from adapters.emulation import default_seed
from adapters.errors import AlreadyCancelled, NotFound, Rejected, SlotUnavailable
from adapters.fhir import adapter as fhir_adapter
from adapters.fhir.adapter import FhirAdapter
from adapters.fhir.emulator import FhirEmulator
from schemas.appointments import AppointmentStatus, CancelReason
from schemas.catalog import Practitioner, Service
from schemas.commands import (
    AppointmentQuery,
    AvailabilityQuery,
    BookCommand,
    CancelCommand,
    NewPatient,
    RescheduleCommand,
)
from schemas.patients import Patient, PatientQuery
from tests.adapters.fhir.conftest import Served, serve
from tests.adapters.fhir.test_adapter import _assert_only_declared_parameters

ZONE = ZoneInfo("Australia/Melbourne")
Query = list[tuple[str, str]]


def local(days: int, hour: int, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(ZONE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE)


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def when(instant: str) -> dt.datetime:
    return dt.datetime.fromisoformat(instant.replace("Z", "+00:00"))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


class Clinic:
    """The adapter on one emulator, and the ids a test books with (found through the adapter)."""

    def __init__(self, served: Served, adapter: FhirAdapter) -> None:
        self.served = served
        self.emulator = served.emulator
        self.adapter = adapter
        self.alice: Practitioner
        self.standard: Service
        self.jane: Patient

    @classmethod
    async def open(cls, served: Served, http: httpx.AsyncClient, **settings: Any) -> Clinic:
        clinic = cls(served, served.adapter(http, **settings))
        clinic.alice = (await clinic.adapter.list_practitioners())[0]
        services = await clinic.adapter.list_services()
        clinic.standard = next(s for s in services if s.name == "Standard Consultation")
        [clinic.jane] = await clinic.adapter.find_patients(PatientQuery(email="jane.citizen@example.com"))
        return clinic

    def command(self, start: dt.datetime, patient_id: str | None = None) -> BookCommand:
        return BookCommand(
            patient_id=patient_id or self.jane.id,
            practitioner_id=self.alice.id,
            service_id=self.standard.id,
            start=start,
        )

    async def other_patient(self) -> Patient:
        return await self.adapter.create_patient(
            NewPatient(first_name="Other", last_name="Person", email="other.person@example.com")
        )

    def stored(self, appointment_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.served.json(f"Appointment/{appointment_id}")
        return found

    def rival(self, start: dt.datetime, patient_id: str, *, location: bool = True) -> dict[str, Any]:
        """An appointment as another client (or the clinic's screens) writes it: Alice, 30 minutes at `start`."""
        participants = [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{self.alice.id}"}, "status": "accepted"},
        ]
        if location:
            participants.append(
                {"actor": {"reference": f"Location/{self.emulator.location_ids[0]}"}, "status": "accepted"}
            )
        return {
            "status": "booked",
            "start": utc(start),
            "end": utc(start + dt.timedelta(minutes=30)),
            "participant": participants,
        }


@pytest.fixture
def plain() -> Iterator[Served]:
    """A plain R4 server (as HAPI): Slots are never marked busy and an Appointment into a taken time is stored."""
    yield from serve(FhirEmulator(default_seed(), dialect="rest", slots_enforced=False))


@pytest.fixture
def books_changes_as_new() -> Iterator[Served]:
    yield from serve(FhirEmulator(default_seed(), dialect="ihe", book_changes="as-new"))


@pytest.fixture
def ignores_cancel_status() -> Iterator[Served]:
    yield from serve(FhirEmulator(default_seed(), dialect="ihe", book_changes="ignore-status"))


@pytest.fixture
def no_date_search() -> Iterator[Served]:
    yield from serve(FhirEmulator(default_seed(), dialect="ihe", undeclared={"Appointment.date"}))


@pytest.fixture
def no_practitioner_search() -> Iterator[Served]:
    yield from serve(FhirEmulator(default_seed(), dialect="rest", undeclared={"Appointment.practitioner"}))


def _is(method: str, path: str) -> Callable[[str, str, Query], bool]:
    return lambda m, p, _: (m, p) == (method, path)


# ---------------------------------------------------------------------------------------------- 1. double bookings


async def test_a_plain_rest_server_never_gets_a_practitioner_booked_twice(
    plain: Served, http: httpx.AsyncClient
) -> None:
    clinic = await Clinic.open(plain, http)
    assert clinic.adapter.settings.slots_enforced is False  # the default: what a generic server does
    assert clinic.adapter.supports(Capability.REJECTS_DOUBLE_BOOKING)
    first = await clinic.adapter.book(clinic.command(local(2, 10)))
    other = await clinic.other_patient()
    with pytest.raises(SlotUnavailable):
        await clinic.adapter.book(clinic.command(local(2, 10, 15), other.id))
    assert clinic.emulator.stats().active_appointments == 1
    morning = AvailabilityQuery(
        practitioner_id=clinic.alice.id, service_id=clinic.standard.id, start_from=local(2, 9), start_to=local(2, 12)
    )
    starts = [s.start for s in await clinic.adapter.availability(morning)]
    assert local(2, 9, 30) in starts
    assert not {local(2, 9, 45), local(2, 10), local(2, 10, 15)} & set(starts)  # each would overlap 10:00-10:30
    assert local(2, 10, 30) in starts
    soonest = await clinic.adapter.next_available(msgspec.structs.replace(morning, start_from=local(2, 9, 45)))
    assert soonest is not None
    assert soonest.start == local(2, 10, 30)
    later = await clinic.adapter.book(clinic.command(local(2, 11), other.id))
    with pytest.raises(SlotUnavailable):  # a reschedule onto a booked time is refused too
        await clinic.adapter.reschedule(RescheduleCommand(appointment_id=later.id, start=local(2, 10)))
    assert clinic.stored(first.id)["status"] == "booked"


async def test_of_two_bookings_racing_into_one_time_the_later_is_withdrawn(
    plain: Served, http: httpx.AsyncClient
) -> None:
    """The other booking lands between this one's check and its POST: both are stored, the later is cancelled
    again and its caller told the time is taken."""
    clinic = await Clinic.open(plain, http)
    other = await clinic.other_patient()
    rivals: list[str] = []
    racer = clinic.rival(local(2, 10), other.id)
    clinic.emulator.on_request(
        _is("POST", "Appointment"), lambda: rivals.append(clinic.emulator.store("Appointment", racer))
    )
    with pytest.raises(SlotUnavailable, match="same moment"):
        await clinic.adapter.book(clinic.command(local(2, 10)))
    assert clinic.emulator.stats().active_appointments == 1
    assert clinic.stored(rivals[0])["status"] == "booked"
    mine = await clinic.adapter.list_appointments(AppointmentQuery(patient_id=clinic.jane.id))
    assert [(a.status, a.cancel_reason) for a in mine] == [(AppointmentStatus.CANCELLED, CancelReason.OTHER)]


async def test_of_two_racing_bookings_the_earlier_keeps_the_time(plain: Served, http: httpx.AsyncClient) -> None:
    clinic = await Clinic.open(plain, http)
    other = await clinic.other_patient()
    rivals: list[str] = []
    racer = clinic.rival(local(2, 10), other.id)
    clinic.emulator.on_request(
        _is("POST", "Appointment"), lambda: rivals.append(clinic.emulator.store("Appointment", racer)), after=True
    )
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    assert rivals  # stored after this booking: the racer's own check withdraws the racer
    assert booked.status is AppointmentStatus.BOOKED
    assert clinic.stored(booked.id)["status"] == "booked"


async def test_a_booking_on_a_plain_rest_server_is_four_calls(
    plain: Served, rest: Served, http: httpx.AsyncClient
) -> None:
    """`min_booking_calls` (2) is IHE's and enforced Slots'; without them a booking also reads the practitioner's
    appointments before and after the POST."""
    for served, calls in ((plain, 4), (rest, FhirAdapter.min_booking_calls)):  # `rest` enforces, as in the contract
        clinic = await Clinic.open(served, http)
        assert clinic.adapter.settings.slots_enforced is (served is rest)
        await clinic.adapter.book(clinic.command(local(2, 10)))  # warms the Schedule and the service
        before = clinic.emulator.stats().requests
        await clinic.adapter.book(clinic.command(local(2, 12)))
        assert clinic.emulator.stats().requests - before == calls


# ---------------------------------------------------------------------------------------------- 2. $book answers


async def test_a_reschedule_the_server_books_as_a_new_appointment_is_undone_and_refused(
    books_changes_as_new: Served, http: httpx.AsyncClient
) -> None:
    clinic = await Clinic.open(books_changes_as_new, http)
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    with pytest.raises(Rejected, match="made a new appointment"):
        await clinic.adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=local(3, 11)))
    assert clinic.emulator.stats().active_appointments == 1  # the second one was cancelled again
    assert (await clinic.adapter.get_appointment(booked.id)).start == local(2, 10)


async def test_a_cancel_the_server_answers_still_booked_is_an_error(
    ignores_cancel_status: Served, http: httpx.AsyncClient
) -> None:
    clinic = await Clinic.open(ignores_cancel_status, http)
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    with pytest.raises(Rejected, match="still shows the appointment as 'booked'"):
        await clinic.adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.SICK))
    assert (await clinic.adapter.get_appointment(booked.id)).status is AppointmentStatus.BOOKED


# ---------------------------------------------------------------------------------------------- 3. If-Match


async def test_a_reschedule_never_undoes_a_cancel_made_meanwhile_in_the_clinic(
    rest: Served, http: httpx.AsyncClient
) -> None:
    clinic = await Clinic.open(rest, http)
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    staff = clinic.emulator
    staff.on_request(_is("PUT", f"Appointment/{booked.id}"), lambda: staff.set_status(booked.id, "cancelled"))
    with pytest.raises(AlreadyCancelled):
        await clinic.adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=local(3, 11)))
    stored = clinic.stored(booked.id)
    assert (stored["status"], when(stored["start"])) == ("cancelled", local(2, 10))


async def test_a_cancel_keeps_a_move_made_meanwhile_in_the_clinic(rest: Served, http: httpx.AsyncClient) -> None:
    clinic = await Clinic.open(rest, http)
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    staff = clinic.emulator
    move = {"start": utc(local(2, 14)), "end": utc(local(2, 14, 30))}
    staff.on_request(_is("PUT", f"Appointment/{booked.id}"), lambda: staff.edit("Appointment", booked.id, move))
    cancelled = await clinic.adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.SICK))
    assert (cancelled.status, cancelled.start) == (AppointmentStatus.CANCELLED, local(2, 14))
    stored = clinic.stored(booked.id)
    assert (stored["status"], when(stored["start"])) == ("cancelled", local(2, 14))


# ---------------------------------------------------------------------------------------------- 4. deletions


async def test_an_appointment_deleted_in_the_server_reaches_the_feed_as_cancelled(
    rest: Served, http: httpx.AsyncClient
) -> None:
    clinic = await Clinic.open(rest, http)
    cursor = (await clinic.adapter.changes_since(None)).cursor
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    assert [a.status for a in (await clinic.adapter.changes_since(cursor)).appointments] == [AppointmentStatus.BOOKED]
    clinic.emulator.delete("Appointment", booked.id)
    with pytest.raises(NotFound):
        await clinic.adapter.get_appointment(booked.id)  # 410 Gone
    [gone] = (await clinic.adapter.changes_since(cursor)).appointments
    assert (gone.id, gone.status, gone.start, gone.patient_id) == (
        booked.id,
        AppointmentStatus.CANCELLED,
        local(2, 10),
        clinic.jane.id,
    )
    assert gone.updated_at is not None
    assert booked.updated_at is not None
    assert gone.updated_at > booked.updated_at
    assert not FhirAdapter.full_listing_complete  # a server may declare no history: deletions cannot be promised


async def test_a_full_listing_is_complete_only_where_deletions_can_be_read(
    fhir: Served, http: httpx.AsyncClient
) -> None:
    """`sync --full` marks a location's facts complete (snapshots then come from them alone) only on a server whose
    Appointment history the feed reads: elsewhere a deleted appointment would stay booked in the facts."""
    clinic = await Clinic.open(fhir, http)
    declares_history = fhir.emulator.history
    assert await clinic.adapter.lists_every_appointment() is declares_history


# ---------------------------------------------------------------------------------------------- 5. no times


async def test_an_appointment_without_times_neither_stops_the_feed_nor_blocks_a_time(
    fhir: Served, http: httpx.AsyncClient
) -> None:
    clinic = await Clinic.open(fhir, http)
    cursor = (await clinic.adapter.changes_since(None)).cursor
    waiting = clinic.rival(local(2, 10), clinic.jane.id)
    del waiting["start"], waiting["end"]
    clinic.emulator.store("Appointment", {**waiting, "status": "proposed"})
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    changes = await clinic.adapter.changes_since(cursor)
    assert [a.id for a in changes.appointments] == [booked.id]
    listed = await clinic.adapter.list_appointments(AppointmentQuery(patient_id=clinic.jane.id))
    assert [a.id for a in listed] == [booked.id]


# ---------------------------------------------------------------------------------------------- 6. paging


async def test_a_record_updated_between_two_pages_never_hides_another(
    fhir: Served, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fhir_adapter, "FEED_PAGE", "2")
    clinic = await Clinic.open(fhir, http)
    cursor = (await clinic.adapter.changes_since(None)).cursor
    staff = clinic.emulator
    ids = [staff.store("Patient", {"name": [{"family": "Page", "given": [n]}]}) for n in ("Ann", "Bea", "Cal", "Dot")]
    asked: list[Query] = []

    def second_page(method: str, path: str, query: Query) -> bool:
        if method == "GET" and path == "Patient" and any(k == "_lastUpdated" for k, _ in query):
            asked.append(query)
        return len(asked) == 2

    # The clinic edits Ann (read on the first page) before the second page is asked: Ann moves to the end.
    staff.on_request(second_page, lambda: staff.edit("Patient", ids[0], {"gender": "female"}))
    changes = await clinic.adapter.changes_since(cursor)
    assert len(asked) == 2
    assert sorted(p.id for p in changes.patients) == sorted(ids)


# ---------------------------------------------------------------------------------------------- 7. requestedPeriod


async def test_an_ihe_reschedule_asks_for_the_new_period(ihe: Served, http: httpx.AsyncClient) -> None:
    clinic = await Clinic.open(ihe, http)
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    await clinic.adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=local(3, 11)))
    [period] = clinic.stored(booked.id)["requestedPeriod"]
    assert (when(period["start"]), when(period["end"])) == (local(3, 11), local(3, 11, 30))


# ---------------------------------------------------------------------------------------------- 8. locations


async def test_an_appointment_naming_no_location_is_only_where_its_practitioner_works(
    fhir: Served, http: httpx.AsyncClient
) -> None:
    clinic = await Clinic.open(fhir, http)
    staff = clinic.emulator
    elsewhere = staff.store("Location", {"status": "active", "name": "Another Clinic"})
    visiting = staff.store("Practitioner", {"active": True, "name": [{"family": "Visitor", "given": ["Val"]}]})
    staff.store(
        "PractitionerRole",
        {
            "active": True,
            "practitioner": {"reference": f"Practitioner/{visiting}"},
            "location": [{"reference": f"Location/{elsewhere}"}],
        },
    )
    theirs = clinic.rival(local(2, 10), clinic.jane.id, location=False)
    theirs["participant"][1]["actor"]["reference"] = f"Practitioner/{visiting}"
    other_location = staff.store("Appointment", theirs)
    with pytest.raises(NotFound):
        await clinic.adapter.get_appointment(other_location)
    with pytest.raises(NotFound):
        await clinic.adapter.cancel(CancelCommand(appointment_id=other_location, reason=CancelReason.OTHER))
    assert clinic.stored(other_location)["status"] == "booked"
    ours = staff.store("Appointment", clinic.rival(local(2, 12), clinic.jane.id, location=False))
    assert (await clinic.adapter.get_appointment(ours)).practitioner_id == clinic.alice.id  # Alice works here


# ---------------------------------------------------------------------------------------------- 10. declared reads


async def test_a_booking_sends_no_search_parameter_the_server_did_not_declare(
    no_date_search: Served, http: httpx.AsyncClient
) -> None:
    clinic = await Clinic.open(no_date_search, http)
    assert not clinic.adapter.supports(Capability.RECONCILES_TIMED_OUT_CREATE)
    booked = await clinic.adapter.book(clinic.command(local(2, 10)))
    assert booked.start == local(2, 10)
    other = await clinic.other_patient()
    with pytest.raises(SlotUnavailable):  # the server's own $book check still refuses a clash
        await clinic.adapter.book(clinic.command(local(2, 10, 15), other.id))
    _assert_only_declared_parameters(no_date_search)


async def test_no_double_booking_is_claimed_without_a_way_to_check(
    no_practitioner_search: Served, http: httpx.AsyncClient
) -> None:
    declared = await no_practitioner_search.adapter(http, slots_enforced=False).declared()
    assert Capability.BOOK in declared.capabilities
    assert Capability.REJECTS_DOUBLE_BOOKING not in declared.capabilities

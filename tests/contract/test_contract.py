"""One suite every adapter passes against its emulator over real HTTP. Capabilities decide what is asked."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
import pytest

from adapters.base import Capability
from adapters.emulation import FaultKind
from adapters.errors import AdapterError, AuthFailed, NotFound, RateLimited, SlotUnavailable, Timeout, Unavailable
from schemas.appointments import AppointmentStatus, CancelReason
from schemas.commands import AppointmentQuery, CancelCommand, NewPatient, RescheduleCommand
from schemas.patients import PatientQuery
from tests.contract.conftest import SLOW_MS, Harness

UTC = dt.UTC


async def test_book_get_reschedule_cancel(harness: Harness) -> None:
    harness.requires(Capability.BOOK, Capability.GET_APPOINTMENT, Capability.RESCHEDULE, Capability.CANCEL)
    command = await harness.book(days_ahead=2, hour=10)

    booked = await harness.adapter.book(command)
    assert booked.status is AppointmentStatus.BOOKED
    assert booked.start == command.start  # the same instant, whatever zone it is expressed in
    assert booked.start.utcoffset() is not None
    assert booked.end - booked.start == (await harness.booking()).duration
    assert booked.time_zone == harness.seed.time_zone
    assert (booked.patient_id, booked.practitioner_id, booked.service_id) == (
        command.patient_id,
        command.practitioner_id,
        command.service_id,
    )
    stats = await harness.stats()
    assert (stats.appointments, stats.active_appointments) == (1, 1)

    fetched = await harness.adapter.get_appointment(booked.id)
    assert fetched.id == booked.id
    assert fetched.start == command.start

    new_start = harness.local(3, 14, 30)
    moved = await harness.adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=new_start))
    assert moved.id == booked.id
    assert moved.start == new_start
    assert moved.end - moved.start == (await harness.booking()).duration
    assert (await harness.adapter.get_appointment(booked.id)).start == new_start
    assert (await harness.stats()).appointments == 1

    cancelled = await harness.adapter.cancel(
        CancelCommand(appointment_id=booked.id, reason=CancelReason.AWAY, note="travelling")
    )
    assert cancelled.status is AppointmentStatus.CANCELLED
    assert cancelled.cancel_reason is CancelReason.AWAY
    assert cancelled.start == new_start
    again = await harness.adapter.get_appointment(booked.id)
    assert again.status is AppointmentStatus.CANCELLED
    stats = await harness.stats()
    assert (stats.appointments, stats.active_appointments) == (1, 0)


async def test_list_a_patients_appointments(harness: Harness) -> None:
    harness.requires(Capability.BOOK, Capability.LIST_APPOINTMENTS)
    first = await harness.adapter.book(await harness.book(days_ahead=2, hour=9))
    second = await harness.adapter.book(await harness.book(days_ahead=4, hour=11))
    booking = await harness.booking()

    listed = await harness.adapter.list_appointments(AppointmentQuery(patient_id=booking.patient_id))
    assert [a.id for a in listed] == [first.id, second.id]
    assert all(a.patient_id == booking.patient_id for a in listed)

    window = await harness.adapter.list_appointments(
        AppointmentQuery(patient_id=booking.patient_id, start_from=harness.local(3, 0), start_to=harness.local(5, 0))
    )
    assert [a.id for a in window] == [second.id]


async def test_availability_in_a_range_and_next(harness: Harness) -> None:
    harness.requires(Capability.AVAILABILITY, Capability.CATALOG, Capability.FIND_PATIENT_BY_EMAIL)
    booking = await harness.booking()
    query = harness.availability_query(booking, days_ahead=2, from_hour=9, to_hour=12)

    slots = await harness.adapter.availability(query)
    assert slots, "an open morning has free slots"
    assert all(query.start_from <= s.start < query.start_to for s in slots)
    assert all(s.end - s.start == booking.duration for s in slots)
    assert [s.start for s in slots] == sorted(s.start for s in slots)
    assert all(s.practitioner_id == booking.practitioner_id and s.service_id == booking.service_id for s in slots)

    if harness.adapter.supports(Capability.NEXT_AVAILABILITY):
        best = await harness.adapter.next_available(query)
        assert best is not None
        assert best.start == slots[0].start

    if harness.adapter.supports(Capability.BOOK):
        taken = await harness.adapter.book(await harness.book_at(slots[0].start))
        after = await harness.adapter.availability(query)
        assert taken.start not in [s.start for s in after]


async def test_patient_lookup_or_create(harness: Harness) -> None:
    harness.requires(Capability.FIND_PATIENT_BY_EMAIL, Capability.CREATE_PATIENT)
    email = f"new.patient.{uuid.uuid4().hex[:8]}@example.com"
    assert await harness.adapter.find_patients(PatientQuery(email=email)) == []

    created = await harness.adapter.create_patient(
        NewPatient(first_name="Sam", last_name="Lee", email=email, phone="+61 400 111 222")
    )
    assert (created.first_name, created.last_name, created.email) == ("Sam", "Lee", email)

    found = await harness.adapter.find_patients(PatientQuery(email=email))
    assert [p.id for p in found] == [created.id]
    assert (await harness.adapter.get_patient(created.id)).email == email


async def test_seeded_patient_phone_is_e164(harness: Harness) -> None:
    harness.requires(Capability.FIND_PATIENT_BY_EMAIL)
    seeded = harness.seed.patients[0]
    assert seeded.email is not None
    assert seeded.phone is not None
    [patient] = await harness.adapter.find_patients(PatientQuery(email=seeded.email))
    assert patient.phones == ["+" + "".join(ch for ch in seeded.phone if ch.isdigit())]


async def test_unknown_appointment_is_not_found(harness: Harness) -> None:
    harness.requires(Capability.GET_APPOINTMENT)
    with pytest.raises(NotFound):
        await harness.adapter.get_appointment("987654321")


async def test_taken_slot_is_refused(harness: Harness) -> None:
    harness.requires(Capability.BOOK, Capability.REJECTS_DOUBLE_BOOKING, Capability.CREATE_PATIENT)
    await harness.adapter.book(await harness.book(days_ahead=2, hour=10))
    other = await harness.adapter.create_patient(
        NewPatient(first_name="Other", last_name="Person", email=f"other.{uuid.uuid4().hex[:8]}@example.com")
    )
    # Same practitioner, overlapping start (15 minutes into the first appointment).
    with pytest.raises(SlotUnavailable):
        await harness.adapter.book(await harness.book(days_ahead=2, hour=10, minute=15, patient_id=other.id))
    assert (await harness.stats()).active_appointments == 1


async def test_bad_credentials_are_auth_failed(harness: Harness) -> None:
    adapter = harness.build(credentials=harness.emulator.bad_credentials(harness.base_url))
    with pytest.raises(AuthFailed):
        await adapter.check()
    if adapter.supports(Capability.GET_APPOINTMENT):
        with pytest.raises(AuthFailed):
            await adapter.get_appointment("1")


async def test_rate_limit_is_reported_with_retry_after(harness: Harness) -> None:
    await harness.fault(FaultKind.RATE_LIMIT, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await harness.adapter.check()
    assert caught.value.retry_after >= 1


async def test_5xx_on_a_read_is_retried(harness: Harness) -> None:
    harness.requires(Capability.BOOK, Capability.GET_APPOINTMENT)
    booked = await harness.adapter.book(await harness.book())
    before = (await harness.stats()).requests
    await harness.fault(FaultKind.ERROR_5XX, method="GET", status=503)
    fetched = await harness.adapter.get_appointment(booked.id)
    assert fetched.id == booked.id
    assert (await harness.stats()).requests - before >= 2


async def test_5xx_on_a_write_is_unavailable_and_books_nothing(harness: Harness) -> None:
    harness.requires(Capability.BOOK)
    command = await harness.book()
    await harness.fault(FaultKind.ERROR_5XX, method="POST", status=503)
    with pytest.raises(Unavailable):
        await harness.adapter.book(command)
    assert (await harness.stats()).appointments == 0
    booked = await harness.adapter.book(command)  # the caller's own retry books it once
    assert booked.start == command.start
    assert (await harness.stats()).appointments == 1


async def test_slow_read_is_a_timeout(harness: Harness) -> None:
    await harness.fault(FaultKind.LATENCY, method="GET", delay_ms=SLOW_MS, count=harness.attempts)
    with pytest.raises(Timeout):
        await harness.adapter.check()


async def test_create_timed_out_after_apply_is_reconciled(harness: Harness) -> None:
    harness.requires(Capability.BOOK, Capability.RECONCILES_TIMED_OUT_CREATE)
    command = await harness.book()
    await harness.fault(FaultKind.TIMEOUT_AFTER_APPLY, method="POST", delay_ms=SLOW_MS)
    booked = await harness.adapter.book(command)
    assert booked.start == command.start
    stats = await harness.stats()
    assert (stats.appointments, stats.active_appointments) == (1, 1)


# Apprise-style table: one read under each transport failure, and what the caller must see.
TRANSPORT_CASES: list[tuple[str, FaultKind, dict[str, int], bool, type[AdapterError] | None]] = [
    # id, fault, fault options, hits every attempt, expected error (None = the read succeeds)
    ("timeout-once", FaultKind.LATENCY, {"delay_ms": SLOW_MS}, False, None),
    ("timeout-always", FaultKind.LATENCY, {"delay_ms": SLOW_MS}, True, Timeout),
    ("timeout-before-apply", FaultKind.TIMEOUT_BEFORE_APPLY, {"delay_ms": SLOW_MS}, True, Timeout),
    ("drop-once", FaultKind.DROP, {}, False, None),
    ("drop-always", FaultKind.DROP, {}, True, Unavailable),
    ("429", FaultKind.RATE_LIMIT, {"retry_after": 2}, False, RateLimited),
    ("503-once", FaultKind.ERROR_5XX, {"status": 503}, False, None),
    ("503-always", FaultKind.ERROR_5XX, {"status": 503}, True, Unavailable),
    ("500", FaultKind.ERROR_5XX, {"status": 500}, False, Unavailable),
]


@pytest.mark.parametrize(
    ("kind", "options", "every_attempt", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in TRANSPORT_CASES],
)
async def test_read_under_transport_failure(
    harness: Harness,
    kind: FaultKind,
    options: dict[str, int],
    every_attempt: bool,
    expected: type[AdapterError] | None,
) -> None:
    harness.requires(Capability.BOOK, Capability.GET_APPOINTMENT)
    booked = await harness.adapter.book(await harness.book())
    await harness.fault(kind, method="GET", count=harness.attempts if every_attempt else 1, **options)
    if expected is None:
        assert (await harness.adapter.get_appointment(booked.id)).id == booked.id
    else:
        with pytest.raises(expected):
            await harness.adapter.get_appointment(booked.id)
    await harness.clear_faults()
    assert (await harness.stats()).appointments == 1


async def test_a_booking_makes_the_adapters_stated_minimum_of_calls(harness: Harness) -> None:
    """`min_booking_calls` is what the docstring promises and bench/overhead checks the gateway against: counted here
    on the emulator, for a warm adapter (the gateway pools them) given the end the gateway's catalog supplies."""
    harness.requires(Capability.BOOK, Capability.GET_APPOINTMENT)
    booking = await harness.booking()
    counted: list[int] = []
    for hour in (10, 12):  # the first warms whatever the adapter keeps per instance (a session token, a length)
        command = await harness.book(days_ahead=2, hour=hour)
        if harness.adapter.supports(Capability.CUSTOM_DURATION):
            command = msgspec.structs.replace(command, end=command.start + booking.duration)
        before = (await harness.stats()).requests
        booked = await harness.adapter.book(command)
        counted.append((await harness.stats()).requests - before)
        assert (await harness.adapter.get_appointment(booked.id)).start == command.start
    assert counted[1] == type(harness.adapter).min_booking_calls, counted
    assert counted[0] >= counted[1]


def test_capabilities_are_data(harness: Harness) -> None:
    """The support matrix is generated from this: it must be a frozenset of Capability, and stable."""
    cls = type(harness.adapter)
    assert isinstance(cls.capabilities, frozenset)
    assert all(isinstance(c, Capability) for c in cls.capabilities)
    assert cls.slug == harness.slug
    assert cls.verified_against

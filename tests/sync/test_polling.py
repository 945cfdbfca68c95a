"""Changes made in the EMR's own screens reach subscribers once: the poll, the digests, the lease, the crash."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from adapters.emulation import Fault, FaultKind
from gateway.storage import sync as db
from gateway.storage.store import Store
from gateway.sync.scheduler import poll_location, tick
from schemas.appointments import AppointmentStatus
from schemas.webhooks import AppointmentEventData, EventType, PatientSnapshot
from tests.gateway.conftest import Harness
from tests.sync.support import ClinicScreens, Sync, day_ahead, local

BOOKED, RESCHEDULED, CANCELLED, NO_SHOW, UPDATED = (
    EventType.APPOINTMENT_BOOKED,
    EventType.APPOINTMENT_RESCHEDULED,
    EventType.APPOINTMENT_CANCELLED,
    EventType.APPOINTMENT_NO_SHOW,
    EventType.PATIENT_UPDATED,
)


def test_a_booking_in_the_emr_is_announced_once_with_names_resolved(harness: Harness) -> None:
    sync, clinic = Sync(harness), ClinicScreens(harness)
    here, there = harness.sites[0].location_id, harness.sites[1].location_id
    assert sync.tick() == 2  # both locations: the first poll only sets the cursor
    assert sync.new_events() == []

    start = local(day_ahead(), 10)
    appointment_id = clinic.book(start)
    sync.tick()
    booked, updated = sync.new_events()
    assert (booked.type, booked.location_id, updated.type, updated.location_id) == (BOOKED, here, UPDATED, here)
    assert isinstance(booked.data, AppointmentEventData)
    summary = booked.data.appointment
    assert (summary.id, summary.status, summary.start) == (appointment_id, AppointmentStatus.BOOKED, start)
    assert (summary.practitioner_name, summary.service_name, summary.location_name) == (
        "Alice Nguyen",
        "Standard Consultation",
        "North Clinic",
    )
    assert booked.data.patient is not None
    assert booked.data.patient.last_name == "Citizen"
    assert isinstance(updated.data, PatientSnapshot)
    assert updated.data.upcoming_appointment is not None
    assert updated.data.upcoming_appointment.id == appointment_id
    assert (updated.data.upcoming_count, updated.data.total_appointments) == (1, 1)
    assert there not in {e.location_id for e in [booked, updated]}

    sync.tick()
    assert sync.new_events() == []  # nothing changed: the digests hold every event back
    clinic.close()


def test_reschedule_notes_and_cancel_in_the_emr_are_told_apart(harness: Harness) -> None:
    sync, clinic = Sync(harness), ClinicScreens(harness)
    here = harness.sites[0].location_id
    sync.tick()
    start = local(day_ahead(), 10)
    appointment_id = clinic.book(start)
    sync.tick()
    sync.new_events()

    clinic.move(appointment_id, start + timedelta(hours=2))
    sync.tick()
    moved, updated = sync.new_events()
    assert (moved.type, updated.type) == (RESCHEDULED, UPDATED)
    assert isinstance(moved.data, AppointmentEventData)
    assert moved.data.previous_start == start
    assert moved.data.appointment.start == start + timedelta(hours=2)

    clinic.edit_notes(appointment_id, "bring the x-rays")
    sync.tick()
    assert sync.new_events() == []  # notes are not in what subscribers see

    clinic.cancel(appointment_id)
    sync.tick()
    assert sync.new_types() == [(CANCELLED, here), (UPDATED, here)]
    snapshot = sync.events()[-1].data
    assert isinstance(snapshot, PatientSnapshot)
    assert (snapshot.upcoming_appointment, snapshot.cancellation_count, snapshot.upcoming_count) == (None, 1, 0)
    sync.tick()
    assert sync.new_events() == []
    clinic.close()


def test_a_no_show_is_its_own_event(harness: Harness) -> None:
    """The clinic marks "did not arrive" in Cliniko's screens: one no-show event, and a repeat poll adds nothing."""
    sync, clinic = Sync(harness), ClinicScreens(harness)
    sync.tick()
    appointment_id = clinic.book(local(day_ahead(), 11))
    sync.tick()
    sync.new_events()
    clinic.mark_no_show(appointment_id)
    sync.tick()
    events = sync.new_events()
    assert [e.type for e in events if e.type != UPDATED] == [NO_SHOW]
    sync.tick()
    assert sync.new_events() == []
    clinic.close()


def test_two_workers_never_poll_one_location_at_once(harness: Harness) -> None:
    sync, clinic = Sync(harness), ClinicScreens(harness)
    sync.tick()
    clinic.book(local(day_ahead(), 12))

    async def race(store: Store, http: httpx.AsyncClient) -> list[int]:
        return list(await asyncio.gather(*(tick(store, http, sync.config, f"worker-{n}") for n in range(3))))

    assert sum(sync.run(race)) == 2  # two locations, each polled by exactly one worker
    assert [e.type for e in sync.new_events()] == [BOOKED, UPDATED]

    async def hold(store: Store, _http: httpx.AsyncClient) -> list[db.SyncState]:
        return await db.claim_due(store, "holder", datetime.now(UTC), 300, 10)

    assert len(sync.run(hold)) == 2
    assert sync.tick("worker-9") == 0  # due, but leased to another worker
    clinic.close()


def test_a_poll_that_dies_before_its_commit_leaves_nothing_and_the_next_one_emits_once(harness: Harness) -> None:
    sync, clinic = Sync(harness, sync_lease_seconds=30), ClinicScreens(harness)
    sync.tick()
    clinic.book(local(day_ahead(), 13))
    here = harness.sites[0].location_id

    async def stalled_then_taken_over(store: Store, http: httpx.AsyncClient) -> tuple[int, int]:
        now = datetime.now(UTC)
        slow = next(s for s in await db.claim_due(store, "slow", now, 30, 10) if s.location_id == here)
        # The slow worker's lease runs out before it commits; another worker takes the location over.
        later = now + timedelta(seconds=31)
        fast = next(s for s in await db.claim_due(store, "fast", later, 30, 10) if s.location_id == here)
        lost = await poll_location(store, http, sync.config, slow, "slow")
        won = await poll_location(store, http, sync.config, fast, "fast")
        return lost, won

    assert sync.run(stalled_then_taken_over) == (0, 2)
    assert [e.type for e in sync.new_events()] == [BOOKED, UPDATED]
    sync.tick()
    assert sync.new_events() == []
    clinic.close()


def test_a_long_poll_renews_its_short_lease_and_a_dead_workers_lease_lapses_fast(harness: Harness) -> None:
    """Leases are short so a crashed worker's locations are polled again within one lease; a live poll that takes
    longer than its lease renews it, so nobody else polls that location meanwhile."""
    sync, clinic = Sync(harness, sync_lease_seconds=0.6), ClinicScreens(harness)
    sync.tick()
    clinic.book(local(day_ahead(), 14))
    here = harness.sites[0].location_id

    async def slow_poll_and_a_thief(store: Store, http: httpx.AsyncClient) -> tuple[list[str], int, list[str]]:
        [slow] = [s for s in await db.claim_due(store, "slow", datetime.now(UTC), 0.6, 10) if s.location_id == here]
        harness.emulator.faults.add(Fault(kind=FaultKind.LATENCY, method="GET", delay_ms=700, count=2))
        poll = asyncio.create_task(poll_location(store, http, sync.config, slow, "slow"))
        await asyncio.sleep(1.0)  # well past the first lease
        stolen = [s.location_id for s in await db.claim_due(store, "thief", datetime.now(UTC), 0.6, 10)]
        published = await poll
        # A worker that claims and dies: its lease lapses within one lease, and another worker polls the location.
        dead = await db.claim_due(store, "dead", datetime.now(UTC) + timedelta(hours=2), 0.6, 10)
        await asyncio.sleep(0.7)
        revived = [
            s.location_id for s in await db.claim_due(store, "next", datetime.now(UTC) + timedelta(hours=2), 0.6, 10)
        ]
        assert {s.location_id for s in dead} == {site.location_id for site in harness.sites}
        return stolen, published, revived

    stolen, published, revived = sync.run(slow_poll_and_a_thief)
    assert here not in stolen
    assert published == 2
    assert here in revived
    clinic.close()


def test_the_emr_rate_limit_postpones_the_location_and_is_recorded(harness: Harness) -> None:
    sync = Sync(harness)
    sync.tick()
    harness.emulator.faults.add(Fault(kind=FaultKind.RATE_LIMIT, path_prefix="/v1/patients", retry_after=120, count=2))
    before = datetime.now(UTC)
    sync.tick()

    async def states(store: Store, _http: httpx.AsyncClient) -> list[db.SyncState | None]:
        return [await db.get_state(store, site.location_id) for site in harness.sites]

    for state in sync.run(states):
        assert state is not None
        assert state.next_poll_at is not None
        assert state.next_poll_at >= before + timedelta(seconds=100)
        assert (state.last_error, state.consecutive_failures) == ("RateLimited", 1)
    assert sync.tick() == 0  # not due again before Cliniko's reset


def test_the_daily_sweep_rechecks_without_repeating_itself(harness: Harness) -> None:
    sync, clinic = Sync(harness, sync_sweep_seconds=0), ClinicScreens(harness)
    sync.tick()  # first poll: sets the cursor and the sweep's starting point
    clinic.book(datetime.now(UTC) - timedelta(minutes=5))  # already started: the sweep window covers it
    sync.tick()
    booked, updated = sync.new_events()
    assert (booked.type, updated.type) == (BOOKED, UPDATED)
    assert isinstance(updated.data, PatientSnapshot)
    assert (updated.data.visit_count, updated.data.upcoming_appointment) == (1, None)
    sync.tick()
    sync.tick()
    assert sync.new_events() == []
    clinic.close()


def test_a_change_stamped_before_the_newest_stamp_read_is_still_seen(harness: Harness) -> None:
    """Cliniko keeps `updated_at` moving by stamping a second change within one second a second later, so rapid
    edits leave stamps ahead of the clock; a booking made just after is stamped earlier than them. The cursor is
    held back, so the next poll still reads it."""
    sync, clinic = Sync(harness), ClinicScreens(harness)
    sync.tick()
    first = clinic.book(local(day_ahead(), 10))
    for hour in (11, 12, 13):
        clinic.move(first, local(day_ahead(), hour))
    sync.tick()
    sync.new_events()
    second = clinic.book(local(day_ahead(3), 9))
    sync.tick()
    booked = [e for e in sync.new_events() if e.type == BOOKED]
    assert [e.data.appointment.id for e in booked if isinstance(e.data, AppointmentEventData)] == [second]
    clinic.close()

"""Snapshots from what the gateway already knows, and a poll interval derived from the EMR account's budget.

A changed appointment costs no appointment read once its patient's appointments are known (a patient's own are
listed once, the first time); patients are read in batches; the interval keeps >= 80 % of the budget free.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import update

from adapters.cliniko.adapter import ClinikoAdapter
from adapters.emulation import Fault, FaultKind
from adapters.pacing import RateLimit
from gateway.config import GatewayConfig
from gateway.storage import sync as db
from gateway.storage.store import Store
from gateway.storage.tables import sync_state
from gateway.sync.scheduler import adaptive_interval
from schemas.webhooks import AppointmentEventData, EventType, PatientSnapshot
from tests.gateway.conftest import Harness, run_sync
from tests.sync.support import ClinicScreens, Sync, day_ahead, local

T = TypeVar("T")


class Recording(httpx.AsyncBaseTransport):
    """The EMR requests a sync sent, as (method, path, query), recorded where they leave the process."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path, request.url.query.decode()))
        return await self.inner.handle_async_request(request)


class RecordedSync(Sync):
    def __init__(self, h: Harness, **config: object) -> None:
        super().__init__(h, **config)
        self.transport = Recording()

    def run(self, work: Callable[[Store, httpx.AsyncClient], Awaitable[T]]) -> T:
        async def go() -> T:
            store = await Store.open(self.h.database_url, self.h.keyring)
            self.transport.inner = httpx.AsyncHTTPTransport()  # its pool belongs to this run's event loop
            try:
                async with httpx.AsyncClient(timeout=10, transport=self.transport) as http:
                    return await work(store, http)
            finally:
                await store.close()

        return run_sync(go())

    def polled(self) -> list[tuple[str, str, str]]:
        """What the last tick sent, and forget it."""
        sent, self.transport.sent = self.transport.sent, []
        return sent


def patient_listings(sent: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Requests for one patient's appointments (what a snapshot used to cost per patient)."""
    return [r for r in sent if "appointments" in r[1] and ("patient_id" in r[2] or "/patients/" in r[1])]


def patient_reads(sent: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [r for r in sent if r[1].rstrip("/").split("/")[-2:-1] == ["patients"] or "q%5B%5D=id%3A%3D" in r[2]]


def test_a_patients_appointments_are_read_once_then_snapshots_come_from_stored_facts(harness: Harness) -> None:
    sync, clinic = RecordedSync(harness), ClinicScreens(harness)
    time.sleep(1.1)  # the seeded patient is then older than the cursor: only site 0's booking brings it back
    sync.tick()  # the first poll sets the cursor
    sync.polled()

    first = clinic.book(local(day_ahead(3), 10))
    sync.tick()
    sent = sync.polled()
    assert len(patient_listings(sent)) == 1  # unknown until now: the patient's own appointments, once
    assert [e.type for e in sync.new_events()] == [EventType.APPOINTMENT_BOOKED, EventType.PATIENT_UPDATED]

    moved_to = local(day_ahead(4), 11)
    clinic.move(first, moved_to)
    second = clinic.book(local(day_ahead(5), 9))
    sync.tick()
    sent = sync.polled()
    assert patient_listings(sent) == []  # known: the snapshot is built from stored facts
    batch = [r for r in sent if r[1].endswith("/patients") and "q%5B%5D=id%3A%3D" in r[2]]
    assert len(batch) == 1  # the patient, in one batch request (`q[]=id:=...`)
    fresh = sync.new_events()
    kinds = sorted(e.type for e in fresh)
    assert kinds == sorted([EventType.APPOINTMENT_RESCHEDULED, EventType.APPOINTMENT_BOOKED, EventType.PATIENT_UPDATED])
    snapshot = next(e.data for e in fresh if isinstance(e.data, PatientSnapshot))
    # What the EMR itself would say: both appointments, the moved one first and at its new time.
    assert (snapshot.total_appointments, snapshot.upcoming_count) == (2, 2)
    assert snapshot.upcoming_appointment is not None
    assert (snapshot.upcoming_appointment.id, snapshot.upcoming_appointment.start) == (first, moved_to)
    assert snapshot.upcoming_appointment.practitioner_name == "Alice Nguyen"
    booked = next(e.data for e in fresh if e.type is EventType.APPOINTMENT_BOOKED)
    assert isinstance(booked, AppointmentEventData)
    assert booked.appointment.id == second

    clinic.cancel(second)
    sync.tick()
    assert patient_listings(sync.polled()) == []
    fresh = sync.new_events()
    snapshot = next(e.data for e in fresh if isinstance(e.data, PatientSnapshot))
    assert (snapshot.total_appointments, snapshot.upcoming_count, snapshot.cancellation_count) == (2, 1, 1)

    sync.tick()
    assert sync.new_events() == []  # a quiet poll: only the feed
    quiet = sync.polled()
    assert len(quiet) == 2 * len(harness.sites)  # per location, Cliniko's feed: patients and appointments
    assert patient_reads(quiet) == []
    clinic.close()


def test_stored_facts_never_carry_names_or_contact_details(harness: Harness) -> None:
    sync, clinic = Sync(harness), ClinicScreens(harness)
    sync.tick()
    clinic.book(local(day_ahead(3), 10))
    sync.tick()

    async def columns(store: Store, _http: httpx.AsyncClient) -> set[str]:
        from gateway.storage.tables import appointment_states, patient_snapshots

        return {c.name for c in appointment_states.columns} | {c.name for c in patient_snapshots.columns}

    names = sync.run(columns)
    for personal in ("first_name", "last_name", "email", "phone", "name", "notes", "date_of_birth"):
        assert personal not in names
    clinic.close()


CLINIKO = ClinikoAdapter.rate_limits


def test_fifty_locations_on_one_cliniko_account_leave_four_fifths_of_its_budget_free() -> None:
    config = GatewayConfig()
    rate = min(limit.per_second for limit in CLINIKO)
    interval = adaptive_interval(config, ClinikoAdapter, CLINIKO, requests=2, sharing=50, fill=1.0)
    polls_per_second = 50 * 2 / interval
    assert polls_per_second <= 0.2 * rate + 1e-9  # at most a fifth of 200/min spent on quiet polls (15 % by default)
    single = adaptive_interval(config, ClinikoAdapter, CLINIKO, requests=2, sharing=1, fill=1.0)
    assert single <= 5.0  # one location polls every few seconds: an edit reaches subscribers well within 15 s


def test_polls_back_off_when_bookings_drain_the_budget_and_a_fixed_interval_wins() -> None:
    config = GatewayConfig()
    idle = adaptive_interval(config, ClinikoAdapter, CLINIKO, requests=2, sharing=1, fill=1.0)
    busy = adaptive_interval(config, ClinikoAdapter, CLINIKO, requests=2, sharing=1, fill=0.1)
    assert busy == pytest.approx(2 * idle)  # at most 2x: the bucket refills in seconds
    costly = adaptive_interval(config, ClinikoAdapter, CLINIKO, requests=12, sharing=1, fill=1.0)
    assert costly == pytest.approx(6 * idle)  # a poll that cost more waits longer
    assert (
        adaptive_interval(GatewayConfig(poll_seconds=30.0), ClinikoAdapter, CLINIKO, requests=9, sharing=9, fill=0)
        == 30
    )
    daily = (RateLimit(per_second=4.5, burst=20), RateLimit(per_second=0.1, burst=1000))
    # The tightest bucket (a daily allowance of 8,640) governs: 2 requests per poll within 15 % of it.
    assert adaptive_interval(config, ClinikoAdapter, daily, requests=2, sharing=1, fill=1.0) == pytest.approx(2 / 0.015)


def test_the_derived_interval_is_kept_and_shown_on_health(harness: Harness) -> None:
    sync = Sync(harness, poll_seconds=None, emr_rate_limits={})
    sync.tick()
    location_id = harness.sites[0].location_id

    async def state(store: Store, _http: httpx.AsyncClient) -> db.SyncState | None:
        return await db.get_state(store, location_id)

    found = sync.run(state)
    assert found is not None
    assert found.poll_interval_seconds is not None
    assert found.poll_interval_seconds >= GatewayConfig().poll_min_seconds
    assert found.account_key is not None
    assert found.account_key.startswith("emr:cliniko:")
    with harness.client() as c:
        health = c.get("/v1/health", params={"fresh": "true"}).json()
    assert health["sync"]["poll_interval_seconds"] == pytest.approx(found.poll_interval_seconds)
    assert health["sync"]["facts_complete"] is False


def test_a_patient_the_emr_no_longer_has_is_forgotten(harness: Harness) -> None:
    sync, clinic = Sync(harness), ClinicScreens(harness)
    sync.tick()
    first = clinic.book(local(day_ahead(3), 10))
    clinic.book(local(day_ahead(6), 10))
    sync.tick()
    location_id = harness.sites[0].location_id

    async def stored(store: Store, _http: httpx.AsyncClient) -> tuple[int, int]:
        async with store.engine.connect() as conn:
            facts = await db.load_patient_appointments(conn, location_id, [clinic.patient_id])
            digests = await db.load_snapshots(conn, location_id, [clinic.patient_id])
        return len(facts[clinic.patient_id]), len(digests)

    assert sync.run(stored) == (2, 1)
    sync.new_events()
    clinic.move(first, local(day_ahead(4), 10))
    emulator = harness.emulator
    with emulator._lock:  # type: ignore[attr-defined]  # deleted in Cliniko's own screens (its API has no delete)
        emulator.patients.pop(clinic.patient_id)  # type: ignore[attr-defined]
    sync.tick()
    assert EventType.PATIENT_UPDATED not in [e.type for e in sync.new_events()]
    # Only the appointment the feed just brought is kept (its state tells the next change apart); the patient's
    # other facts and their digest are gone.
    assert sync.run(stored) == (1, 0)
    clinic.close()


def test_a_location_whose_polls_fail_still_counts_once_for_its_account(harness: Harness) -> None:
    """Until a location's account is known it counts as sharing every account (a new fleet starts slowly); a
    location whose every poll fails must not stay unknown and slow every other account's polls forever."""
    sync = Sync(harness)
    sync.tick()  # the first poll only sets the cursor (no request on Cliniko)

    async def forget(store: Store, _http: httpx.AsyncClient) -> None:
        # As if that first poll had failed (an EMR whose first poll already calls it, e.g. a token mint).
        async with store.write() as conn:
            await conn.execute(update(sync_state).values(account_key=None, next_poll_at=None))

    sync.run(forget)
    harness.emulator.faults.add(Fault(kind=FaultKind.RATE_LIMIT, path_prefix="/v1/patients", retry_after=60, count=4))
    sync.tick()  # both locations' feeds are refused

    async def sharing(store: Store, _http: httpx.AsyncClient) -> tuple[list[db.SyncState | None], int]:
        states = [await db.get_state(store, site.location_id) for site in harness.sites]
        return states, await db.locations_sharing(store, "emr:cliniko:some-other-account")

    states, other = sync.run(sharing)
    assert all(s is not None and s.last_error == "RateLimited" for s in states)
    assert all(s is not None and s.account_key is not None for s in states)
    assert other == 1  # neither failing location counts towards another account

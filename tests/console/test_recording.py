"""What the console's numbers come from: a poll records one sync run (requests, what changed, events, an error's
class) and adds to its hour; the outbox counts events per hour and stores each event's patient."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from adapters.emulation import Fault, FaultKind
from gateway.storage.store import Store
from gateway.storage.tables import events, location_hourly, sync_runs
from tests.console.conftest import Console, attr, tagged
from tests.gateway.conftest import Harness, run_sync
from tests.sync.support import ClinicScreens, Sync, day_ahead, local


def _select(h: Harness, *columns: Any) -> list[Any]:
    async def go() -> list[Any]:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.connect() as conn:
                return list((await conn.execute(select(*columns))).all())
        finally:
            await store.close()

    return run_sync(go())


def test_a_poll_records_its_run_and_its_hour(harness: Harness) -> None:
    here = harness.sites[0].location_id
    sync, clinic = Sync(harness), ClinicScreens(harness)
    sync.tick()
    clinic.book(local(day_ahead(), 10))
    sync.tick()
    r = sync_runs.c
    runs = _select(harness, r.location_id, r.trigger, r.emr_requests, r.appointments_changed, r.patients_changed,
                   r.events, r.error, r.started_at, r.finished_at)  # fmt: skip
    mine = sorted((row for row in runs if row.location_id == here), key=lambda row: row.started_at)
    assert len(mine) == 2
    assert len(runs) == 4  # both locations, two polls each
    quiet, busy = mine
    assert (quiet.events, quiet.error) == (0, None)  # the first poll only sets the cursor
    assert (busy.trigger, busy.appointments_changed, busy.patients_changed, busy.events, busy.error) == (
        "poll", 1, 1, 2, None,
    )  # fmt: skip
    assert busy.emr_requests >= 2
    assert busy.finished_at >= busy.started_at
    h = location_hourly.c
    [hour] = [
        row for row in _select(harness, h.location_id, h.hour, h.emr_requests, h.events) if row.location_id == here
    ]
    assert hour.events == 2
    assert hour.emr_requests == sum(row.emr_requests for row in mine)
    assert (hour.hour.minute, hour.hour.second) == (0, 0)
    # Each event knows its patient (no payload scan needed to trace them).
    assert {row.patient_id for row in _select(harness, events.c.patient_id)} == {clinic.patient_id}

    clinic.book(local(day_ahead(), 12))
    harness.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, count=50))
    sync.tick()
    harness.emulator.faults.clear()
    failed = [row for row in _select(harness, r.location_id, r.error) if row.error is not None]
    assert failed
    assert all(row.error.isidentifier() for row in failed)  # a class name, never a message
    clinic.close()


def test_the_overview_shows_the_budget_used_and_the_chart(console: Console, harness: Harness) -> None:
    sync, clinic = Sync(harness), ClinicScreens(harness)
    sync.tick()
    clinic.book(local(day_ahead(), 10))
    sync.tick()
    clinic.close()
    here = harness.sites[0].location_id
    html = console.get("/console").text
    row = html.split(f'data-location-id="{here}"')[1].split('data-testid="location-row"')[0]
    [budget] = tagged(row, "budget")
    assert int(attr(budget, "data-used")) >= 2
    assert 'data-series="events" data-total="2"' in row
    assert "2 events (at most 2 in an hour)" in row


async def test_old_runs_and_hours_are_pruned(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from gateway.storage import activity

    location = await store.create_location(
        emr="cliniko", name="Prune", settings_json=b"{}", credentials_json=b"{}", time_zone="UTC"
    )
    now = datetime.now(UTC)

    def run(age: timedelta, **counts: Any) -> activity.Run:
        return activity.Run(
            location_id=location.id,
            trigger=activity.POLL,
            started_at=now - age,
            finished_at=now - age,
            emr_requests=2,
            **counts,
        )

    for r in (
        run(timedelta(hours=2)),  # quiet, recent: kept
        run(timedelta(days=2)),  # quiet, older than a day: pruned
        run(timedelta(days=2), events=3),  # did something: kept two weeks
        run(timedelta(days=20), error="Unavailable"),  # older than two weeks: pruned
    ):
        await activity.record_run(store, r)
    async with store.write() as conn:
        await activity.prune(conn, now)
    kept = await activity.recent_runs(store, location.id)
    assert sorted((r.events, r.error) for r in kept) == [(0, None), (3, None)]
    hours = await activity.hours(store, [location.id], now - timedelta(days=40))
    assert all(h.hour >= activity.hour_of(now - activity.HOURLY_RETENTION) for h in hours[location.id])
    assert hours[location.id]  # the recent hours stay

"""What change detection and the outbox did, for the operator console: one row per sync run, counts per location
and hour. Written on the hot path as one statement per poll or per publish batch (an upsert), read by the console.

A run holds counts and an error class name, never an error's text (an EMR message can quote a patient).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.storage.store import Store
from gateway.storage.tables import location_hourly, sync_runs

POLL = "poll"  # the worker's scheduled poll (and its daily sweep)
MANUAL = "manual"  # `emr-gateway sync LOCATION`, or the console's "Sync now"
FULL = "full"  # `emr-gateway sync LOCATION --full`

# Quiet runs (nothing changed, no error) are kept a day; runs that changed something or failed, two weeks. Hourly
# counts: 30 days. Pruned now and then by the writer (every PRUNE_EVERY-th run), one indexed DELETE each.
QUIET_RUN_RETENTION = timedelta(days=1)
RUN_RETENTION = timedelta(days=14)
HOURLY_RETENTION = timedelta(days=30)
PRUNE_EVERY = 64


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """One sync of one location, as recorded."""

    location_id: str
    trigger: str
    started_at: datetime
    finished_at: datetime
    emr_requests: int | None
    appointments_changed: int = 0
    patients_changed: int = 0
    events: int = 0
    error: str | None = None  # an exception's class name


class RunRecord(Run, frozen=True, kw_only=True):
    id: int


class Hour(msgspec.Struct, frozen=True, kw_only=True):
    hour: datetime
    emr_requests: int
    events: int


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _insert(conn: AsyncConnection, table: Any) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


async def add_to_hour(
    conn: AsyncConnection, location_id: str, moment: datetime, *, emr_requests: int = 0, events: int = 0
) -> None:
    """One upsert: adds to the location's counts for the hour `moment` falls in."""
    if not emr_requests and not events:
        return
    stmt = _insert(conn, location_hourly).values(
        location_id=location_id, hour=hour_of(moment), emr_requests=emr_requests, events=events
    )
    h = location_hourly.c
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["location_id", "hour"],
            set_={
                "emr_requests": h.emr_requests + stmt.excluded.emr_requests,
                "events": h.events + stmt.excluded.events,
            },
        )
    )


async def count_events(conn: AsyncConnection, counts: Mapping[tuple[str, datetime], int]) -> None:
    """The outbox's part: events published, by (location, hour); one upsert per pair (a batch is one location)."""
    for (location_id, hour), events in sorted(counts.items()):
        await add_to_hour(conn, location_id, hour, events=events)


async def record_run_in(conn: AsyncConnection, run: Run) -> None:
    """Inside the caller's transaction (the scheduler's release of its lease): the run, its requests this hour."""
    result = await conn.execute(insert(sync_runs).values(**msgspec.structs.asdict(run)).returning(sync_runs.c.id))
    run_id = int(result.scalar_one())
    if run.emr_requests:
        await add_to_hour(conn, run.location_id, run.started_at, emr_requests=run.emr_requests)
    if run_id % PRUNE_EVERY == 0:
        await prune(conn, run.finished_at)


async def record_run(store: Store, run: Run) -> None:
    async with store.write() as conn:
        await record_run_in(conn, run)


async def prune(conn: AsyncConnection, now: datetime) -> None:
    r, h = sync_runs.c, location_hourly.c
    quiet = and_(r.appointments_changed == 0, r.patients_changed == 0, r.events == 0, r.error.is_(None))
    await conn.execute(
        delete(sync_runs).where(
            or_(r.started_at < now - RUN_RETENTION, and_(quiet, r.started_at < now - QUIET_RUN_RETENTION))
        )
    )
    await conn.execute(delete(location_hourly).where(h.hour < hour_of(now - HOURLY_RETENTION)))


# -- what the console reads ----------------------------------------------------------------------------------------


def _run(row: Any) -> RunRecord:
    return RunRecord(**{name: getattr(row, name) for name in RunRecord.__struct_fields__})


async def recent_runs(store: Store, location_id: str, *, limit: int = 25) -> list[RunRecord]:
    r = sync_runs.c
    query = select(sync_runs).where(r.location_id == location_id).order_by(r.started_at.desc(), r.id.desc())
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit))).all()
    return [_run(row) for row in rows]


async def errors_since(store: Store, location_id: str, since: datetime) -> dict[str, int]:
    """Failed runs by error class since `since`."""
    r = sync_runs.c
    query = (
        select(r.error, func.count())
        .where(r.location_id == location_id, r.started_at >= since, r.error.is_not(None))
        .group_by(r.error)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {str(row[0]): int(row[1]) for row in rows}


async def requests_since(store: Store, location_ids: Sequence[str], since: datetime) -> dict[str, int]:
    """EMR requests change detection sent per location since `since` (exact: summed over runs, not hours)."""
    if not location_ids:
        return {}
    r = sync_runs.c
    query = (
        select(r.location_id, func.coalesce(func.sum(r.emr_requests), 0))
        .where(r.location_id.in_(list(location_ids)), r.started_at >= since)
        .group_by(r.location_id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {str(row[0]): int(row[1]) for row in rows}


async def hours(store: Store, location_ids: Iterable[str], since: datetime) -> dict[str, list[Hour]]:
    """Hourly counts per location from `since`'s hour on, oldest first (hours with nothing are absent)."""
    ids = list(location_ids)
    found: dict[str, list[Hour]] = {location_id: [] for location_id in ids}
    if not ids:
        return found
    h = location_hourly.c
    query = (
        select(location_hourly).where(h.location_id.in_(ids), h.hour >= hour_of(since)).order_by(h.location_id, h.hour)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    for row in rows:
        found[row.location_id].append(Hour(hour=row.hour, emr_requests=int(row.emr_requests), events=int(row.events)))
    return found

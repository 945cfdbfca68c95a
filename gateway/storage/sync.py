"""Change-detection storage: per-location poll state and leases, appointment states and snapshot digests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.storage.activity import Run, record_run_in
from gateway.storage.store import Store
from gateway.storage.tables import appointment_states, patient_snapshots, sync_state


class SyncState(msgspec.Struct, frozen=True, kw_only=True):
    location_id: str
    cursor: str | None
    tracking_since: datetime
    next_poll_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    last_poll_at: datetime | None
    last_sweep_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    facts_complete_at: datetime | None = None
    poll_interval_seconds: float | None = None
    poll_requests: int | None = None
    account_key: str | None = None


class StoredAppointment(msgspec.Struct, frozen=True, kw_only=True):
    """An appointment's last seen state; the facts after `emr_updated_at` are what a snapshot shows of it (null on
    rows stored before migration 0012: such a row is not a usable fact)."""

    patient_id: str
    status: str
    start: datetime
    practitioner_id: str
    digest: str
    emr_updated_at: datetime | None
    end_at: datetime | None = None
    service_id: str | None = None
    time_zone: str | None = None
    emr_location_id: str | None = None
    cancel_reason: str | None = None


class StoredSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    digest: str
    source_updated_at: datetime | None
    patient_updated_at: datetime | None
    appointments_known: bool = False


class LeaseLost(Exception):
    """Another worker holds this location now: this worker's results must not be committed."""


def _insert(conn: AsyncConnection, table: Any) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _state(row: Any) -> SyncState:
    return SyncState(**{name: getattr(row, name) for name in SyncState.__struct_fields__})


async def ensure_state(conn: AsyncConnection, location_id: str, now: datetime) -> None:
    """The row exists from a location's first poll or first gateway write on; `tracking_since` is that moment."""
    await conn.execute(
        _insert(conn, sync_state)
        .values(location_id=location_id, cursor=None, tracking_since=now, consecutive_failures=0)
        .on_conflict_do_nothing(index_elements=["location_id"])
    )


async def lock_state(conn: AsyncConnection, location_id: str) -> SyncState:
    """Serializes detector commits per location (row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE already does)."""
    row = (
        await conn.execute(select(sync_state).where(sync_state.c.location_id == location_id).with_for_update())
    ).one()
    return _state(row)


async def get_state(store: Store, location_id: str) -> SyncState | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(sync_state).where(sync_state.c.location_id == location_id))).first()
    return _state(row) if row is not None else None


async def ensure_states(store: Store, location_ids: Iterable[str], now: datetime) -> None:
    """Reads first: the write transaction (SQLite's one write lock) is taken only when a location is new."""
    async with store.engine.connect() as conn:
        known = set((await conn.execute(select(sync_state.c.location_id))).scalars())
    missing = [location_id for location_id in location_ids if location_id not in known]
    if not missing:
        return
    async with store.write() as conn:
        for location_id in missing:
            await ensure_state(conn, location_id, now)


async def claim_due(store: Store, worker_id: str, now: datetime, lease_seconds: float, limit: int) -> list[SyncState]:
    """Leases up to `limit` due locations to this worker. Two workers never hold one location at once."""
    c = sync_state.c
    due = and_(
        or_(c.next_poll_at.is_(None), c.next_poll_at <= now),
        or_(c.lease_until.is_(None), c.lease_until < now),
    )
    until = now + timedelta(seconds=lease_seconds)
    claimed: list[SyncState] = []
    async with store.write() as conn:
        query = select(c.location_id).where(due).order_by(c.next_poll_at, c.location_id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        candidates = list((await conn.execute(query)).scalars())
        for location_id in candidates:
            # Guarded: on SQLite the write lock makes this exact; on PostgreSQL the row lock above does.
            done = await conn.execute(
                update(sync_state)
                .where(c.location_id == location_id, due)
                .values(lease_owner=worker_id, lease_until=until)
            )
            if done.rowcount == 1:
                row = (await conn.execute(select(sync_state).where(c.location_id == location_id))).one()
                claimed.append(_state(row))
    return claimed


async def renew(store: Store, location_id: str, worker_id: str, until: datetime) -> bool:
    """Extends this worker's lease while its poll runs; False when the lease is no longer this worker's."""
    async with store.write() as conn:
        done = await conn.execute(
            update(sync_state)
            .where(sync_state.c.location_id == location_id, sync_state.c.lease_owner == worker_id)
            .values(lease_until=until)
        )
    return done.rowcount == 1


async def release(
    store: Store,
    location_id: str,
    worker_id: str,
    *,
    next_poll_at: datetime,
    polled_at: datetime | None = None,
    swept_at: datetime | None = None,
    error: str | None = None,
    interval: float | None = None,
    requests: int | None = None,
    account_key: str | None = None,
    run: Run | None = None,
) -> None:
    """Ends this worker's lease and schedules the next poll; an error counts towards the backoff. `interval` and
    `requests` (what the poll sent) are kept for /v1/health and the next interval's derivation; `run` (what the
    poll did, for the console) is recorded in the same transaction."""
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "next_poll_at": next_poll_at}
    if interval is not None:
        values["poll_interval_seconds"] = interval
    if requests is not None:
        values["poll_requests"] = requests
    if account_key is not None:
        values["account_key"] = account_key
    if polled_at is not None:
        values["last_poll_at"] = polled_at
    if swept_at is not None:
        values["last_sweep_at"] = swept_at
    if error is None:
        values.update(last_error=None, consecutive_failures=0)
    else:
        values.update(last_error=error[:200], consecutive_failures=sync_state.c.consecutive_failures + 1)
    async with store.write() as conn:
        await conn.execute(
            update(sync_state)
            .where(sync_state.c.location_id == location_id, sync_state.c.lease_owner == worker_id)
            .values(**values)
        )
        if run is not None:
            await record_run_in(conn, run)


async def advance_cursor(conn: AsyncConnection, location_id: str, worker_id: str, cursor: str) -> None:
    """The last statement of a poll's transaction: if the lease moved on, everything the poll wrote rolls back."""
    done = await conn.execute(
        update(sync_state)
        .where(sync_state.c.location_id == location_id, sync_state.c.lease_owner == worker_id)
        .values(cursor=cursor)
    )
    if done.rowcount != 1:
        raise LeaseLost(location_id)


async def locations_sharing(store: Store, account_key: str) -> int:
    """How many polled locations may draw on one EMR account's budget: those known to use it, plus those not yet
    polled (their account is unknown until then, so they are assumed to share it: a new fleet starts slow, never
    in a burst)."""
    c = sync_state.c
    async with store.engine.connect() as conn:
        count = (
            await conn.execute(
                select(func.count())
                .select_from(sync_state)
                .where(or_(c.account_key == account_key, c.account_key.is_(None)))
            )
        ).scalar_one()
    return max(1, int(count))


async def set_cursor(store: Store, location_id: str, cursor: str, *, only_if_unset: bool) -> None:
    """A sync outside the worker's lease (`emr-gateway sync`) moves the cursor too; a full listing only gives a
    location its first one. A poll racing it may set an older cursor back: that re-reads, which digests absorb."""
    condition = [sync_state.c.location_id == location_id]
    if only_if_unset:
        condition.append(sync_state.c.cursor.is_(None))
    async with store.write() as conn:
        await conn.execute(update(sync_state).where(*condition).values(cursor=cursor))


async def load_appointments(
    conn: AsyncConnection, location_id: str, appointment_ids: Iterable[str]
) -> dict[str, StoredAppointment]:
    ids = list(set(appointment_ids))
    if not ids:
        return {}
    a = appointment_states.c
    query = select(appointment_states).where(a.location_id == location_id, a.appointment_id.in_(ids))
    rows = await conn.execute(query)
    return {row.appointment_id: _stored(row) for row in rows}


def _stored(row: Any) -> StoredAppointment:
    return StoredAppointment(**{name: getattr(row, name) for name in StoredAppointment.__struct_fields__})


async def load_patient_appointments(
    conn: AsyncConnection, location_id: str, patient_ids: Iterable[str]
) -> dict[str, dict[str, StoredAppointment]]:
    """Every stored appointment of these patients here, by patient and appointment id."""
    ids = list(set(patient_ids))
    found: dict[str, dict[str, StoredAppointment]] = {patient_id: {} for patient_id in ids}
    a = appointment_states.c
    for at in range(0, len(ids), 500):  # bound the IN list
        query = select(appointment_states).where(a.location_id == location_id, a.patient_id.in_(ids[at : at + 500]))
        for row in await conn.execute(query):
            found[row.patient_id][row.appointment_id] = _stored(row)
    return found


async def forget_patients(conn: AsyncConnection, location_id: str, patient_ids: Iterable[str]) -> None:
    """A patient the EMR no longer has: their stored appointment facts and snapshot digest go too."""
    ids = list(set(patient_ids))
    for at in range(0, len(ids), 500):
        part = ids[at : at + 500]
        a, s = appointment_states.c, patient_snapshots.c
        await conn.execute(delete(appointment_states).where(a.location_id == location_id, a.patient_id.in_(part)))
        await conn.execute(delete(patient_snapshots).where(s.location_id == location_id, s.patient_id.in_(part)))


async def mark_facts_complete(conn: AsyncConnection, location_id: str, now: datetime) -> None:
    """A full listing stored every appointment here: from now on every patient's snapshot comes from stored facts."""
    await conn.execute(update(sync_state).where(sync_state.c.location_id == location_id).values(facts_complete_at=now))


async def load_snapshots(
    conn: AsyncConnection, location_id: str, patient_ids: Iterable[str]
) -> dict[str, StoredSnapshot]:
    ids = list(set(patient_ids))
    if not ids:
        return {}
    s = patient_snapshots.c
    rows = await conn.execute(select(patient_snapshots).where(s.location_id == location_id, s.patient_id.in_(ids)))
    return {
        row.patient_id: StoredSnapshot(
            digest=row.digest,
            source_updated_at=row.source_updated_at,
            patient_updated_at=row.patient_updated_at,
            appointments_known=row.appointments_known,
        )
        for row in rows
    }


async def save_appointments(
    conn: AsyncConnection, location_id: str, states: list[tuple[str, StoredAppointment]], now: datetime
) -> None:
    """Upserts in one statement per 500 rows (a full sync stores thousands: one round trip each held the write
    lock for seconds)."""
    if not states:
        return
    fields = [*StoredAppointment.__struct_fields__, "updated_at"]
    for at in range(0, len(states), 500):
        rows = [
            {
                "location_id": location_id,
                "appointment_id": appointment_id,
                **msgspec.structs.asdict(state),
                "updated_at": now,
            }
            for appointment_id, state in states[at : at + 500]
        ]
        stmt = _insert(conn, appointment_states).values(rows)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["location_id", "appointment_id"], set_={f: stmt.excluded[f] for f in fields}
            )
        )


async def save_snapshots(
    conn: AsyncConnection, location_id: str, snapshots: list[tuple[str, StoredSnapshot]], now: datetime
) -> None:
    if not snapshots:
        return
    fields = [*StoredSnapshot.__struct_fields__, "updated_at"]
    for at in range(0, len(snapshots), 500):
        rows = [
            {"location_id": location_id, "patient_id": patient_id, **msgspec.structs.asdict(snap), "updated_at": now}
            for patient_id, snap in snapshots[at : at + 500]
        ]
        stmt = _insert(conn, patient_snapshots).values(rows)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["location_id", "patient_id"], set_={f: stmt.excluded[f] for f in fields}
            )
        )

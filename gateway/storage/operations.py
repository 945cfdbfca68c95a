"""Operations (bookings recorded before they are sent to the EMR): rows in, rows out, and claims for the reconciler.

States: `pending` (a live request owns it until `lease_until`), `unknown` (the EMR's answer was lost; the reconciler
checks at `next_check_at` until `settle_by`), and the settled ones: `done`, `failed`, `adopted` (found later and
kept), `undone` (found later and cancelled: the caller had booked again), `absent` (never appeared).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import String, and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.storage.store import Store
from gateway.storage.tables import operations

PENDING, UNKNOWN = "pending", "unknown"
DONE, FAILED, ADOPTED, UNDONE, ABSENT = "done", "failed", "adopted", "undone", "absent"
OPEN = (PENDING, UNKNOWN)


class OperationRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    location_id: str
    kind: str
    state: str
    request_key: str
    command: bytes
    link_source: str | None
    link_external_id: str | None
    owner: str | None
    lease_until: datetime | None
    next_check_at: datetime | None
    checks: int
    settle_by: datetime
    superseded_by: str | None
    appointment_id: str | None
    created_at: datetime


def _record(row: Any) -> OperationRecord:
    return OperationRecord(
        id=row.id,
        location_id=row.location_id,
        kind=row.kind,
        state=row.state,
        request_key=row.request_key,
        command=bytes(row.command),
        link_source=row.link_source,
        link_external_id=row.link_external_id,
        owner=row.owner,
        lease_until=row.lease_until,
        next_check_at=row.next_check_at,
        checks=row.checks,
        settle_by=row.settle_by,
        superseded_by=row.superseded_by,
        appointment_id=row.appointment_id,
        created_at=row.created_at,
    )


class AlreadyPending(Exception):
    """Another live request is making the same booking right now."""


class Fresh(msgspec.Struct, frozen=True, kw_only=True):
    """A new operation to take (see `begin`)."""

    operation_id: str
    location_id: str
    request_key: str
    link: tuple[str, str] | None
    owner: str
    lease_until: datetime
    settle_by: datetime
    now: datetime
    command: bytes = b""


# Built once, run with parameters: constructing a statement per request costs more than running it.
_INSERT = operations.insert()
_PRIORS = (
    select(operations)
    .where(
        operations.c.location_id == bindparam("location_id"),
        operations.c.request_key == bindparam("request_key"),
        operations.c.created_at >= bindparam("since"),
    )
    .order_by(operations.c.created_at.desc())
)


def _insert(conn: Connection, fresh: Fresh) -> None:
    conn.execute(
        _INSERT,
        {
            "id": fresh.operation_id,
            "location_id": fresh.location_id,
            "kind": "book",
            "state": PENDING,
            "request_key": fresh.request_key,
            "command": fresh.command,
            "link_source": fresh.link[0] if fresh.link else None,
            "link_external_id": fresh.link[1] if fresh.link else None,
            "owner": fresh.owner,
            "lease_until": fresh.lease_until,
            "next_check_at": None,
            "checks": 0,
            "settle_by": fresh.settle_by,
            "superseded_by": None,
            "appointment_id": None,
            "created_at": fresh.now,
            "updated_at": fresh.now,
        },
    )


def _priors(conn: Connection, location_id: str, request_key: str, since: datetime) -> list[OperationRecord]:
    rows = conn.execute(_PRIORS, {"location_id": location_id, "request_key": request_key, "since": since}).all()
    return [_record(row) for row in rows]


async def begin_unless_seen(store: Store, fresh: Fresh, since: datetime) -> list[OperationRecord]:
    """One transaction for the common case: no earlier operation for this booking since `since`, so the new one is
    taken (returns []); otherwise nothing is taken and the earlier ones come back for the caller to settle."""

    def work(conn: Connection) -> list[OperationRecord]:
        priors = _priors(conn, fresh.location_id, fresh.request_key, since)
        if not priors:
            _insert(conn, fresh)
        return priors

    try:
        return await store.run_write(work)
    except IntegrityError:
        raise AlreadyPending(fresh.request_key) from None


async def begin(store: Store, fresh: Fresh) -> None:
    """Taken before anything is written; without the command when the patient is still to be resolved (it follows
    with `set_command`)."""
    try:
        await store.run_write(lambda conn: _insert(conn, fresh))
    except IntegrityError:
        raise AlreadyPending(fresh.request_key) from None


async def set_command(store: Store, operation_id: str, command: bytes) -> None:
    await store.run_write(
        lambda conn: conn.execute(update(operations).where(operations.c.id == operation_id).values(command=command))
    )


async def for_request(store: Store, location_id: str, request_key: str, since: datetime) -> list[OperationRecord]:
    """The operations for the same booking (same location, patient, practitioner, service and start), newest first."""
    c = operations.c
    query = (
        select(operations)
        .where(c.location_id == location_id, c.request_key == request_key, c.created_at >= since)
        .order_by(c.created_at.desc())
    )
    async with store.engine.connect() as conn:
        return [_record(row) for row in (await conn.execute(query)).all()]


_SETTLE = (
    update(operations)
    .where(operations.c.id == bindparam("op_id"), operations.c.state.in_(bindparam("expect", expanding=True)))
    .values(
        state=bindparam("new_state"),
        updated_at=bindparam("now"),
        lease_until=None,
        next_check_at=None,
        appointment_id=func.coalesce(bindparam("found", type_=String), operations.c.appointment_id),
    )
)


def settle_in(
    conn: Connection,
    operation_id: str,
    state: str,
    now: datetime,
    *,
    appointment_id: str | None = None,
    expect: tuple[str, ...] = OPEN,
) -> bool:
    params = {"op_id": operation_id, "expect": list(expect), "new_state": state, "now": now, "found": appointment_id}
    return conn.execute(_SETTLE, params).rowcount == 1


async def settle(
    store: Store,
    operation_id: str,
    state: str,
    now: datetime,
    *,
    appointment_id: str | None = None,
    expect: tuple[str, ...] = OPEN,
) -> bool:
    """Moves an open operation to `state`; False when someone else settled it first (the caller then backs off)."""
    return await store.run_write(
        lambda conn: settle_in(conn, operation_id, state, now, appointment_id=appointment_id, expect=expect)
    )


async def mark_unknown(store: Store, operation_id: str, now: datetime, first_check: datetime) -> None:
    async with store.write() as conn:
        await conn.execute(
            update(operations)
            .where(operations.c.id == operation_id, operations.c.state.in_(OPEN))
            .values(state=UNKNOWN, owner=None, lease_until=None, next_check_at=first_check, updated_at=now)
        )


async def supersede(store: Store, operation_id: str, by: str, now: datetime) -> None:
    """A newer operation books the same thing: if this one's booking appears late, it is undone, not adopted."""
    async with store.write() as conn:
        await conn.execute(
            update(operations)
            .where(operations.c.id == operation_id, operations.c.state.in_(OPEN))
            .values(state=UNKNOWN, superseded_by=by, owner=None, lease_until=None, updated_at=now)
        )


async def claim_due(
    store: Store, worker_id: str, now: datetime, lease_seconds: float, limit: int
) -> list[OperationRecord]:
    """Open operations nobody is working on: unknown ones whose next check is due, pending ones whose owner's lease
    lapsed (the process died mid-booking). Leased to this worker so two reconcilers never check one at once."""
    c = operations.c
    due = or_(
        and_(c.state == UNKNOWN, c.next_check_at <= now, or_(c.lease_until.is_(None), c.lease_until < now)),
        and_(c.state == PENDING, c.lease_until < now),
    )
    claimed: list[OperationRecord] = []
    async with store.write() as conn:
        query = select(c.id).where(due).order_by(c.created_at).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for operation_id in list((await conn.execute(query)).scalars()):
            done = await conn.execute(
                update(operations)
                .where(c.id == operation_id, due)
                .values(state=UNKNOWN, owner=worker_id, lease_until=now + timedelta(seconds=lease_seconds))
            )
            if done.rowcount == 1:
                row = (await conn.execute(select(operations).where(c.id == operation_id))).one()
                claimed.append(_record(row))
    return claimed


async def check_later(store: Store, operation_id: str, worker_id: str, now: datetime, at: datetime) -> None:
    async with store.write() as conn:
        await conn.execute(
            update(operations)
            .where(operations.c.id == operation_id, operations.c.owner == worker_id, operations.c.state == UNKNOWN)
            .values(owner=None, lease_until=None, next_check_at=at, checks=operations.c.checks + 1, updated_at=now)
        )


async def get(store: Store, operation_id: str) -> OperationRecord | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(operations).where(operations.c.id == operation_id))).first()
    return _record(row) if row is not None else None


async def open_with_link(store: Store, location_id: str, source: str, external_id: str) -> list[OperationRecord]:
    c = operations.c
    query = select(operations).where(
        c.location_id == location_id, c.link_source == source, c.link_external_id == external_id, c.state.in_(OPEN)
    )
    async with store.engine.connect() as conn:
        return [_record(row) for row in (await conn.execute(query)).all()]

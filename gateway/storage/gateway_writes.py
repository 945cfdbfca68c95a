"""Gateway writes awaiting their snapshot: enqueued inside the write's own transaction, claimed by workers."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from gateway.storage.ids import new_id
from gateway.storage.store import Store
from gateway.storage.tables import gateway_writes


class GatewayWrite(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    location_id: str
    kind: str
    appointment: bytes
    created_at: datetime


_INSERT = gateway_writes.insert()


def enqueue(conn: Connection, location_id: str, kind: str, appointment: bytes, now: datetime) -> None:
    row = {"id": new_id("gw"), "location_id": location_id, "kind": kind, "appointment": appointment, "created_at": now}
    conn.execute(_INSERT, {**row, "locked_until": None, "locked_by": None})


async def claim(store: Store, worker_id: str, now: datetime, lease_seconds: float, limit: int) -> list[GatewayWrite]:
    c = gateway_writes.c
    free = or_(c.locked_until.is_(None), c.locked_until < now)
    claimed: list[GatewayWrite] = []
    async with store.write() as conn:
        query = select(c.id).where(free).order_by(c.created_at, c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list((await conn.execute(query)).scalars())
        if not ids:
            return []
        await conn.execute(
            update(gateway_writes)
            .where(c.id.in_(ids), free)
            .values(locked_by=worker_id, locked_until=now + timedelta(seconds=lease_seconds))
        )
        rows = (await conn.execute(select(gateway_writes).where(c.id.in_(ids), c.locked_by == worker_id))).all()
    for row in rows:
        claimed.append(
            GatewayWrite(
                id=row.id,
                location_id=row.location_id,
                kind=row.kind,
                appointment=bytes(row.appointment),
                created_at=row.created_at,
            )
        )
    return sorted(claimed, key=lambda w: (w.created_at, w.id))


async def done(store: Store, write_id: str) -> None:
    async with store.write() as conn:
        await conn.execute(delete(gateway_writes).where(gateway_writes.c.id == write_id))


async def release(store: Store, write_id: str, worker_id: str, retry_at: datetime) -> None:
    async with store.write() as conn:
        await conn.execute(
            update(gateway_writes)
            .where(gateway_writes.c.id == write_id, gateway_writes.c.locked_by == worker_id)
            .values(locked_until=retry_at)
        )

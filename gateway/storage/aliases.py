"""Appointment aliases: an EMR that re-issues an appointment under a new id on reschedule (Nookal's cancel + book)
must not strand callers holding the old id, nor GHL links pointing at it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from gateway.storage.store import Store
from gateway.storage.tables import appointment_aliases, appointment_links


async def resolve(store: Store, location_id: str, appointment_id: str) -> str:
    """The current id for `appointment_id` (itself when it was never replaced). Aliases are kept flat, so one hop."""
    c = appointment_aliases.c
    async with store.engine.connect() as conn:
        current = await conn.scalar(select(c.new_id).where(c.location_id == location_id, c.old_id == appointment_id))
    return str(current) if current is not None else appointment_id


async def record(store: Store, location_id: str, old_id: str, new_id: str) -> None:
    """In one transaction: old -> new, every alias that pointed at old now points at new, and links follow."""
    if old_id == new_id:
        return
    c = appointment_aliases.c
    now = datetime.now(UTC)
    async with store.write() as conn:
        await conn.execute(
            update(appointment_aliases).where(c.location_id == location_id, c.new_id == old_id).values(new_id=new_id)
        )
        # The dialect's INSERT (SQLite or PostgreSQL) lives on Store: both spell ON CONFLICT the same way.
        stmt = store._insert(appointment_aliases).values(
            location_id=location_id, old_id=old_id, new_id=new_id, created_at=now
        )
        upsert = stmt.on_conflict_do_update(index_elements=[c.location_id, c.old_id], set_={"new_id": new_id})
        await conn.execute(upsert)
        link = appointment_links.c
        await conn.execute(
            update(appointment_links)
            .where(link.location_id == location_id, link.emr_appointment_id == old_id)
            .values(emr_appointment_id=new_id, updated_at=now)
        )

"""Where a location's EMR stopped matching the adapter's idea of its answers (field path + problem, no values)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import select

from gateway.storage.store import Store
from gateway.storage.tables import emr_contract_changes


class ContractChangeRecord(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    problem: str
    first_seen: datetime
    last_seen: datetime
    count: int


async def record(store: Store, location_id: str, path: str, problem: str, now: datetime) -> None:
    c = emr_contract_changes.c
    stmt = store._insert(emr_contract_changes).values(
        location_id=location_id, path=path[:300], problem=problem[:200], first_seen=now, last_seen=now, count=1
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[c.location_id, c.path],
        set_={"problem": problem[:200], "last_seen": now, "count": c.count + 1},
    )
    async with store.write() as conn:
        await conn.execute(upsert)


async def recent(store: Store, location_id: str, since: datetime) -> list[ContractChangeRecord]:
    """Newest first."""
    c = emr_contract_changes.c
    query = (
        select(c.path, c.problem, c.first_seen, c.last_seen, c.count)
        .where(c.location_id == location_id, c.last_seen >= since)
        .order_by(c.last_seen.desc())
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        ContractChangeRecord(
            path=r.path, problem=r.problem, first_seen=r.first_seen, last_seen=r.last_seen, count=int(r[4])
        )
        for r in rows
    ]

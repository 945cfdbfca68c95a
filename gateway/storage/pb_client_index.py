"""The storage-backed Practice Better client index (adapters/practicebetter/index.py defines the protocol): shared
by every replica and kept across restarts, so a lookup pages only the records modified since the last one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select

from adapters.practicebetter.index import IndexEntry, IndexKey, UsesClientIndex
from gateway.storage.store import Store
from gateway.storage.tables import pb_client_index, pb_client_index_state


class StoredClientIndex:
    def __init__(self, store: Store, location_id: str) -> None:
        self.store = store
        self.location_id = location_id

    async def lookup(self, key: IndexKey) -> list[str]:
        c = pb_client_index.c
        query = select(c.record_id).where(c.location_id == self.location_id)
        if key.email_sha256 is not None:
            query = query.where(c.email_sha256 == key.email_sha256)
        if key.name_sha256 is not None:
            query = query.where(c.name_sha256 == key.name_sha256)
        if key.phone_sha256 is not None:
            query = query.where(c.phone_sha256 == key.phone_sha256)
        async with self.store.engine.connect() as conn:
            rows = await conn.scalars(query.order_by(c.record_id))
            return [str(r) for r in rows]

    async def upsert(self, entries: Sequence[IndexEntry]) -> None:
        if not entries:
            return
        c = pb_client_index.c
        latest = {e.record_id: e for e in entries}  # one row per record in one statement
        rows = [
            {
                "location_id": self.location_id,
                "record_id": e.record_id,
                "email_sha256": e.email_sha256,
                "name_sha256": e.name_sha256,
                "phone_sha256": e.phone_sha256,
                "modified_at": e.modified_at,
            }
            for e in latest.values()
        ]
        async with self.store.write() as conn:
            stmt = self.store._insert(pb_client_index).values(rows)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[c.location_id, c.record_id],
                    set_={
                        "email_sha256": stmt.excluded.email_sha256,
                        "name_sha256": stmt.excluded.name_sha256,
                        "phone_sha256": stmt.excluded.phone_sha256,
                        "modified_at": stmt.excluded.modified_at,
                    },
                )
            )

    async def remove(self, record_id: str) -> None:
        c = pb_client_index.c
        async with self.store.write() as conn:
            await conn.execute(
                delete(pb_client_index).where(c.location_id == self.location_id, c.record_id == record_id)
            )

    async def watermark(self) -> datetime | None:
        c = pb_client_index_state.c
        async with self.store.engine.connect() as conn:
            value = await conn.scalar(select(c.watermark).where(c.location_id == self.location_id))
        return value if isinstance(value, datetime) else None

    async def advance(self, watermark: datetime) -> None:
        """Only forward: two lookups finishing out of order never move it back."""
        c = pb_client_index_state.c
        async with self.store.write() as conn:
            current = await conn.scalar(select(c.watermark).where(c.location_id == self.location_id).with_for_update())
            if current is None:
                await conn.execute(
                    self.store._insert(pb_client_index_state)
                    .values(location_id=self.location_id, watermark=watermark)
                    .on_conflict_do_nothing(index_elements=[c.location_id])
                )
            elif watermark > current:
                await conn.execute(
                    pb_client_index_state.update().where(c.location_id == self.location_id).values(watermark=watermark)
                )


def attach(adapter: object, store: Store, location_id: str) -> None:
    """Hands an adapter that keeps a client index the storage-backed one (others are left alone)."""
    if isinstance(adapter, UsesClientIndex):
        adapter.client_index = StoredClientIndex(store, location_id)

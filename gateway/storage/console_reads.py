"""Read-only queries the operator console needs beyond the feature stores: delivery counts per endpoint, a patient's
events (by the indexed `events.patient_id`) and where each was delivered. Ids, types, states and codes; never a
payload."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

import msgspec
from sqlalchemy import func, select

from gateway.storage.store import Store
from gateway.storage.tables import deliveries, events, webhook_endpoints


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    created_at: datetime


class EventDelivery(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    delivery_id: str
    endpoint_id: str
    url: str
    state: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None

    @property
    def origin(self) -> str:
        """The endpoint's scheme and host only: its path or query may carry a receiver's token, and the trace page
        shows deliveries beside a patient's data (the endpoint page, one click away, shows the whole URL)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


async def delivery_counts(store: Store, location_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per endpoint of these locations: deliveries by state (endpoints with none are absent)."""
    if not location_ids:
        return {}
    d, e = deliveries.c, webhook_endpoints.c
    query = (
        select(d.endpoint_id, d.state, func.count())
        .join(webhook_endpoints, e.id == d.endpoint_id)
        .where(e.location_id.in_(list(location_ids)))
        .group_by(d.endpoint_id, d.state)
    )
    found: dict[str, dict[str, int]] = {}
    async with store.engine.connect() as conn:
        for endpoint_id, state, count in (await conn.execute(query)).all():
            found.setdefault(str(endpoint_id), {})[str(state)] = int(count)
    return found


async def patient_events(store: Store, location_id: str, patient_id: str, *, limit: int = 200) -> list[EventRow]:
    """The events the gateway published about one patient here, newest first."""
    ev = events.c
    query = (
        select(ev.id, ev.type, ev.created_at)
        .where(ev.location_id == location_id, ev.patient_id == patient_id)
        .order_by(ev.created_at.desc(), ev.id.desc())
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [EventRow(id=row.id, type=row.type, created_at=row.created_at) for row in rows]


async def event_deliveries(store: Store, event_ids: Sequence[str]) -> dict[str, list[EventDelivery]]:
    """Each event's webhook deliveries, with the endpoint's URL."""
    found: dict[str, list[EventDelivery]] = {event_id: [] for event_id in event_ids}
    if not event_ids:
        return found
    d, e = deliveries.c, webhook_endpoints.c
    ids = list(event_ids)
    async with store.engine.connect() as conn:
        for at in range(0, len(ids), 500):
            query = (
                select(
                    d.event_id,
                    d.id,
                    d.endpoint_id,
                    e.url,
                    d.state,
                    d.attempts,
                    d.last_status_code,
                    d.last_error,
                    d.last_attempt_at,
                )
                .join(webhook_endpoints, e.id == d.endpoint_id)
                .where(d.event_id.in_(ids[at : at + 500]))
                .order_by(d.event_id, e.created_at, d.id)
            )
            for row in (await conn.execute(query)).all():
                found[row.event_id].append(
                    EventDelivery(
                        event_id=row.event_id,
                        delivery_id=row.id,
                        endpoint_id=row.endpoint_id,
                        url=row.url,
                        state=row.state,
                        attempts=int(row.attempts),
                        last_status_code=row.last_status_code,
                        last_error=row.last_error,
                        last_attempt_at=row.last_attempt_at,
                    )
                )
    return found

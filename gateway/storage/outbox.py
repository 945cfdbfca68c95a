"""The transactional outbox: an event and its deliveries are written in the same transaction as the change itself
(storage only; `gateway.webhooks.outbox.publish_now` also wakes the in-process worker)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.storage.activity import count_events, hour_of
from gateway.storage.ghl_destination import enqueue_event, event_subject
from gateway.storage.ids import new_id
from gateway.storage.tables import deliveries, events, webhook_endpoints
from schemas.webhooks import (
    AppointmentEventData,
    EndpointDisabledData,
    EventData,
    EventType,
    PatientSnapshot,
    WebhookEvent,
)

PENDING = "pending"
_TYPES = msgspec.json.Decoder(list[EventType])


class _Envelope(msgspec.Struct):
    id: str
    type: EventType
    timestamp: datetime
    location_id: str
    emr: str
    data: msgspec.Raw


def _data_type(event_type: EventType) -> type[EventData]:
    if event_type is EventType.PATIENT_UPDATED:
        return PatientSnapshot
    if event_type is EventType.ENDPOINT_DISABLED:
        return EndpointDisabledData
    return AppointmentEventData


def decode_event(payload: bytes) -> WebhookEvent:
    """`data` is an untagged union of Structs, which msgspec cannot decode directly: the event type picks it."""
    env = msgspec.json.decode(payload, type=_Envelope)
    data = msgspec.json.decode(env.data, type=_data_type(env.type))
    return WebhookEvent(
        id=env.id, type=env.type, timestamp=env.timestamp, location_id=env.location_id, emr=env.emr, data=data
    )


def new_event_id() -> str:
    """`evt_…`: sortable, never contains a full stop (it is part of the signed content)."""
    return new_id("evt")


def subscribed(event_types_json: str, event_type: EventType) -> bool:
    return event_type in _TYPES.decode(event_types_json)


async def publish(conn: AsyncConnection, event: WebhookEvent) -> int:
    """Inserts the event and one due delivery per enabled endpoint of its location subscribed to its type.

    Runs in the caller's transaction, so the event exists exactly when the caller's change commits. A location
    connected to GoHighLevel also gets a push queued (the other kind of destination, `gateway.ghl.destination`).
    Returns how many webhook deliveries were queued.
    """
    return await publish_many(conn, [event])


async def publish_many(conn: AsyncConnection, batch: Sequence[WebhookEvent]) -> int:
    """`publish` for each event, in order; the location's hourly event count (the console's chart) is one upsert
    for the whole batch, and each location's endpoints are read once."""
    if not batch:
        return 0
    e = webhook_endpoints.c
    endpoints: dict[str, list[Any]] = {}
    counts: dict[tuple[str, datetime], int] = {}
    queued = 0
    for event in batch:
        now = datetime.now(UTC)  # per event, as one `publish` each: created_at orders a location's events
        subject = await event_subject(conn, event)
        await conn.execute(
            insert(events).values(
                id=event.id,
                location_id=event.location_id,
                type=event.type.value,
                payload=msgspec.json.encode(event),
                created_at=now,
                patient_id=subject[0],
            )
        )
        rows = endpoints.get(event.location_id)
        if rows is None:
            query = select(e.id, e.event_types).where(e.location_id == event.location_id, e.enabled.is_(True))
            rows = endpoints[event.location_id] = list((await conn.execute(query.order_by(e.id))).all())
        targets = [row.id for row in rows if subscribed(row.event_types, event.type)]
        await enqueue_event(conn, event, now, subject)
        if targets:
            await conn.execute(
                insert(deliveries),
                [
                    {
                        "id": new_id("dlv"),
                        "endpoint_id": endpoint_id,
                        "event_id": event.id,
                        "state": PENDING,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "locked_until": None,
                        "locked_by": None,
                        "last_attempt_at": None,
                        "last_status_code": None,
                        "last_error": None,
                        "last_response_body": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for endpoint_id in targets
                ],
            )
        queued += len(targets)
        key = (event.location_id, hour_of(now))
        counts[key] = counts.get(key, 0) + 1
    await count_events(conn, counts)
    return queued

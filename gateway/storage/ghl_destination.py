"""GoHighLevel destination storage: connections (token sealed like EMR credentials), the link tables, and the push
queue the outbox feeds (one row per event per connected location; it doubles as the operator's sync log).

Order per patient: a row is claimed only when no older unfinished row of the same patient exists and none of theirs
is being pushed, so two workers never write one patient's contact at once (which could create two contacts).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.storage.ids import new_id
from gateway.storage.store import Store, sealed_aad
from gateway.storage.tables import (
    appointment_states,
    events,
    ghl_connections,
    ghl_contact_links,
    ghl_event_links,
    ghl_pushes,
)
from schemas.webhooks import AppointmentEventData, EventType, PatientSnapshot, WebhookEvent

PENDING = "pending"
PUSHING = "pushing"
PUSHED = "pushed"
SKIPPED = "skipped"
FAILED = "failed"  # will be tried again
DEAD = "dead"
STATES = (PENDING, PUSHING, PUSHED, SKIPPED, FAILED, DEAD)
UNFINISHED = (PENDING, PUSHING, FAILED)
REFRESH = "refresh"  # a push of the current state with no event behind it (lapse sweep, `ghl sync`)

_PUSHED_TYPES = frozenset(
    {
        EventType.PATIENT_UPDATED,
        EventType.APPOINTMENT_BOOKED,
        EventType.APPOINTMENT_RESCHEDULED,
        EventType.APPOINTMENT_CANCELLED,
        EventType.APPOINTMENT_NO_SHOW,
    }
)
_TAGS = msgspec.json.Decoder(list[str])
_FIELDS = msgspec.json.Decoder(dict[str, str])


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LinkConflict(Exception):
    """The GHL contact is already linked to another patient of this location."""


class ConnectionRecord(msgspec.Struct, frozen=True, kw_only=True):
    location_id: str
    ghl_location_id: str
    base_url: str
    settings_json: bytes
    field_ids: dict[str, str]
    enabled: bool
    status: str
    status_detail: str | None
    paused_until: datetime | None
    daily_remaining: int | None
    backfill_after: str | None
    connected_at: datetime
    updated_at: datetime


class ContactLink(msgspec.Struct, frozen=True, kw_only=True):
    patient_id: str
    contact_id: str
    digest: str | None
    tags: list[str]
    lapses_at: datetime | None


class EventLink(msgspec.Struct, frozen=True, kw_only=True):
    appointment_id: str
    ghl_event_id: str
    kind: str
    digest: str | None


class PushClaim(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    location_id: str
    patient_id: str
    event_type: str
    appointment_id: str | None
    attempts: int
    payload: bytes | None  # the event's normalized payload; None for a refresh
    created_at: datetime


class PushOutcome(msgspec.Struct, frozen=True, kw_only=True):
    state: str
    calls: int = 0
    ghl_status: int | None = None
    error_code: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    count_attempt: bool = True  # a 429 or the gateway's own pacing pauses without spending an attempt


class PushRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    patient_id: str
    event_id: str | None
    event_type: str
    appointment_id: str | None
    state: str
    attempts: int
    next_attempt_at: datetime | None
    calls: int
    ghl_status: int | None
    error_code: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


def _aad(location_id: str) -> bytes:
    return sealed_aad(ghl_connections, location_id)


def _connection(row: Any) -> ConnectionRecord:
    return ConnectionRecord(
        location_id=row.location_id,
        ghl_location_id=row.ghl_location_id,
        base_url=row.base_url,
        settings_json=bytes(row.settings_json),
        field_ids=_FIELDS.decode(bytes(row.field_ids_json)),
        enabled=bool(row.enabled),
        status=row.status,
        status_detail=row.status_detail,
        paused_until=row.paused_until,
        daily_remaining=row.daily_remaining,
        backfill_after=row.backfill_after,
        connected_at=row.connected_at,
        updated_at=row.updated_at,
    )


# -- connections ----------------------------------------------------------------------------------------------------


async def save_connection(
    store: Store,
    *,
    location_id: str,
    ghl_location_id: str,
    base_url: str,
    token: str,
    settings_json: bytes,
    field_ids: dict[str, str],
) -> ConnectionRecord:
    """Connects (or re-connects: a new token or settings) a location; links and the queue are kept."""
    now = _utcnow()
    key_id, blob = store.keyring.encrypt(token.encode(), _aad(location_id))
    values = {
        "ghl_location_id": ghl_location_id,
        "base_url": base_url,
        "key_id": key_id,
        "ciphertext": blob,
        "settings_json": settings_json,
        "field_ids_json": msgspec.json.encode(field_ids),
        "enabled": True,
        "status": "ok",
        "status_detail": None,
        "paused_until": None,
        "updated_at": now,
    }
    async with store.write() as conn:
        c = ghl_connections.c
        found = (await conn.execute(select(c.location_id).where(c.location_id == location_id))).first()
        if found is None:
            await conn.execute(
                insert(ghl_connections).values(
                    location_id=location_id, connected_at=now, daily_remaining=None, backfill_after=None, **values
                )
            )
        else:
            await conn.execute(update(ghl_connections).where(c.location_id == location_id).values(**values))
    record = await get_connection(store, location_id)
    assert record is not None
    return record


async def get_connection(store: Store, location_id: str) -> ConnectionRecord | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(ghl_connections).where(ghl_connections.c.location_id == location_id))).first()
    return _connection(row) if row is not None else None


async def list_connections(store: Store) -> list[ConnectionRecord]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(ghl_connections).order_by(ghl_connections.c.location_id))).all()
    return [_connection(row) for row in rows]


async def get_token(store: Store, location_id: str) -> str:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                select(ghl_connections.c.key_id, ghl_connections.c.ciphertext).where(
                    ghl_connections.c.location_id == location_id
                )
            )
        ).first()
    if row is None:
        raise LookupError(location_id)
    return store.keyring.decrypt(row.key_id, bytes(row.ciphertext), _aad(location_id)).decode()


async def _set(store: Store, location_id: str, **values: Any) -> bool:
    async with store.write() as conn:
        result = await conn.execute(
            update(ghl_connections)
            .where(ghl_connections.c.location_id == location_id)
            .values(updated_at=_utcnow(), **values)
        )
    return bool(result.rowcount)


async def set_status(store: Store, location_id: str, status: str, detail: str | None) -> None:
    await _set(store, location_id, status=status, status_detail=detail)


async def set_enabled(store: Store, location_id: str, enabled: bool) -> bool:
    return await _set(store, location_id, enabled=enabled)


async def set_settings(store: Store, location_id: str, settings_json: bytes) -> None:
    await _set(store, location_id, settings_json=settings_json)


async def set_field_ids(store: Store, location_id: str, field_ids: dict[str, str]) -> None:
    await _set(store, location_id, field_ids_json=msgspec.json.encode(field_ids))


async def pause(store: Store, location_id: str, until: datetime) -> None:
    """GHL said 429: no push for this location is claimed before `until` (the queue waits, nothing is dropped)."""
    await _set(store, location_id, paused_until=until)


async def note_budget(store: Store, location_id: str, daily_remaining: int | None) -> None:
    if daily_remaining is not None:
        await _set(store, location_id, daily_remaining=daily_remaining)


async def set_backfill_after(store: Store, location_id: str, patient_id: str | None) -> None:
    await _set(store, location_id, backfill_after=patient_id)


async def take_create_lock(store: Store, location_id: str, holder: str, seconds: float) -> bool:
    """The location's contact-creation lease: True when `holder` has it now."""
    c = ghl_connections.c
    now = _utcnow()
    async with store.write() as conn:
        result = await conn.execute(
            update(ghl_connections)
            .where(
                c.location_id == location_id,
                or_(c.create_lock_until.is_(None), c.create_lock_until < now, c.create_lock_by == holder),
            )
            .values(create_lock_by=holder, create_lock_until=now + timedelta(seconds=seconds))
        )
    return bool(result.rowcount)


async def release_create_lock(store: Store, location_id: str, holder: str) -> None:
    c = ghl_connections.c
    async with store.write() as conn:
        await conn.execute(
            update(ghl_connections)
            .where(c.location_id == location_id, c.create_lock_by == holder)
            .values(create_lock_by=None, create_lock_until=None)
        )


# -- links ----------------------------------------------------------------------------------------------------------


async def contact_link(store: Store, location_id: str, patient_id: str) -> ContactLink | None:
    k = ghl_contact_links.c
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                select(ghl_contact_links).where(k.location_id == location_id, k.patient_id == patient_id)
            )
        ).first()
    if row is None:
        return None
    return ContactLink(
        patient_id=row.patient_id,
        contact_id=row.contact_id,
        digest=row.digest,
        tags=_TAGS.decode(bytes(row.tags_json)),
        lapses_at=row.lapses_at,
    )


async def contact_owner(store: Store, location_id: str, contact_id: str) -> str | None:
    """The patient a GHL contact is linked to here, if any."""
    k = ghl_contact_links.c
    async with store.engine.connect() as conn:
        return (
            await conn.execute(select(k.patient_id).where(k.location_id == location_id, k.contact_id == contact_id))
        ).scalar()


async def save_contact_link(
    store: Store,
    location_id: str,
    patient_id: str,
    contact_id: str,
    *,
    digest: str | None,
    tags: Sequence[str],
    lapses_at: datetime | None,
) -> None:
    """Raises `LinkConflict` when the contact already belongs to another patient: never one contact for two."""
    k = ghl_contact_links.c
    values = {
        "contact_id": contact_id,
        "digest": digest,
        "tags_json": msgspec.json.encode(sorted(tags)),
        "lapses_at": lapses_at,
        "updated_at": _utcnow(),
    }
    try:
        async with store.write() as conn:
            done = await conn.execute(
                update(ghl_contact_links)
                .where(k.location_id == location_id, k.patient_id == patient_id)
                .values(**values)
            )
            if not done.rowcount:
                await conn.execute(
                    insert(ghl_contact_links).values(location_id=location_id, patient_id=patient_id, **values)
                )
    except IntegrityError:
        raise LinkConflict(contact_id) from None


async def forget_contact(store: Store, location_id: str, patient_id: str) -> None:
    """The linked contact is gone from GHL (deleted by the agency): the next push finds or creates one again."""
    k = ghl_contact_links.c
    async with store.write() as conn:
        await conn.execute(delete(ghl_contact_links).where(k.location_id == location_id, k.patient_id == patient_id))


async def event_link(store: Store, location_id: str, appointment_id: str) -> EventLink | None:
    e = ghl_event_links.c
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                select(ghl_event_links).where(e.location_id == location_id, e.appointment_id == appointment_id)
            )
        ).first()
    if row is None:
        return None
    return EventLink(appointment_id=row.appointment_id, ghl_event_id=row.ghl_event_id, kind=row.kind, digest=row.digest)


async def save_event_link(
    store: Store, location_id: str, appointment_id: str, ghl_event_id: str, kind: str, digest: str | None
) -> None:
    e = ghl_event_links.c
    values = {"ghl_event_id": ghl_event_id, "kind": kind, "digest": digest, "updated_at": _utcnow()}
    async with store.write() as conn:
        done = await conn.execute(
            update(ghl_event_links)
            .where(e.location_id == location_id, e.appointment_id == appointment_id)
            .values(**values)
        )
        if not done.rowcount:
            await conn.execute(
                insert(ghl_event_links).values(location_id=location_id, appointment_id=appointment_id, **values)
            )


async def delete_event_link(store: Store, location_id: str, appointment_id: str) -> None:
    e = ghl_event_links.c
    async with store.write() as conn:
        await conn.execute(
            delete(ghl_event_links).where(e.location_id == location_id, e.appointment_id == appointment_id)
        )


async def mirrored_appointment(store: Store, location_id: str, ghl_event_id: str) -> str | None:
    """The EMR appointment a GHL event mirrors, when the gateway wrote it (loop prevention on GHL's routes)."""
    e = ghl_event_links.c
    async with store.engine.connect() as conn:
        return (
            await conn.execute(
                select(e.appointment_id).where(e.location_id == location_id, e.ghl_event_id == ghl_event_id)
            )
        ).scalar()


# -- the queue ------------------------------------------------------------------------------------------------------


def _row(
    location_id: str, patient_id: str, event_id: str | None, event_type: str, appointment_id: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_id("ghp"),
        "location_id": location_id,
        "patient_id": patient_id,
        "event_id": event_id,
        "event_type": event_type,
        "appointment_id": appointment_id,
        "state": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "locked_until": None,
        "locked_by": None,
        "calls": 0,
        "ghl_status": None,
        "error_code": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


async def event_subject(conn: AsyncConnection, event: WebhookEvent) -> tuple[str | None, str | None]:
    """(patient id, appointment id) an event is about: the snapshot's patient, or the appointment event's patient,
    else the stored fact of its appointment (an event built without a snapshot). (None, None) for endpoint events."""
    data = event.data
    if isinstance(data, PatientSnapshot):
        return data.patient.id, None
    if isinstance(data, AppointmentEventData):
        appointment_id = data.appointment.id
        if data.patient is not None:
            return data.patient.id, appointment_id
        a = appointment_states.c
        patient_id = (
            await conn.execute(
                select(a.patient_id).where(a.location_id == event.location_id, a.appointment_id == appointment_id)
            )
        ).scalar()
        return patient_id, appointment_id
    return None, None


async def enqueue_event(
    conn: AsyncConnection, event: WebhookEvent, now: datetime, subject: tuple[str | None, str | None] | None = None
) -> bool:
    """Called by the outbox in the event's own transaction: a connected location's patient and appointment events
    become pushes exactly when the change commits. `subject`: `event_subject(event)` if the caller has it."""
    if event.type not in _PUSHED_TYPES:
        return False
    c = ghl_connections.c
    connected = (
        await conn.execute(select(c.location_id).where(c.location_id == event.location_id, c.enabled.is_(True)))
    ).first()
    if connected is None:
        return False
    patient_id, appointment_id = subject if subject is not None else await event_subject(conn, event)
    if not patient_id:
        return False
    await conn.execute(
        insert(ghl_pushes).values(
            **_row(event.location_id, patient_id, event.id, event.type.value, appointment_id, now)
        )
    )
    return True


async def enqueue_refresh(
    store: Store, location_id: str, patient_ids: Sequence[str], now: datetime | None = None
) -> int:
    now = now or _utcnow()
    rows = [_row(location_id, pid, None, REFRESH, None, now) for pid in patient_ids]
    if rows:
        async with store.write() as conn:
            await conn.execute(insert(ghl_pushes), rows)
    return len(rows)


async def claim(store: Store, worker_id: str, *, now: datetime, lease_seconds: float, limit: int) -> list[PushClaim]:
    """Due pushes, at most one per patient and only each patient's oldest unfinished one (see the module doc).

    PostgreSQL: the claim first locks the connections it may draw from, so concurrent claims queue behind one
    another for the few milliseconds a claim takes; SQLite: the write transaction holds the database lock."""
    p, c = ghl_pushes.c, ghl_connections.c
    due = or_(
        and_(p.state.in_((PENDING, FAILED)), p.next_attempt_at <= now),
        and_(p.state == PUSHING, p.locked_until < now),  # a worker died mid-push
    )
    async with store.write() as conn:
        lock = select(c.location_id).where(c.enabled.is_(True), or_(c.paused_until.is_(None), c.paused_until <= now))
        if conn.dialect.name == "postgresql":
            lock = lock.with_for_update()
        open_locations = list((await conn.execute(lock)).scalars())
        if not open_locations:
            return []
        candidates = (
            await conn.execute(
                select(p.id, p.location_id, p.patient_id, p.created_at)
                .where(due, p.location_id.in_(open_locations))
                .order_by(p.created_at, p.id)
                .limit(limit * 4)
            )
        ).all()
        if not candidates:
            return []
        patients = {(row.location_id, row.patient_id) for row in candidates}
        unfinished = (
            await conn.execute(
                select(p.id, p.location_id, p.patient_id, p.created_at, p.state, p.locked_until).where(
                    p.state.in_(UNFINISHED),
                    p.location_id.in_({loc for loc, _ in patients}),
                    p.patient_id.in_({pid for _, pid in patients}),
                )
            )
        ).all()
        first: dict[tuple[str, str], tuple[datetime, str]] = {}
        busy: set[tuple[str, str]] = set()
        for row in unfinished:
            key = (row.location_id, row.patient_id)
            if row.state == PUSHING and row.locked_until is not None and row.locked_until >= now:
                busy.add(key)
            order = (row.created_at, row.id)
            if key not in first or order < first[key]:
                first[key] = order
        chosen: list[str] = []
        for candidate in candidates:
            key = (candidate.location_id, candidate.patient_id)
            if key in busy or first.get(key) != (candidate.created_at, candidate.id):
                continue
            busy.add(key)
            chosen.append(candidate.id)
            if len(chosen) >= limit:
                break
        if not chosen:
            return []
        await conn.execute(
            update(ghl_pushes)
            .where(p.id.in_(chosen))
            .values(
                state=PUSHING, locked_by=worker_id, locked_until=now + timedelta(seconds=lease_seconds), updated_at=now
            )
        )
        rows = (
            await conn.execute(
                select(
                    p.id,
                    p.location_id,
                    p.patient_id,
                    p.event_type,
                    p.appointment_id,
                    p.attempts,
                    p.created_at,
                    events.c.payload,
                )
                .select_from(ghl_pushes.outerjoin(events, events.c.id == p.event_id))
                .where(p.id.in_(chosen))
            )
        ).all()
    claims = [
        PushClaim(
            id=row.id,
            location_id=row.location_id,
            patient_id=row.patient_id,
            event_type=row.event_type,
            appointment_id=row.appointment_id,
            attempts=int(row.attempts),
            payload=bytes(row.payload) if row.payload is not None else None,
            created_at=row.created_at,
        )
        for row in rows
    ]
    return sorted(claims, key=lambda claim: (claim.created_at, claim.id))


async def finish(store: Store, claim: PushClaim, worker_id: str, outcome: PushOutcome) -> None:
    p = ghl_pushes.c
    attempts = claim.attempts + (1 if outcome.count_attempt else 0)
    async with store.write() as conn:
        await conn.execute(
            update(ghl_pushes)
            .where(p.id == claim.id, p.locked_by == worker_id)
            .values(
                state=outcome.state,
                attempts=attempts,
                next_attempt_at=outcome.next_attempt_at,
                locked_until=None,
                locked_by=None,
                calls=outcome.calls,
                ghl_status=outcome.ghl_status,
                error_code=outcome.error_code,
                error=(outcome.error or "")[:300] or None,
                updated_at=_utcnow(),
            )
        )


def _record(row: Any) -> PushRecord:
    return PushRecord(
        id=row.id,
        patient_id=row.patient_id,
        event_id=row.event_id,
        event_type=row.event_type,
        appointment_id=row.appointment_id,
        state=row.state,
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
        calls=int(row.calls),
        ghl_status=row.ghl_status,
        error_code=row.error_code,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def list_pushes(
    store: Store,
    location_id: str,
    *,
    patient_id: str | None = None,
    states: Sequence[str] | None = None,
    before: str | None = None,
    limit: int = 100,
) -> list[PushRecord]:
    """Newest first; `before` is the id the previous page ended at."""
    p = ghl_pushes.c
    query = select(ghl_pushes).where(p.location_id == location_id)
    if patient_id is not None:
        query = query.where(p.patient_id == patient_id)
    if states:
        query = query.where(p.state.in_(list(states)))
    if before is not None:
        query = query.where(p.id < before)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query.order_by(p.id.desc()).limit(limit))).all()
    return [_record(row) for row in rows]


async def replay(store: Store, location_id: str, since: datetime) -> int:
    """Dead pushes created since `since` are queued again, with a fresh schedule."""
    p = ghl_pushes.c
    now = _utcnow()
    async with store.write() as conn:
        result = await conn.execute(
            update(ghl_pushes)
            .where(p.location_id == location_id, p.state == DEAD, p.created_at >= since)
            .values(state=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
        )
    return int(result.rowcount or 0)


async def retry(store: Store, location_id: str, push_id: str) -> bool:
    p = ghl_pushes.c
    now = _utcnow()
    async with store.write() as conn:
        result = await conn.execute(
            update(ghl_pushes)
            .where(p.location_id == location_id, p.id == push_id, p.state.in_((DEAD, FAILED)))
            .values(state=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
        )
    return bool(result.rowcount)


async def counts(store: Store, location_id: str) -> dict[str, int]:
    p = ghl_pushes.c
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(select(p.state, func.count()).where(p.location_id == location_id).group_by(p.state))
        ).all()
    return {row[0]: int(row[1]) for row in rows}


async def sweep_lapses(store: Store, now: datetime, limit: int = 500) -> int:
    """Patients whose lapsed rule turned true with time alone get a refresh push (and their `lapses_at` cleared)."""
    k, c = ghl_contact_links.c, ghl_connections.c
    async with store.write() as conn:
        rows = (
            await conn.execute(
                select(k.location_id, k.patient_id)
                .join(ghl_connections, c.location_id == k.location_id)
                .where(k.lapses_at.is_not(None), k.lapses_at <= now, c.enabled.is_(True))
                .limit(limit)
            )
        ).all()
        if not rows:
            return 0
        await conn.execute(
            insert(ghl_pushes), [_row(row.location_id, row.patient_id, None, REFRESH, None, now) for row in rows]
        )
        for row in rows:
            await conn.execute(
                update(ghl_contact_links)
                .where(k.location_id == row.location_id, k.patient_id == row.patient_id)
                .values(lapses_at=None)
            )
    return len(rows)


async def patients_to_push(store: Store, location_id: str, *, after: str | None, limit: int) -> list[str]:
    """Patients with an appointment here (the facts the gateway keeps), in id order, after `after`."""
    a = appointment_states.c
    query = select(a.patient_id).where(a.location_id == location_id).group_by(a.patient_id).order_by(a.patient_id)
    if after is not None:
        query = query.where(a.patient_id > after)
    async with store.engine.connect() as conn:
        return list((await conn.execute(query.limit(limit))).scalars())


async def count_patients(store: Store, location_id: str) -> int:
    a = appointment_states.c
    async with store.engine.connect() as conn:
        found = await conn.execute(select(func.count(func.distinct(a.patient_id))).where(a.location_id == location_id))
        return int(found.scalar() or 0)


async def record(store: Store, location_id: str, patient_id: str, outcome: PushOutcome) -> None:
    """A push made outside the queue (`ghl sync`), written to the same log."""
    now = _utcnow()
    row = _row(location_id, patient_id, None, REFRESH, None, now)
    row.update(
        state=outcome.state,
        attempts=1,
        next_attempt_at=None,
        calls=outcome.calls,
        ghl_status=outcome.ghl_status,
        error_code=outcome.error_code,
        error=(outcome.error or "")[:300] or None,
    )
    async with store.write() as conn:
        await conn.execute(insert(ghl_pushes).values(**row))

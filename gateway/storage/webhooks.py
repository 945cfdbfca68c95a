"""Storage for webhook delivery: endpoints with sealed secrets, the delivery log, lease-based claims for workers."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Row, and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.storage.ids import new_id
from gateway.storage.outbox import decode_event, new_event_id, publish
from gateway.storage.store import Store, sealed_aad
from gateway.storage.tables import deliveries, events, locations, webhook_endpoints
from schemas.webhooks import CreateWebhook, EndpointDisabledData, EventType, PayloadFormat, WebhookEvent

PENDING = "pending"
DELIVERING = "delivering"
SUCCEEDED = "succeeded"
FAILED = "failed"  # the last attempt failed; another is scheduled
DEAD = "dead"  # the schedule is exhausted: dead-lettered until retried or replayed
SECRET_BYTES = 32
RESPONSE_BODY_LIMIT = 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


def generate_secret() -> str:
    """`whsec_` + base64 of 32 random bytes (Standard Webhooks: 24-64 bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


class SecretSet(msgspec.Struct, kw_only=True):
    """Sealed as one blob, so rotate-master-key re-encrypts the previous secret along with the current one."""

    current: str
    previous: str | None = None


class EndpointRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    location_id: str
    url: str
    event_types: list[EventType]
    format: PayloadFormat
    description: str | None
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    previous_expires_at: datetime | None
    created_at: datetime


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the operator sees: outcome metadata and the receiver's (truncated) answer, never the payload."""

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_response_body: str | None
    created_at: datetime
    updated_at: datetime


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """One leased delivery with everything needed to send it; `secrets` lists the signing secrets, newest first."""

    delivery_id: str
    endpoint_id: str
    location_id: str
    url: str
    format: PayloadFormat
    event_id: str
    payload: bytes
    attempts: int
    failing_since: datetime | None
    secrets: list[str]

    def __repr__(self) -> str:
        return f"Claim(delivery_id={self.delivery_id!r}, endpoint_id={self.endpoint_id!r}, secrets=<redacted>)"


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one attempt. `next_attempt_at` None on a failure means dead-letter."""

    succeeded: bool
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    next_attempt_at: datetime | None = None
    gone: bool = False


_TYPES = msgspec.json.Decoder(list[EventType])
_SECRETS = msgspec.json.Decoder(SecretSet)


def _endpoint(row: Row[Any]) -> EndpointRecord:
    return EndpointRecord(
        id=row.id,
        location_id=row.location_id,
        url=row.url,
        event_types=_TYPES.decode(row.event_types),
        format=PayloadFormat(row.format),
        description=row.description,
        enabled=bool(row.enabled),
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        previous_expires_at=row.previous_expires_at,
        created_at=row.created_at,
    )


def _delivery(row: Row[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.type,
        state=row.state,
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        last_response_body=row.last_response_body,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _due(now: datetime) -> Any:
    d = deliveries.c
    return or_(
        and_(d.state.in_((PENDING, FAILED)), d.next_attempt_at <= now),
        and_(d.state == DELIVERING, d.locked_until < now),  # a worker died mid-attempt: its lease lapsed
    )


class WebhookStore:
    """Webhook queries over the shared Store (its engine, its write transactions, its keyring)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _seal(self, endpoint_id: str, secret_set: SecretSet) -> tuple[str, bytes]:
        return self._store.keyring.encrypt(msgspec.json.encode(secret_set), sealed_aad(webhook_endpoints, endpoint_id))

    def _open(self, endpoint_id: str, key_id: str, blob: bytes) -> SecretSet:
        plain = self._store.keyring.decrypt(key_id, blob, sealed_aad(webhook_endpoints, endpoint_id))
        return _SECRETS.decode(plain)

    # -- endpoints ---------------------------------------------------------------------------------------------------

    async def create_endpoint(self, location_id: str, spec: CreateWebhook) -> tuple[EndpointRecord, str]:
        """Returns the record and the plaintext secret, which is shown once and never again."""
        endpoint_id = new_id("wh")
        secret = generate_secret()
        key_id, blob = self._seal(endpoint_id, SecretSet(current=secret))
        now = _utcnow()
        types = list(dict.fromkeys(spec.event_types))
        async with self._store.write() as conn:
            await conn.execute(
                insert(webhook_endpoints).values(
                    id=endpoint_id,
                    location_id=location_id,
                    url=spec.url,
                    event_types=msgspec.json.encode(types).decode(),
                    format=spec.format.value,
                    description=spec.description,
                    enabled=True,
                    disabled_reason=None,
                    failing_since=None,
                    key_id=key_id,
                    ciphertext=blob,
                    previous_expires_at=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            row = (await conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))).one()
        return _endpoint(row), secret

    async def get_endpoint(self, location_id: str, endpoint_id: str) -> EndpointRecord | None:
        e = webhook_endpoints.c
        async with self._store.engine.connect() as conn:
            row = (
                await conn.execute(select(webhook_endpoints).where(e.id == endpoint_id, e.location_id == location_id))
            ).first()
        return _endpoint(row) if row is not None else None

    async def list_endpoints(self, location_id: str) -> list[EndpointRecord]:
        e = webhook_endpoints.c
        async with self._store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(webhook_endpoints).where(e.location_id == location_id).order_by(e.created_at, e.id)
                )
            ).all()
        return [_endpoint(row) for row in rows]

    async def delete_endpoint(self, location_id: str, endpoint_id: str) -> bool:
        """Its deliveries go with it (cascade); the events stay for the location's other endpoints."""
        e = webhook_endpoints.c
        async with self._store.write() as conn:
            await conn.execute(delete(deliveries).where(deliveries.c.endpoint_id == endpoint_id))
            gone = await conn.execute(
                delete(webhook_endpoints).where(e.id == endpoint_id, e.location_id == location_id).returning(e.id)
            )
            return gone.first() is not None

    async def rotate_secret(
        self, location_id: str, endpoint_id: str, grace_seconds: float
    ) -> tuple[EndpointRecord, str] | None:
        """The old secret keeps signing (alongside the new one) until the grace period ends."""
        e = webhook_endpoints.c
        now = _utcnow()
        secret = generate_secret()
        async with self._store.write() as conn:
            row = (
                await conn.execute(
                    select(webhook_endpoints).where(e.id == endpoint_id, e.location_id == location_id).with_for_update()
                )
            ).first()
            if row is None:
                return None
            old = self._open(endpoint_id, row.key_id, bytes(row.ciphertext))
            key_id, blob = self._seal(endpoint_id, SecretSet(current=secret, previous=old.current))
            await conn.execute(
                update(webhook_endpoints)
                .where(e.id == endpoint_id)
                .values(
                    key_id=key_id,
                    ciphertext=blob,
                    previous_expires_at=now + timedelta(seconds=grace_seconds),
                    updated_at=now,
                )
            )
            fresh = (await conn.execute(select(webhook_endpoints).where(e.id == endpoint_id))).one()
        return _endpoint(fresh), secret

    async def enable_endpoint(self, location_id: str, endpoint_id: str) -> EndpointRecord | None:
        """Deliveries still pending or failed resume; dead ones wait for a retry or a replay."""
        e = webhook_endpoints.c
        async with self._store.write() as conn:
            done = await conn.execute(
                update(webhook_endpoints)
                .where(e.id == endpoint_id, e.location_id == location_id)
                .values(enabled=True, disabled_reason=None, failing_since=None, updated_at=_utcnow())
                .returning(e.id)
            )
            if done.first() is None:
                return None
            row = (await conn.execute(select(webhook_endpoints).where(e.id == endpoint_id))).one()
        return _endpoint(row)

    # -- the operator's delivery log ---------------------------------------------------------------------------------

    async def list_deliveries(
        self, location_id: str, endpoint_id: str, *, state: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord] | None:
        """Newest first; None when the endpoint is not this location's."""
        if await self.get_endpoint(location_id, endpoint_id) is None:
            return None
        d = deliveries.c
        query = (
            select(deliveries, events.c.type)
            .join(events, events.c.id == d.event_id)
            .where(d.endpoint_id == endpoint_id)
            .order_by(d.created_at.desc(), d.id.desc())
            .limit(limit)
        )
        if state is not None:
            query = query.where(d.state == state)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_delivery(row) for row in rows]

    async def retry_delivery(self, location_id: str, endpoint_id: str, delivery_id: str) -> DeliveryRecord | None:
        """Due now, with the whole retry schedule ahead of it again."""
        if await self.get_endpoint(location_id, endpoint_id) is None:
            return None
        d = deliveries.c
        now = _utcnow()
        async with self._store.write() as conn:
            done = await conn.execute(
                update(deliveries)
                .where(d.id == delivery_id, d.endpoint_id == endpoint_id)
                .values(
                    state=PENDING, attempts=0, next_attempt_at=now, locked_until=None, locked_by=None, updated_at=now
                )
                .returning(d.id)
            )
            if done.first() is None:
                return None
            row = (
                await conn.execute(
                    select(deliveries, events.c.type).join(events, events.c.id == d.event_id).where(d.id == delivery_id)
                )
            ).one()
        return _delivery(row)

    async def replay(self, location_id: str, endpoint_id: str, since: datetime) -> int | None:
        """Queues again every event of the location since `since` that the endpoint subscribes to; same webhook-ids."""
        endpoint = await self.get_endpoint(location_id, endpoint_id)
        if endpoint is None:
            return None
        now = _utcnow()
        d = deliveries.c
        count = 0
        async with self._store.write() as conn:
            rows = (
                await conn.execute(
                    select(events.c.id, events.c.type)
                    .where(events.c.location_id == location_id, events.c.created_at >= since)
                    .order_by(events.c.created_at, events.c.id)
                )
            ).all()
            wanted = [row.id for row in rows if EventType(row.type) in endpoint.event_types]
            existing = (
                {
                    row.event_id
                    for row in (
                        await conn.execute(
                            select(d.event_id).where(d.endpoint_id == endpoint_id, d.event_id.in_(wanted))
                        )
                    ).all()
                }
                if wanted
                else set()
            )
            reset = {"state": PENDING, "attempts": 0, "next_attempt_at": now, "locked_until": None, "locked_by": None}
            for event_id in wanted:
                if event_id in existing:
                    await conn.execute(
                        update(deliveries)
                        .where(d.endpoint_id == endpoint_id, d.event_id == event_id)
                        .values(**reset, updated_at=now)
                    )
                else:
                    await conn.execute(
                        insert(deliveries).values(
                            id=new_id("dlv"),
                            endpoint_id=endpoint_id,
                            event_id=event_id,
                            **reset,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                count += 1
        return count

    # -- the delivery worker -----------------------------------------------------------------------------------------

    async def claim(self, worker_id: str, *, limit: int, lease_seconds: float) -> list[Claim]:
        """Leases up to `limit` due deliveries of enabled endpoints.

        PostgreSQL: FOR UPDATE SKIP LOCKED lets workers claim disjoint batches at once. SQLite: the write transaction
        takes the database lock at BEGIN, so the select-then-update is atomic for the single worker it serves.
        """
        now = _utcnow()
        d, e = deliveries.c, webhook_endpoints.c
        async with self._store.engine.connect() as conn:
            # A plain read first, so an idle poll never takes SQLite's write lock.
            if (await conn.execute(select(d.id).where(_due(now)).limit(1))).first() is None:
                return []
        async with self._store.write() as conn:
            picked = (
                await conn.execute(
                    select(d.id)
                    .join(webhook_endpoints, e.id == d.endpoint_id)
                    .where(_due(now), e.enabled.is_(True))
                    .order_by(d.next_attempt_at, d.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=deliveries)
                )
            ).all()
            ids = [row.id for row in picked]
            if not ids:
                return []
            await conn.execute(
                update(deliveries)
                .where(d.id.in_(ids))
                .values(
                    state=DELIVERING,
                    locked_by=worker_id,
                    locked_until=now + timedelta(seconds=lease_seconds),
                    updated_at=now,
                )
            )
            rows = (
                await conn.execute(
                    select(
                        d.id,
                        d.attempts,
                        d.event_id,
                        events.c.payload,
                        e.id.label("endpoint_id"),
                        e.location_id,
                        e.url,
                        e.format,
                        e.failing_since,
                        e.key_id,
                        e.ciphertext,
                        e.previous_expires_at,
                    )
                    .join(events, events.c.id == d.event_id)
                    .join(webhook_endpoints, e.id == d.endpoint_id)
                    .where(d.id.in_(ids))
                    .order_by(d.next_attempt_at, d.id)
                )
            ).all()
        claims = []
        for row in rows:
            sealed = self._open(row.endpoint_id, row.key_id, bytes(row.ciphertext))
            keys = [sealed.current]
            if sealed.previous and row.previous_expires_at is not None and row.previous_expires_at > now:
                keys.append(sealed.previous)
            claims.append(
                Claim(
                    delivery_id=row.id,
                    endpoint_id=row.endpoint_id,
                    location_id=row.location_id,
                    url=row.url,
                    format=PayloadFormat(row.format),
                    event_id=row.event_id,
                    payload=bytes(row.payload),
                    attempts=int(row.attempts),
                    failing_since=row.failing_since,
                    secrets=keys,
                )
            )
        return claims

    async def finish(self, claim: Claim, worker_id: str, outcome: Outcome, *, disable_after_seconds: float) -> bool:
        """Records an attempt. Only the lease holder may: a worker that lost its lease changes nothing (False).

        A failure starts (or continues) the endpoint's failing streak; a 410, or a streak longer than
        `disable_after_seconds`, disables the endpoint and records an `endpoint.disabled` event in the same
        transaction.
        """
        now = _utcnow()
        d, e = deliveries.c, webhook_endpoints.c
        if outcome.succeeded:
            state = SUCCEEDED
        elif outcome.next_attempt_at is None:
            state = DEAD
        else:
            state = FAILED
        body = outcome.response_body[:RESPONSE_BODY_LIMIT] if outcome.response_body is not None else None
        async with self._store.write() as conn:
            done = await conn.execute(
                update(deliveries)
                .where(d.id == claim.delivery_id, d.state == DELIVERING, d.locked_by == worker_id)
                .values(
                    state=state,
                    attempts=d.attempts + 1,
                    next_attempt_at=None if outcome.succeeded else outcome.next_attempt_at,
                    locked_until=None,
                    locked_by=None,
                    last_attempt_at=now,
                    last_status_code=outcome.status_code,
                    last_error=(outcome.error or "")[:300] or None,
                    last_response_body=body,
                    updated_at=now,
                )
                .returning(d.id)
            )
            if done.first() is None:
                return False
            if outcome.succeeded:
                await conn.execute(
                    update(webhook_endpoints)
                    .where(e.id == claim.endpoint_id, e.failing_since.is_not(None))
                    .values(failing_since=None)
                )
                return True
            row = (
                await conn.execute(
                    select(e.failing_since, e.enabled).where(e.id == claim.endpoint_id).with_for_update()
                )
            ).first()
            if row is None:
                return True
            failing_since = row.failing_since or now
            if row.failing_since is None:
                await conn.execute(update(webhook_endpoints).where(e.id == claim.endpoint_id).values(failing_since=now))
            reason = None
            if outcome.gone:
                reason = "the receiver answered 410 Gone"
            elif (now - failing_since).total_seconds() >= disable_after_seconds:
                reason = f"failing continuously since {failing_since.isoformat()}"
            if reason is not None and row.enabled:
                await self._disable(conn, claim, reason, now)
        return True

    async def _disable(self, conn: AsyncConnection, claim: Claim, reason: str, now: datetime) -> None:
        e = webhook_endpoints.c
        await conn.execute(
            update(webhook_endpoints)
            .where(e.id == claim.endpoint_id)
            .values(enabled=False, disabled_reason=reason, updated_at=now)
        )
        emr = (await conn.execute(select(locations.c.emr).where(locations.c.id == claim.location_id))).scalar_one()
        await publish(
            conn,
            WebhookEvent(
                id=new_event_id(),
                type=EventType.ENDPOINT_DISABLED,
                timestamp=now,
                location_id=claim.location_id,
                emr=emr,
                data=EndpointDisabledData(endpoint_id=claim.endpoint_id, reason=reason),
            ),
        )

    async def list_events(self, location_id: str, event_type: EventType | None = None) -> list[WebhookEvent]:
        """The outbox as recorded (oldest first), for operators and tests."""
        query = select(events.c.payload).where(events.c.location_id == location_id)
        if event_type is not None:
            query = query.where(events.c.type == event_type.value)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(events.c.created_at, events.c.id))).all()
        return [decode_event(bytes(row.payload)) for row in rows]

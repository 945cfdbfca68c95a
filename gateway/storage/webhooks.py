"""Storage for webhook delivery: endpoints with sealed secrets, the delivery log, lease-based claims for workers."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Row, and_, bindparam, case, delete, insert, or_, select, text, update
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
    locked_until: datetime  # the lease: sending after it lapsed could race another worker's claim

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


class Finished(msgspec.Struct, frozen=True):
    """One sent attempt awaiting its record."""

    claim: Claim
    outcome: Outcome


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """What a batch record changed: the deliveries whose lease still held, the endpoints it disabled."""

    delivery_ids: frozenset[str]
    disabled_endpoints: frozenset[str] = frozenset()


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


def _state_of(outcome: Outcome) -> str:
    if outcome.succeeded:
        return SUCCEEDED
    return DEAD if outcome.next_attempt_at is None else FAILED


def _clean(value: str | None, limit: int) -> str | None:
    """PostgreSQL text cannot hold NUL: one receiver answering with it must not fail the whole batch's record."""
    if value is None:
        return None
    return value[:limit].replace("\x00", "\ufffd") or None


_d = deliveries.c
# One guarded UPDATE per delivery (SQLite, in one transaction): built once, executed with parameters.
_FINISH_ONE = (
    update(deliveries)
    .where(_d.id == bindparam("b_id"), _d.state == DELIVERING, _d.locked_by == bindparam("b_worker"))
    .values(
        state=bindparam("b_state"),
        attempts=_d.attempts + 1,
        next_attempt_at=bindparam("b_next", type_=_d.next_attempt_at.type),
        locked_until=None,
        locked_by=None,
        last_attempt_at=bindparam("b_now", type_=_d.last_attempt_at.type),
        last_status_code=bindparam("b_code", type_=_d.last_status_code.type),
        last_error=bindparam("b_error", type_=_d.last_error.type),
        last_response_body=bindparam("b_body", type_=_d.last_response_body.type),
        updated_at=bindparam("b_now2", type_=_d.updated_at.type),
    )
    .returning(_d.id)
)
# PostgreSQL: the whole batch in one statement, the same lease guard per row; RETURNING names the rows it held.
_FINISH_MANY_PG = text(
    """
    UPDATE deliveries AS d SET
        state = v.state, attempts = d.attempts + 1, next_attempt_at = v.next_attempt_at,
        locked_until = NULL, locked_by = NULL, last_attempt_at = :now, last_status_code = v.status_code,
        last_error = v.error, last_response_body = v.body, updated_at = :now
    FROM unnest(
        CAST(:ids AS varchar[]), CAST(:states AS varchar[]), CAST(:nexts AS timestamptz[]),
        CAST(:codes AS integer[]), CAST(:errors AS varchar[]), CAST(:bodies AS text[])
    ) AS v(id, state, next_attempt_at, status_code, error, body), webhook_endpoints AS e
    WHERE d.id = v.id AND d.state = 'delivering' AND d.locked_by = :worker AND e.id = d.endpoint_id
    RETURNING d.id, e.id AS endpoint_id, e.failing_since, e.enabled
    """
)


# The delivery loop's hot path on its own connection (`Lane`): plain psycopg, autocommit, one statement each.
_LANE_CLAIM = """
    UPDATE deliveries AS d
    SET state = 'delivering', locked_by = %(worker)s, locked_until = %(until)s, updated_at = %(now)s
    FROM events AS ev, webhook_endpoints AS e
    WHERE d.id IN (
        SELECT d2.id FROM deliveries AS d2 JOIN webhook_endpoints AS e2 ON e2.id = d2.endpoint_id
        WHERE e2.enabled AND (
            (d2.state IN ('pending', 'failed') AND d2.next_attempt_at <= %(now)s)
            OR (d2.state = 'delivering' AND d2.locked_until < %(now)s)
        )
        ORDER BY d2.next_attempt_at, d2.id
        LIMIT %(limit)s
        FOR UPDATE OF d2 SKIP LOCKED
    ) AND ev.id = d.event_id AND e.id = d.endpoint_id
    RETURNING d.id, d.attempts, d.event_id, d.next_attempt_at, ev.payload, e.id AS endpoint_id, e.location_id, e.url,
        e.format, e.failing_since, e.key_id, e.ciphertext, e.previous_expires_at
"""
# A batch of successes: the guarded update, and the end of their endpoints' failing streaks, as one statement.
_LANE_SUCCEEDED = """
    WITH v AS (
        SELECT * FROM unnest(CAST(%(ids)s AS varchar[]), CAST(%(codes)s AS integer[]), CAST(%(bodies)s AS text[]))
            AS v(id, status_code, body)
    ), done AS (
        UPDATE deliveries AS d SET
            state = 'succeeded', attempts = d.attempts + 1, next_attempt_at = NULL, locked_until = NULL,
            locked_by = NULL, last_attempt_at = %(now)s, last_status_code = v.status_code, last_error = NULL,
            last_response_body = v.body, updated_at = %(now)s
        FROM v
        WHERE d.id = v.id AND d.state = 'delivering' AND d.locked_by = %(worker)s
        RETURNING d.id, d.endpoint_id
    ), healed AS (
        UPDATE webhook_endpoints AS e SET failing_since = NULL
        WHERE e.id IN (SELECT endpoint_id FROM done) AND e.failing_since IS NOT NULL
    )
    SELECT id FROM done
"""


class Lane:
    """A PostgreSQL connection of the delivery loop's own, in autocommit, driven with plain psycopg: a claim is one
    statement, a batch of successes another. Measured: the pool's checkout, pre-ping and SQLAlchemy's per-statement
    and per-row work cost more CPU than the statements themselves. Reconnects on the next use after a failure."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def fetch(self, sql: str, params: dict[str, Any]) -> list[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, row_factory=namedtuple_row)
        try:
            cursor = await self._conn.execute(sql, params)
            return await cursor.fetchall()
        except psycopg.Error:
            await self.close()  # a broken or confused connection is never reused
            raise

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


# What a claim reads: the delivery, its event's payload, its endpoint (secrets sealed).
_CLAIMED = (
    _d.id,
    _d.attempts,
    _d.event_id,
    events.c.payload,
    webhook_endpoints.c.id.label("endpoint_id"),
    webhook_endpoints.c.location_id,
    webhook_endpoints.c.url,
    webhook_endpoints.c.format,
    webhook_endpoints.c.failing_since,
    webhook_endpoints.c.key_id,
    webhook_endpoints.c.ciphertext,
    webhook_endpoints.c.previous_expires_at,
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

    def lane(self) -> Lane | None:
        """A connection for one delivery task's hot path (PostgreSQL only); the caller closes it."""
        if self._store.backend != "postgresql":
            return None
        url = self._store.engine.url.set(drivername="postgresql")
        return Lane(url.render_as_string(hide_password=False))

    async def claim(self, worker_id: str, *, limit: int, lease_seconds: float, lane: Lane | None = None) -> list[Claim]:
        """Leases up to `limit` due deliveries of enabled endpoints.

        PostgreSQL: FOR UPDATE SKIP LOCKED lets workers claim disjoint batches at once. SQLite: the write transaction
        takes the database lock at BEGIN, so the select-then-update is atomic for the single worker it serves.
        """
        now = _utcnow()
        locked_until = now + timedelta(seconds=lease_seconds)
        if lane is not None:
            params = {"worker": worker_id, "until": locked_until, "now": now, "limit": limit}
            rows: Sequence[Any] = sorted(
                await lane.fetch(_LANE_CLAIM, params), key=lambda row: (row.next_attempt_at, row.id)
            )
        elif self._store.backend == "postgresql":
            rows = await self._claim_pg(worker_id, limit, now, locked_until)
        else:
            rows = await self._claim_sqlite(worker_id, limit, now, locked_until)
        claims = []
        opened: dict[str, list[str]] = {}  # a batch is mostly one endpoint's: open its secrets once
        for row in rows:
            keys = opened.get(row.endpoint_id)
            if keys is None:
                sealed = self._open(row.endpoint_id, row.key_id, bytes(row.ciphertext))
                keys = [sealed.current]
                if sealed.previous and row.previous_expires_at is not None and row.previous_expires_at > now:
                    keys.append(sealed.previous)
                opened[row.endpoint_id] = keys
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
                    failing_since=row.failing_since.astimezone(UTC) if row.failing_since is not None else None,
                    secrets=keys,
                    locked_until=locked_until,
                )
            )
        return claims

    async def _claim_pg(self, worker_id: str, limit: int, now: datetime, locked_until: datetime) -> Sequence[Any]:
        """One statement (lease and read together), so it runs in autocommit: no BEGIN/COMMIT round trips."""
        d, e = deliveries.c, webhook_endpoints.c
        picked = (
            select(d.id)
            .join(webhook_endpoints, e.id == d.endpoint_id)
            .where(_due(now), e.enabled.is_(True))
            .order_by(d.next_attempt_at, d.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=deliveries)
            .correlate(None)
        )
        statement = (
            update(deliveries)
            .where(d.id.in_(picked.scalar_subquery()), events.c.id == d.event_id, e.id == d.endpoint_id)
            .values(state=DELIVERING, locked_by=worker_id, locked_until=locked_until, updated_at=now)
            .returning(d.next_attempt_at, *_CLAIMED)
        )
        async with self._store.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = (await conn.execute(statement)).all()
        return sorted(rows, key=lambda row: (row.next_attempt_at, row.id))  # RETURNING keeps no order

    async def _claim_sqlite(self, worker_id: str, limit: int, now: datetime, locked_until: datetime) -> Sequence[Any]:
        """The write transaction takes the database lock at BEGIN: select-then-update is atomic."""
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
                .values(state=DELIVERING, locked_by=worker_id, locked_until=locked_until, updated_at=now)
            )
            return (
                await conn.execute(
                    select(*_CLAIMED)
                    .join(events, events.c.id == d.event_id)
                    .join(webhook_endpoints, e.id == d.endpoint_id)
                    .where(d.id.in_(ids))
                    .order_by(d.next_attempt_at, d.id)
                )
            ).all()

    async def finish(self, claim: Claim, worker_id: str, outcome: Outcome, *, disable_after_seconds: float) -> bool:
        """Records one attempt (see `finish_many`); False when the lease was lost."""
        recorded = await self.finish_many(
            [Finished(claim, outcome)], worker_id, disable_after_seconds=disable_after_seconds
        )
        return claim.delivery_id in recorded.delivery_ids

    async def finish_many(
        self, finished: Sequence[Finished], worker_id: str, *, disable_after_seconds: float, lane: Lane | None = None
    ) -> Recorded:
        """Records a batch of attempts in ONE transaction. Only the lease holder may: a row whose lease another worker
        took over is left alone (and is absent from the answer), row by row.

        `finished` is in the order the answers came. Per endpoint, the last recorded answer decides: a success ends
        its failing streak; a failure starts one (or continues it, unless a success came earlier in this batch). A 410,
        or a streak longer than `disable_after_seconds`, disables the endpoint and records an `endpoint.disabled`
        event in the same transaction.
        """
        if not finished:
            return Recorded(delivery_ids=frozenset())
        now = _utcnow()
        if lane is not None and all(f.outcome.succeeded for f in finished):
            params = {
                "ids": [f.claim.delivery_id for f in finished],
                "codes": [f.outcome.status_code for f in finished],
                "bodies": [_clean(f.outcome.response_body, RESPONSE_BODY_LIMIT) for f in finished],
                "now": now,
                "worker": worker_id,
            }
            return Recorded(delivery_ids=frozenset(str(row.id) for row in await lane.fetch(_LANE_SUCCEEDED, params)))
        async with self._store.write() as conn:
            if self._store.backend == "postgresql":
                held_rows = (
                    await conn.execute(
                        _FINISH_MANY_PG,
                        {
                            "ids": [f.claim.delivery_id for f in finished],
                            "states": [_state_of(f.outcome) for f in finished],
                            "nexts": [None if f.outcome.succeeded else f.outcome.next_attempt_at for f in finished],
                            "codes": [f.outcome.status_code for f in finished],
                            "errors": [_clean(f.outcome.error, 300) for f in finished],
                            "bodies": [_clean(f.outcome.response_body, RESPONSE_BODY_LIMIT) for f in finished],
                            "now": now,
                            "worker": worker_id,
                        },
                    )
                ).all()
                recorded = frozenset(str(row.id) for row in held_rows)
                known = {row.endpoint_id: (row.failing_since, bool(row.enabled)) for row in held_rows}
            else:
                known = None
                held: set[str] = set()
                for f in finished:
                    row = (
                        await conn.execute(
                            _FINISH_ONE,
                            {
                                "b_id": f.claim.delivery_id,
                                "b_worker": worker_id,
                                "b_state": _state_of(f.outcome),
                                "b_next": None if f.outcome.succeeded else f.outcome.next_attempt_at,
                                "b_now": now,
                                "b_now2": now,
                                "b_code": f.outcome.status_code,
                                "b_error": _clean(f.outcome.error, 300),
                                "b_body": _clean(f.outcome.response_body, RESPONSE_BODY_LIMIT),
                            },
                        )
                    ).first()
                    if row is not None:
                        held.add(f.claim.delivery_id)
                recorded = frozenset(held)
            by_endpoint: dict[str, list[Finished]] = {}
            for f in finished:
                if f.claim.delivery_id in recorded:
                    by_endpoint.setdefault(f.claim.endpoint_id, []).append(f)
            disabled = await self._endpoint_outcomes(conn, by_endpoint, now, disable_after_seconds, known)
        return Recorded(delivery_ids=recorded, disabled_endpoints=disabled)

    async def _endpoint_outcomes(
        self,
        conn: AsyncConnection,
        by_endpoint: dict[str, list[Finished]],
        now: datetime,
        disable_after_seconds: float,
        known: dict[str, tuple[datetime | None, bool]] | None,
    ) -> frozenset[str]:
        """Failing streaks and disabling. Unlocked state first (`known`: what the record's RETURNING read, else a plain
        read): a healthy endpoint that answered 2xx needs no write (and no row lock, so workers recording for the same
        endpoint do not queue); the others are locked in id order, so two workers' batches cannot deadlock."""
        if not by_endpoint:
            return frozenset()
        e = webhook_endpoints.c

        def wanted(endpoint_id: str, failing_since: datetime | None) -> datetime | None:
            answers = by_endpoint[endpoint_id]
            if answers[-1].outcome.succeeded:
                return None
            if failing_since is None or any(f.outcome.succeeded for f in answers):
                return now
            return failing_since

        def disable_reason(endpoint_id: str, since: datetime | None) -> str | None:
            if any(f.outcome.gone for f in by_endpoint[endpoint_id]):
                return "the receiver answered 410 Gone"
            if since is not None and (now - since).total_seconds() >= disable_after_seconds:
                return f"failing continuously since {since.isoformat()}"
            return None

        def needs_work(endpoint_id: str, failing_since: datetime | None, enabled: bool) -> bool:
            since = wanted(endpoint_id, failing_since)
            return since != failing_since or (enabled and disable_reason(endpoint_id, since) is not None)

        if known is None:
            query = select(e.id, e.failing_since, e.enabled).where(e.id.in_(sorted(by_endpoint)))
            known = {row.id: (row.failing_since, bool(row.enabled)) for row in (await conn.execute(query)).all()}
        touch = sorted(i for i, (since, enabled) in known.items() if i in by_endpoint and needs_work(i, since, enabled))
        if not touch:
            return frozenset()
        locked = (
            await conn.execute(
                select(e.id, e.failing_since, e.enabled).where(e.id.in_(touch)).order_by(e.id).with_for_update()
            )
        ).all()
        disabled: set[str] = set()
        for row in locked:
            answers = by_endpoint[row.id]
            since = wanted(row.id, row.failing_since)
            if since != row.failing_since:
                await conn.execute(update(webhook_endpoints).where(e.id == row.id).values(failing_since=since))
            reason = disable_reason(row.id, since)
            if reason is not None and row.enabled:
                await self._disable(conn, answers[0].claim, reason, now)
                disabled.add(row.id)
        return frozenset(disabled)

    async def release(self, claims: Sequence[Claim], worker_id: str) -> int:
        """Gives back leased deliveries that were never sent (a stopping worker's prefetched claims), due as before."""
        if not claims:
            return 0
        d = deliveries.c
        async with self._store.write() as conn:
            done = await conn.execute(
                update(deliveries)
                .where(d.id.in_([c.delivery_id for c in claims]), d.state == DELIVERING, d.locked_by == worker_id)
                .values(
                    state=case((d.attempts == 0, PENDING), else_=FAILED),
                    locked_until=None,
                    locked_by=None,
                    updated_at=_utcnow(),
                )
                .returning(d.id)
            )
            return len(done.all())

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

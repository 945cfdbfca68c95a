"""The gateway's one storage object: async Core queries on SQLite or PostgreSQL, secrets encrypted on the way in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Row, Table, and_, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import apikeys
from gateway.crypto import Keyring
from gateway.storage.engines import WRITE, make_async_engine, make_sqlite_writer_engine
from gateway.storage.errors import MissingCredentials, UnknownLocation
from gateway.storage.ids import new_id
from gateway.storage.migrate import current_revision_of
from gateway.storage.records import (
    ApiKeyRecord,
    IdemInFlight,
    IdemMismatch,
    IdempotencyScope,
    IdemReplay,
    IdemStarted,
    IssuedKey,
    LocationRecord,
)
from gateway.storage.tables import (
    api_keys,
    appointment_links,
    audit_log,
    emr_credentials,
    ghl_connections,
    idempotency_records,
    locations,
    webhook_endpoints,
)

T = TypeVar("T")
_FRESH_COLUMNS = (
    "fingerprint",
    "state",
    "status_code",
    "content_type",
    "body",
    "created_at",
    "locked_until",
    "expires_at",
)
IN_FLIGHT = "in_flight"
DONE = "done"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SealedColumn(NamedTuple):
    """A table holding encrypted secrets: `key_id` + `ciphertext` columns, aad = "<table>:<row id>"."""

    table: Table
    id_column: str


# Every table with encrypted secrets; rotate_master_key re-encrypts them all. Webhook secrets join this list.
SEALED: tuple[SealedColumn, ...] = (
    SealedColumn(emr_credentials, "location_id"),
    SealedColumn(webhook_endpoints, "id"),
    SealedColumn(ghl_connections, "location_id"),
)


def sealed_aad(table: Table, row_id: str) -> bytes:
    """Binds a blob to its row: copied onto another row (or table) it no longer decrypts."""
    return f"{table.name}:{row_id}".encode()


def credentials_aad(location_id: str) -> bytes:
    return sealed_aad(emr_credentials, location_id)


def _location(row: Row[Any]) -> LocationRecord:
    return LocationRecord(
        id=row.id,
        emr=row.emr,
        name=row.name,
        settings_json=bytes(row.settings_json),
        time_zone=row.time_zone,
        ghl_location_id=row.ghl_location_id,
        created_at=row.created_at,
    )


def _key(row: Row[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        location_id=row.location_id,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


_IDEM = idempotency_records.c
_SCOPE = and_(
    _IDEM.api_key_id == bindparam("s_key"),
    _IDEM.method == bindparam("s_method"),
    _IDEM.route == bindparam("s_route"),
    _IDEM.key == bindparam("s_idem"),
)
# Built once: constructing SQLAlchemy statements per request costs more than running them.
_IDEM_SELECT = select(idempotency_records).where(_SCOPE).with_for_update()
_IDEM_TTL = select(_IDEM.created_at, _IDEM.expires_at).where(_SCOPE).with_for_update()
_IDEM_RENEW = (
    update(idempotency_records)
    .where(_SCOPE)
    .values(
        fingerprint=bindparam("fingerprint"),
        state=bindparam("state"),
        status_code=bindparam("status_code"),
        content_type=bindparam("content_type"),
        body=bindparam("body"),
        created_at=bindparam("created_at"),
        locked_until=bindparam("locked_until"),
        expires_at=bindparam("expires_at"),
    )
)
_IDEM_LOCK = update(idempotency_records).where(_SCOPE).values(locked_until=bindparam("locked_until"))
_IDEM_DONE = (
    update(idempotency_records)
    .where(_SCOPE)
    .values(
        state=bindparam("state"),
        status_code=bindparam("status_code"),
        content_type=bindparam("content_type"),
        body=bindparam("body"),
        locked_until=None,
        expires_at=bindparam("expires_at"),
    )
)


def _scope_params(scope: IdempotencyScope) -> dict[str, str]:
    return {"s_key": scope.api_key_id, "s_method": scope.method, "s_route": scope.route, "s_idem": scope.key}


def _scope_clause(scope: IdempotencyScope) -> Any:
    t = idempotency_records.c
    return and_(t.api_key_id == scope.api_key_id, t.method == scope.method, t.route == scope.route, t.key == scope.key)


class Store:
    """One per process; the engine's pool is shared by every request."""

    def __init__(self, engine: AsyncEngine, keyring: Keyring, writer: Engine | None = None) -> None:
        self._engine = engine
        self._keyring = keyring
        self._writer = writer
        self._writer_thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="egw-sqlite-writer") if writer else None
        )
        self._idem_insert = (
            self._insert(idempotency_records)
            .values({c: bindparam(c) for c in ("api_key_id", "method", "route", "key", *_FRESH_COLUMNS)})
            .on_conflict_do_nothing()
            .returning(idempotency_records.c.key)
        )

    @classmethod
    async def open(cls, url: str, keyring: Keyring) -> Store:
        """Connects lazily; does not migrate (see gateway.storage.migrate.upgrade)."""
        engine = make_async_engine(url)
        writer = make_sqlite_writer_engine(url) if engine.dialect.name == "sqlite" else None
        return cls(engine, keyring, writer)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def keyring(self) -> Keyring:
        """For feature stores (gateway.storage.webhooks) that seal their own secrets."""
        return self._keyring

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._engine.dialect.name

    async def close(self) -> None:
        await self._engine.dispose()
        if self._writer is not None and self._writer_thread is not None:
            writer, thread = self._writer, self._writer_thread
            self._writer_thread = None  # closing twice is harmless
            await asyncio.get_running_loop().run_in_executor(thread, writer.dispose)
            thread.shutdown(wait=True)

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def schema_revision(self) -> str | None:
        """The migration the database is at (None: never migrated)."""
        async with self._engine.connect() as conn:
            return await conn.run_sync(current_revision_of)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that writes. On SQLite it takes the write lock at BEGIN, so read-then-write cannot deadlock."""
        async with self._engine.connect() as conn:
            await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                yield conn

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """`work` in one write transaction, given a synchronous connection. On SQLite the whole transaction runs on
        one writer thread (one hop from the event loop instead of one per statement, and writers queue there instead
        of waiting on the file lock); on PostgreSQL it runs on the async driver (`run_sync`)."""
        if self._writer is not None:
            if self._writer_thread is None:
                raise RuntimeError("the store is closed")
            writer = self._writer

            def transaction() -> T:
                with writer.connect() as conn, conn.begin():
                    return work(conn)

            return await asyncio.get_running_loop().run_in_executor(self._writer_thread, transaction)
        async with self.write() as conn:
            return await conn.run_sync(work)

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.backend == "postgresql" else sqlite_insert)(table)

    # -- locations and credentials ---------------------------------------------------------------------------------

    async def create_location(
        self,
        *,
        emr: str,
        name: str,
        settings_json: bytes,
        credentials_json: bytes,
        time_zone: str,
        ghl_location_id: str | None = None,
    ) -> LocationRecord:
        location_id = new_id("loc")
        now = _utcnow()
        key_id, blob = self._keyring.encrypt(credentials_json, credentials_aad(location_id))
        async with self.write() as conn:
            await conn.execute(
                insert(locations).values(
                    id=location_id,
                    emr=emr,
                    name=name,
                    settings_json=settings_json,
                    time_zone=time_zone,
                    ghl_location_id=ghl_location_id,
                    created_at=now,
                )
            )
            await conn.execute(
                insert(emr_credentials).values(location_id=location_id, key_id=key_id, ciphertext=blob, updated_at=now)
            )
        return LocationRecord(
            id=location_id,
            emr=emr,
            name=name,
            settings_json=settings_json,
            time_zone=time_zone,
            ghl_location_id=ghl_location_id,
            created_at=now,
        )

    async def get_location(self, location_id: str) -> LocationRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(locations).where(locations.c.id == location_id))).first()
        return _location(row) if row is not None else None

    async def list_locations(self) -> list[LocationRecord]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(locations).order_by(locations.c.created_at, locations.c.id))).all()
        return [_location(row) for row in rows]

    async def get_credentials(self, location_id: str) -> bytes:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(emr_credentials.c.key_id, emr_credentials.c.ciphertext).where(
                        emr_credentials.c.location_id == location_id
                    )
                )
            ).first()
        if row is None:
            raise MissingCredentials(location_id)
        return self._keyring.decrypt(row.key_id, bytes(row.ciphertext), credentials_aad(location_id))

    async def set_credentials(self, location_id: str, credentials_json: bytes) -> None:
        key_id, blob = self._keyring.encrypt(credentials_json, credentials_aad(location_id))
        now = _utcnow()
        async with self.write() as conn:
            exists = (await conn.execute(select(locations.c.id).where(locations.c.id == location_id))).first()
            if exists is None:
                raise UnknownLocation(location_id)
            stmt = self._insert(emr_credentials).values(
                location_id=location_id, key_id=key_id, ciphertext=blob, updated_at=now
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[emr_credentials.c.location_id],
                    set_={"key_id": key_id, "ciphertext": blob, "updated_at": now},
                )
            )

    async def rotate_master_key(self) -> int:
        """Re-encrypts every secret under the primary key id; afterwards older keys can leave the keyring."""
        count = 0
        async with self.write() as conn:
            for sealed in SEALED:
                table, id_col = sealed.table, sealed.table.c[sealed.id_column]
                rows = (await conn.execute(select(id_col, table.c.key_id, table.c.ciphertext).with_for_update())).all()
                for row_id, old_key_id, old_blob in rows:
                    aad = sealed_aad(table, row_id)
                    key_id, blob = self._keyring.encrypt(self._keyring.decrypt(old_key_id, bytes(old_blob), aad), aad)
                    await conn.execute(update(table).where(id_col == row_id).values(key_id=key_id, ciphertext=blob))
                    count += 1
        return count

    # -- API keys ----------------------------------------------------------------------------------------------------

    async def issue_key(self, location_id: str, *, test: bool = False) -> IssuedKey:
        for _attempt in range(5):
            new = apikeys.generate(test=test)
            record = ApiKeyRecord(
                id=new_id("key"), location_id=location_id, prefix=new.prefix, created_at=_utcnow(), revoked_at=None
            )
            try:
                async with self.write() as conn:
                    exists = (await conn.execute(select(locations.c.id).where(locations.c.id == location_id))).first()
                    if exists is None:
                        raise UnknownLocation(location_id)
                    await conn.execute(
                        insert(api_keys).values(
                            id=record.id,
                            location_id=location_id,
                            prefix=new.prefix,
                            sha256=new.sha256,
                            created_at=record.created_at,
                            revoked_at=None,
                        )
                    )
            except IntegrityError:
                continue  # a display-prefix collision: draw another key
            return IssuedKey(record=record, secret=new.secret)
        raise RuntimeError("could not draw a unique API key prefix")

    async def authenticate(self, secret: str) -> ApiKeyRecord | None:
        """Hash first, always: the lookup is by digest, so timing says nothing about how close a guess was."""
        digest = apikeys.hash_secret(secret)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.sha256 == digest, api_keys.c.revoked_at.is_(None)))
            ).first()
        return _key(row) if row is not None else None

    async def authenticate_at(self, secret: str) -> tuple[ApiKeyRecord, LocationRecord] | None:
        """`authenticate` and the key's location in one round trip (every API request asks for both)."""
        digest = apikeys.hash_secret(secret)
        k = api_keys.c
        query = (
            select(k.id.label("key_id"), k.prefix, k.created_at.label("key_created_at"), k.revoked_at, locations)
            .join_from(api_keys, locations, k.location_id == locations.c.id)
            .where(k.sha256 == digest, k.revoked_at.is_(None))
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        key = ApiKeyRecord(
            id=row.key_id, location_id=row.id, prefix=row.prefix, created_at=row.key_created_at, revoked_at=None
        )
        return key, _location(row)

    async def revoke_key(self, prefix: str) -> int:
        async with self.write() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_utcnow())
            )
        return int(result.rowcount)

    async def list_keys(self, location_id: str | None = None) -> list[ApiKeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if location_id is not None:
            query = query.where(api_keys.c.location_id == location_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_key(row) for row in rows]

    # -- idempotency -------------------------------------------------------------------------------------------------

    async def idem_begin(
        self,
        scope: IdempotencyScope,
        fingerprint: str,
        *,
        now: datetime,
        lock_seconds: int = 120,
        ttl_seconds: int = 86400,
    ) -> IdemStarted | IdemReplay | IdemInFlight | IdemMismatch:
        """Insert-or-conflict on the unique scope decides the race; the loser reads the winner's row under a lock."""
        fresh = {
            "fingerprint": fingerprint,
            "state": IN_FLIGHT,
            "status_code": None,
            "content_type": None,
            "body": None,
            "created_at": now,
            "locked_until": now + timedelta(seconds=lock_seconds),
            "expires_at": now + timedelta(seconds=ttl_seconds),
        }
        keys = _scope_params(scope)
        row_values = {"api_key_id": scope.api_key_id, "method": scope.method, "route": scope.route, "key": scope.key}
        insert_fresh = self._idem_insert

        def begin(conn: Connection) -> IdemStarted | IdemReplay | IdemInFlight | IdemMismatch | None:
            # RETURNING, not rowcount: psycopg's async cursor does not report rowcount for ON CONFLICT inserts.
            if conn.execute(insert_fresh, {**row_values, **fresh}).first() is not None:
                return IdemStarted()
            row = conn.execute(_IDEM_SELECT, keys).first()
            if row is None:
                return None  # released or purged between our insert and select: try again
            if row.expires_at <= now:
                conn.execute(_IDEM_RENEW, {**keys, **fresh})
                return IdemStarted()
            if row.fingerprint != fingerprint:
                return IdemMismatch()
            if row.state == DONE:
                return IdemReplay(
                    status_code=int(row.status_code), content_type=str(row.content_type), body=bytes(row.body or b"")
                )
            if row.locked_until is not None and row.locked_until > now:
                return IdemInFlight()
            # The holder's lock lapsed (it crashed or hung): take the request over.
            conn.execute(_IDEM_LOCK, {**keys, "locked_until": now + timedelta(seconds=lock_seconds)})
            return IdemStarted()

        for _attempt in range(5):
            outcome = await self.run_write(begin)
            if outcome is not None:
                return outcome
        raise RuntimeError("idempotency record kept changing under us")

    async def idem_complete(
        self,
        scope: IdempotencyScope,
        *,
        status_code: int,
        content_type: str,
        body: bytes,
        now: datetime,
        also: Sequence[Callable[[Connection], object]] = (),
    ) -> None:
        """Stores the outcome; it replays for the record's full TTL counted from now. `also`: the request's other
        writes, committed in the same transaction."""
        keys = _scope_params(scope)

        def complete(conn: Connection) -> None:
            for write in also:
                write(conn)
            row = conn.execute(_IDEM_TTL, keys).first()
            if row is None:
                return
            done = {"state": DONE, "status_code": status_code, "content_type": content_type, "body": body}
            conn.execute(_IDEM_DONE, {**keys, **done, "expires_at": now + (row.expires_at - row.created_at)})

        await self.run_write(complete)

    async def idem_release(self, scope: IdempotencyScope) -> None:
        async with self.write() as conn:
            await conn.execute(
                delete(idempotency_records).where(_scope_clause(scope), idempotency_records.c.state == IN_FLIGHT)
            )

    async def purge_expired(self, now: datetime) -> int:
        async with self.write() as conn:
            result = await conn.execute(delete(idempotency_records).where(idempotency_records.c.expires_at <= now))
        return int(result.rowcount)

    # -- appointment links and audit ----------------------------------------------------------------------------------

    async def link_appointment(self, location_id: str, source: str, external_id: str, emr_appointment_id: str) -> None:
        await self.run_write(
            lambda conn: self.link_appointment_in(conn, location_id, source, external_id, emr_appointment_id)
        )

    def link_appointment_in(
        self, conn: Connection, location_id: str, source: str, external_id: str, emr_appointment_id: str
    ) -> None:
        now = _utcnow()
        stmt = self._insert(appointment_links).values(
            location_id=location_id,
            source=source,
            external_id=external_id,
            emr_appointment_id=emr_appointment_id,
            created_at=now,
            updated_at=now,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    appointment_links.c.location_id,
                    appointment_links.c.source,
                    appointment_links.c.external_id,
                ],
                set_={"emr_appointment_id": emr_appointment_id, "updated_at": now},
            )
        )

    async def find_link(self, location_id: str, source: str, external_id: str) -> str | None:
        c = appointment_links.c
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(c.emr_appointment_id).where(
                    c.location_id == location_id, c.source == source, c.external_id == external_id
                )
            )
        return str(value) if value is not None else None

    async def audit(self, *, location_id: str | None, actor: str, action: str, target: str | None) -> None:
        async with self.write() as conn:
            await conn.execute(
                insert(audit_log).values(
                    at=_utcnow(), location_id=location_id, actor=actor, action=action, target=target
                )
            )

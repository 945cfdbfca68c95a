"""The store on SQLite and PostgreSQL: keys stored as hashes only, encrypted credentials, idempotency under races."""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from gateway.crypto import DecryptError, Keyring
from gateway.storage.engines import make_sync_engine
from gateway.storage.errors import MissingCredentials, UnknownLocation
from gateway.storage.migrate import head_revision, upgrade
from gateway.storage.records import (
    IdemInFlight,
    IdemMismatch,
    IdempotencyScope,
    IdemReplay,
    IdemStarted,
    LocationRecord,
)
from gateway.storage.store import Store
from gateway.storage.tables import emr_credentials, metadata

SETTINGS = b'{"business_id": "1"}'
CREDENTIALS = b'{"api_key": "MS0xMjM0-plaintext-cliniko-key-au2", "user_agent_email": "ops@example.com"}'
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def new_location(store: Store, name: str = "North", credentials: bytes = CREDENTIALS) -> LocationRecord:
    return await store.create_location(
        emr="cliniko", name=name, settings_json=SETTINGS, credentials_json=credentials, time_zone="Australia/Sydney"
    )


async def all_cells(store: Store) -> list[object]:
    """Every value in every table, to search for things that must not be stored."""
    cells: list[object] = []
    async with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                cells.extend(row)
    return cells


def contains(cells: list[object], needle: str) -> bool:
    raw = needle.encode()
    for cell in cells:
        if isinstance(cell, str) and needle in cell:
            return True
        if isinstance(cell, bytes | memoryview) and raw in bytes(cell):
            return True
    return False


# -- migrations --------------------------------------------------------------------------------------------------


def test_migrations_are_idempotent_and_match_the_table_definitions(database_url: str) -> None:
    upgrade(database_url)  # a second run is a no-op
    engine = make_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert context.get_current_revision() == head_revision()
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def _fresh_database(database_url: str, tmp_path: Path) -> tuple[str, str | None]:
    """An empty, never-migrated database on the same backend (and the admin URL to drop it, on PostgreSQL)."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'fresh.db'}", None
    url = make_url(database_url)
    name = f"egw_fresh_{uuid.uuid4().hex[:8]}"
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False), admin


def test_two_concurrent_migrations_both_succeed(database_url: str, tmp_path: Path) -> None:
    fresh, admin = _fresh_database(database_url, tmp_path)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(fresh)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        engine = make_sync_engine(fresh)
        try:
            with engine.connect() as conn:
                assert MigrationContext.configure(conn).get_current_revision() == head_revision()
        finally:
            engine.dispose()
    finally:
        if admin is not None:
            with psycopg.connect(admin, autocommit=True) as admin_conn:
                admin_conn.execute(f'DROP DATABASE IF EXISTS "{make_url(fresh).database}" WITH (FORCE)')


async def test_store_reports_its_schema_revision_and_answers_ping(store: Store) -> None:
    await store.ping()
    assert await store.schema_revision() == head_revision()


# -- locations and credentials --------------------------------------------------------------------------------------


async def test_locations_round_trip(store: Store) -> None:
    north = await new_location(store, "North")
    south = await new_location(store, "South")
    assert north.id.startswith("loc_")
    assert north.id != south.id
    assert await store.get_location(north.id) == north
    assert await store.get_location("loc_missing") is None
    assert [loc.name for loc in await store.list_locations()] == ["North", "South"]
    assert (await store.get_location(south.id)) is not None


async def test_credentials_are_encrypted_and_bound_to_their_location(store: Store, keyring: Keyring) -> None:
    north = await new_location(store, "North")
    south = await new_location(store, "South", credentials=b'{"api_key": "south-key", "user_agent_email": "a@b.co"}')
    assert await store.get_credentials(north.id) == CREDENTIALS

    cells = await all_cells(store)
    assert not contains(cells, "plaintext-cliniko-key")
    assert not contains(cells, "ops@example.com")

    # Copy north's ciphertext onto south's row: it must not decrypt there.
    async with store.write() as conn:
        row = (await conn.execute(select(emr_credentials).where(emr_credentials.c.location_id == north.id))).one()
        await conn.execute(
            update(emr_credentials)
            .where(emr_credentials.c.location_id == south.id)
            .values(key_id=row.key_id, ciphertext=row.ciphertext)
        )
    with pytest.raises(DecryptError):
        await store.get_credentials(south.id)

    await store.set_credentials(south.id, b'{"api_key": "replaced"}')
    assert await store.get_credentials(south.id) == b'{"api_key": "replaced"}'
    with pytest.raises(UnknownLocation):
        await store.set_credentials("loc_missing", b"{}")
    with pytest.raises(MissingCredentials):
        await store.get_credentials("loc_missing")


async def test_credentials_do_not_open_with_another_master_key(database_url: str, store: Store) -> None:
    north = await new_location(store)
    other = await Store.open(database_url, Keyring.generate())
    try:
        with pytest.raises(DecryptError):
            await other.get_credentials(north.id)
    finally:
        await other.close()


async def test_rotate_master_key_re_encrypts_everything_under_the_primary(database_url: str, store: Store) -> None:
    old_raw, new_raw = secrets.token_bytes(32), secrets.token_bytes(32)
    old, new = Keyring([("k1", old_raw)]), Keyring([("k2", new_raw)])
    first = await Store.open(database_url, old)
    try:
        locs = [await new_location(first, f"L{i}") for i in range(3)]
    finally:
        await first.close()

    # Operators list the new key first and keep the old one until rotation is done.
    both = Keyring([("k2", new_raw), ("k1", old_raw)])
    rotating = await Store.open(database_url, both)
    try:
        assert await rotating.rotate_master_key() == 3
    finally:
        await rotating.close()

    async with store.engine.connect() as conn:
        assert set((await conn.execute(select(emr_credentials.c.key_id))).scalars()) == {"k2"}
    only_new = await Store.open(database_url, new)
    only_old = await Store.open(database_url, old)
    try:
        for loc in locs:
            assert await only_new.get_credentials(loc.id) == CREDENTIALS
            with pytest.raises(DecryptError):
                await only_old.get_credentials(loc.id)
    finally:
        await only_new.close()
        await only_old.close()


# -- API keys ---------------------------------------------------------------------------------------------------------


async def test_only_the_hash_of_a_key_is_stored(database_url: str, store: Store) -> None:
    loc = await new_location(store)
    issued = await store.issue_key(loc.id)
    assert issued.secret.startswith("egw_live_")
    assert len(issued.secret) > 50
    assert issued.record.prefix == issued.secret[: len(issued.record.prefix)]
    assert issued.secret not in repr(issued)

    cells = await all_cells(store)
    assert not contains(cells, issued.secret)
    assert not contains(cells, issued.secret[len(issued.record.prefix) :])
    if database_url.startswith("sqlite"):
        await store.close()  # flush the WAL into the file before reading it raw
        path = Path(make_url(database_url).database or "")
        for candidate in (path, Path(f"{path}-wal")):
            if candidate.exists():
                assert issued.secret.encode() not in candidate.read_bytes()


async def test_authenticate_and_immediate_revocation(store: Store) -> None:
    loc = await new_location(store)
    first = await store.issue_key(loc.id)
    second = await store.issue_key(loc.id)
    test_key = await store.issue_key(loc.id, test=True)
    assert test_key.secret.startswith("egw_test_")
    assert test_key.record.test
    assert not first.record.test

    found = await store.authenticate(first.secret)
    assert found is not None
    assert found.id == first.record.id
    assert found.location_id == loc.id
    assert await store.authenticate(first.secret + "x") is None
    assert await store.authenticate("") is None
    assert await store.authenticate("egw_live_" + "a" * 52) is None

    assert await store.revoke_key(first.record.prefix) == 1
    assert await store.authenticate(first.secret) is None
    assert (await store.authenticate(second.secret)) is not None  # the other keys keep working
    assert await store.revoke_key(first.record.prefix) == 0
    assert await store.revoke_key("egw_live_nothing") == 0

    listed = {k.prefix: k for k in await store.list_keys(loc.id)}
    assert set(listed) == {first.record.prefix, second.record.prefix, test_key.record.prefix}
    assert listed[first.record.prefix].revoked_at is not None
    assert listed[second.record.prefix].revoked_at is None
    assert await store.list_keys("loc_other") == []
    assert len(await store.list_keys()) == 3
    with pytest.raises(UnknownLocation):
        await store.issue_key("loc_missing")


# -- idempotency ------------------------------------------------------------------------------------------------------


async def _scope(store: Store, key: str = "idem-1") -> IdempotencyScope:
    loc = await new_location(store)
    issued = await store.issue_key(loc.id)
    return IdempotencyScope(api_key_id=issued.record.id, method="POST", route="/v1/appointments", key=key)


async def test_replay_mismatch_and_in_flight(store: Store) -> None:
    scope = await _scope(store)
    assert await store.idem_begin(scope, "fp-a", now=NOW) == IdemStarted()
    assert await store.idem_begin(scope, "fp-a", now=NOW + timedelta(seconds=1)) == IdemInFlight()
    assert await store.idem_begin(scope, "fp-b", now=NOW + timedelta(seconds=1)) == IdemMismatch()

    body = b'{"id": "123", "status": "booked"}'
    await store.idem_complete(scope, status_code=201, content_type="application/json", body=body, now=NOW)
    replay = await store.idem_begin(scope, "fp-a", now=NOW + timedelta(hours=23))
    assert replay == IdemReplay(status_code=201, content_type="application/json", body=body)
    assert await store.idem_begin(scope, "fp-b", now=NOW + timedelta(hours=23)) == IdemMismatch()

    # The same key under another route or method is another record.
    other = IdempotencyScope(api_key_id=scope.api_key_id, method="PATCH", route=scope.route, key=scope.key)
    assert await store.idem_begin(other, "fp-b", now=NOW) == IdemStarted()


async def test_expiry_lock_takeover_release_and_purge(store: Store) -> None:
    scope = await _scope(store)
    assert await store.idem_begin(scope, "fp", now=NOW, lock_seconds=60, ttl_seconds=3600) == IdemStarted()
    # The holder died: once its lock lapses, a retry takes the request over.
    assert await store.idem_begin(scope, "fp", now=NOW + timedelta(seconds=59), lock_seconds=60) == IdemInFlight()
    assert await store.idem_begin(scope, "fp", now=NOW + timedelta(seconds=61), lock_seconds=60) == IdemStarted()
    assert await store.idem_begin(scope, "fp", now=NOW + timedelta(seconds=62), lock_seconds=60) == IdemInFlight()

    await store.idem_release(scope)  # nothing was written: the key is free again
    assert await store.idem_begin(scope, "other", now=NOW + timedelta(seconds=63), ttl_seconds=3600) == IdemStarted()
    done_at = NOW + timedelta(seconds=70)
    await store.idem_complete(scope, status_code=422, content_type="application/problem+json", body=b"{}", now=done_at)
    await store.idem_release(scope)  # a finished record is not released
    assert isinstance(await store.idem_begin(scope, "other", now=done_at + timedelta(seconds=3599)), IdemReplay)

    # Past its TTL the record counts as absent, even for another body.
    assert await store.idem_begin(scope, "third", now=done_at + timedelta(seconds=3601)) == IdemStarted()

    stale = await _scope(store, key="stale")
    assert await store.idem_begin(stale, "fp", now=NOW, ttl_seconds=10) == IdemStarted()
    assert await store.purge_expired(NOW + timedelta(seconds=11)) == 1
    assert await store.idem_begin(stale, "fp2", now=NOW + timedelta(seconds=12)) == IdemStarted()


async def test_concurrent_begins_with_one_key_start_exactly_once(database_url: str, store: Store) -> None:
    scope = await _scope(store)
    # A second Store stands for another process or replica sharing the database.
    other = await Store.open(database_url, Keyring.generate())
    try:
        stores = [store, other] * 4
        outcomes = await asyncio.gather(*(s.idem_begin(scope, "fp", now=NOW) for s in stores))
    finally:
        await other.close()
    assert sum(isinstance(o, IdemStarted) for o in outcomes) == 1
    assert sum(isinstance(o, IdemInFlight) for o in outcomes) == len(stores) - 1


async def test_concurrent_takeover_of_an_expired_lock_starts_once(database_url: str, store: Store) -> None:
    scope = await _scope(store)
    assert await store.idem_begin(scope, "fp", now=NOW, lock_seconds=5) == IdemStarted()
    later = NOW + timedelta(seconds=30)
    other = await Store.open(database_url, Keyring.generate())
    try:
        outcomes = await asyncio.gather(*(s.idem_begin(scope, "fp", now=later) for s in [store, other] * 3))
    finally:
        await other.close()
    assert sum(isinstance(o, IdemStarted) for o in outcomes) == 1


# -- links and audit -------------------------------------------------------------------------------------------------


async def test_appointment_links(store: Store) -> None:
    north = await new_location(store, "North")
    south = await new_location(store, "South")
    await store.link_appointment(north.id, "ghl", "ghl-1", "emr-100")
    assert await store.find_link(north.id, "ghl", "ghl-1") == "emr-100"
    assert await store.find_link(south.id, "ghl", "ghl-1") is None  # confined to its location
    assert await store.find_link(north.id, "other", "ghl-1") is None
    await store.link_appointment(north.id, "ghl", "ghl-1", "emr-200")
    assert await store.find_link(north.id, "ghl", "ghl-1") == "emr-200"


async def test_audit_log_records_actions(store: Store) -> None:
    loc = await new_location(store)
    await store.audit(location_id=loc.id, actor="cli:ops", action="api_key.issue", target="egw_live_abcdefgh")
    await store.audit(location_id=None, actor="cli:ops", action="master_key.rotate", target=None)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT actor, action, target FROM audit_log ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [
        ("cli:ops", "api_key.issue", "egw_live_abcdefgh"),
        ("cli:ops", "master_key.rotate", None),
    ]

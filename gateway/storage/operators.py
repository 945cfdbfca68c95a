"""Console operators, their server-side sessions and sign-in throttling (storage only: hashing and the rules live in
`gateway.usecases.operators`).

A session row is keyed by a SHA-256 of the cookie's token, so reading the table opens no session; a failure row by a
SHA-256 of the normalized e-mail, so an address typed at the sign-in form is not stored as such.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from gateway.storage.ids import new_id
from gateway.storage.store import Store
from gateway.storage.tables import login_failures, operator_sessions, operators


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OperatorExists(Exception):
    """An operator with this e-mail exists already."""


class OperatorRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    created_at: datetime
    last_sign_in_at: datetime | None


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A live session and who holds it."""

    id: str  # the token's SHA-256
    operator: OperatorRecord
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime

    def __repr__(self) -> str:
        """Without the CSRF token (and the session id, the token's digest), should a record reach a log."""
        return f"SessionRecord(operator={self.operator.id!r}, expires_at={self.expires_at.isoformat()})"


class Throttle(msgspec.Struct, frozen=True, kw_only=True):
    failures: int
    window_started_at: datetime
    locked_until: datetime | None


def _operator(row: Any) -> OperatorRecord:
    return OperatorRecord(id=row.id, email=row.email, created_at=row.created_at, last_sign_in_at=row.last_sign_in_at)


# -- operators ------------------------------------------------------------------------------------------------------


async def add(store: Store, email: str, password_hash: str) -> OperatorRecord:
    now = _utcnow()
    operator_id = new_id("op")
    try:
        async with store.write() as conn:
            await conn.execute(
                insert(operators).values(
                    id=operator_id,
                    email=email,
                    password_hash=password_hash,
                    created_at=now,
                    updated_at=now,
                    last_sign_in_at=None,
                )
            )
    except IntegrityError:
        raise OperatorExists(email) from None
    return OperatorRecord(id=operator_id, email=email, created_at=now, last_sign_in_at=None)


async def set_password(store: Store, email: str, password_hash: str) -> bool:
    """A new password ends every session of the operator."""
    o = operators.c
    async with store.write() as conn:
        row = (await conn.execute(select(o.id).where(o.email == email))).first()
        if row is None:
            return False
        await conn.execute(
            update(operators).where(o.id == row.id).values(password_hash=password_hash, updated_at=_utcnow())
        )
        await conn.execute(delete(operator_sessions).where(operator_sessions.c.operator_id == row.id))
    return True


async def remove(store: Store, email: str) -> bool:
    """Its sessions go too (cascade, and explicitly for SQLite connections without foreign keys)."""
    o = operators.c
    async with store.write() as conn:
        row = (await conn.execute(select(o.id).where(o.email == email))).first()
        if row is None:
            return False
        await conn.execute(delete(operator_sessions).where(operator_sessions.c.operator_id == row.id))
        await conn.execute(delete(operators).where(o.id == row.id))
    return True


async def list_all(store: Store) -> list[OperatorRecord]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(operators).order_by(operators.c.email))).all()
    return [_operator(row) for row in rows]


async def credentials(store: Store, email: str) -> tuple[OperatorRecord, str] | None:
    """The operator and their password hash, for checking a sign-in."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(operators).where(operators.c.email == email))).first()
    return (_operator(row), str(row.password_hash)) if row is not None else None


async def update_hash(store: Store, operator_id: str, password_hash: str) -> None:
    """A rehash after sign-in (argon2's parameters were raised): sessions stay."""
    async with store.write() as conn:
        await conn.execute(
            update(operators)
            .where(operators.c.id == operator_id)
            .values(password_hash=password_hash, updated_at=_utcnow())
        )


# -- sessions -------------------------------------------------------------------------------------------------------


async def open_session(
    store: Store, operator_id: str, session_id: str, csrf_token: str, *, expires_at: datetime
) -> None:
    """Also stamps the sign-in, and deletes every expired session and every day-old failure count that holds no
    lock (a successful sign-in is rare enough to pay for the sweep)."""
    now = _utcnow()
    s, f = operator_sessions.c, login_failures.c
    async with store.write() as conn:
        await conn.execute(delete(operator_sessions).where(s.expires_at < now))
        await conn.execute(
            delete(login_failures).where(
                f.window_started_at < now - timedelta(days=1), or_(f.locked_until.is_(None), f.locked_until < now)
            )
        )
        await conn.execute(
            insert(operator_sessions).values(
                id=session_id,
                operator_id=operator_id,
                csrf_token=csrf_token,
                created_at=now,
                last_seen_at=now,
                expires_at=expires_at,
            )
        )
        await conn.execute(update(operators).where(operators.c.id == operator_id).values(last_sign_in_at=now))


async def get_session(store: Store, session_id: str, now: datetime) -> SessionRecord | None:
    s, o = operator_sessions.c, operators.c
    query = (
        select(
            s.id,
            s.csrf_token,
            s.created_at.label("session_created_at"),
            s.last_seen_at,
            s.expires_at,
            o.id.label("operator_id"),
            o.email,
            o.created_at,
            o.last_sign_in_at,
        )
        .join_from(operator_sessions, operators, o.id == s.operator_id)
        .where(s.id == session_id, s.expires_at > now)
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    operator = OperatorRecord(
        id=row.operator_id, email=row.email, created_at=row.created_at, last_sign_in_at=row.last_sign_in_at
    )
    return SessionRecord(
        id=row.id,
        operator=operator,
        csrf_token=row.csrf_token,
        created_at=row.session_created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
    )


async def touch_session(store: Store, session_id: str, now: datetime, expires_at: datetime) -> None:
    s = operator_sessions.c
    async with store.write() as conn:
        await conn.execute(
            update(operator_sessions).where(s.id == session_id).values(last_seen_at=now, expires_at=expires_at)
        )


async def close_session(store: Store, session_id: str) -> None:
    async with store.write() as conn:
        await conn.execute(delete(operator_sessions).where(operator_sessions.c.id == session_id))


# -- sign-in throttling ---------------------------------------------------------------------------------------------


async def throttle(store: Store, email_sha256: str) -> Throttle | None:
    f = login_failures.c
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(login_failures).where(f.email_sha256 == email_sha256))).first()
    if row is None:
        return None
    return Throttle(failures=int(row.failures), window_started_at=row.window_started_at, locked_until=row.locked_until)


async def note_failure(
    store: Store, email_sha256: str, now: datetime, *, window: timedelta, limit: int, lock: timedelta
) -> Throttle:
    """Counts a failure in the e-mail's window (a new window once the old one is over); the `limit`-th failure within
    one window locks the e-mail for `lock` and starts counting afresh."""
    f = login_failures.c
    async with store.write() as conn:
        # The row exists first (two replicas' first failures for one e-mail meet here), then is locked and counted.
        stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(login_failures)
        await conn.execute(
            stmt.values(
                email_sha256=email_sha256, failures=0, window_started_at=now, locked_until=None
            ).on_conflict_do_nothing(index_elements=["email_sha256"])
        )
        row = (await conn.execute(select(login_failures).where(f.email_sha256 == email_sha256).with_for_update())).one()
        if row.window_started_at <= now - window:
            failures, started = 1, now
        else:
            failures, started = int(row.failures) + 1, row.window_started_at
        locked_until = row.locked_until
        if failures >= limit:
            failures, started, locked_until = 0, now, now + lock
        await conn.execute(
            update(login_failures)
            .where(f.email_sha256 == email_sha256)
            .values(failures=failures, window_started_at=started, locked_until=locked_until)
        )
    return Throttle(failures=failures, window_started_at=started, locked_until=locked_until)


async def clear_failures(store: Store, email_sha256: str) -> None:
    async with store.write() as conn:
        await conn.execute(delete(login_failures).where(login_failures.c.email_sha256 == email_sha256))

"""Console operators: adding them (argon2id hashes), signing in with throttling, server-side sessions.

Sign-in answers the same for an unknown e-mail and a wrong password, and costs about the same time (an unknown
e-mail is checked against a dummy hash). Five failures for one e-mail within 15 minutes lock it for 15 minutes,
known or not; while locked nothing is checked. A session is a random token in an HttpOnly cookie; the database
holds only its SHA-256, so sessions survive a restart and work on every replica. Sessions end after an hour
without use, twelve hours after sign-in, at sign-out, or when the operator is removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from datetime import datetime, timedelta
from functools import cache

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.storage import operators as db
from gateway.storage.operators import OperatorExists, OperatorRecord, SessionRecord
from gateway.storage.store import Store
from gateway.times import now_utc

FAILURE_WINDOW = timedelta(minutes=15)
FAILURE_LIMIT = 5
LOCK = timedelta(minutes=15)
SESSION_IDLE = timedelta(hours=1)
SESSION_MAX = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=1)  # a session's last use is written at most this often
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte of "password" is a denial of service, not a password
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s.]{1,63}$")

__all__ = ["OperatorExists", "OperatorRecord", "SessionRecord"]


class InvalidOperator(ValueError):
    """An e-mail or password that cannot be an operator's (the message says why; it never quotes the password)."""


class SignedIn(msgspec.Struct, frozen=True, kw_only=True):
    operator: OperatorRecord
    token: str  # for the cookie: shown to the browser once, stored only as a SHA-256
    csrf_token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"SignedIn(operator={self.operator.email!r}, token=<redacted>)"


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """`locked_until` set: too many failures for this e-mail; otherwise the e-mail or the password is wrong."""

    locked_until: datetime | None = None


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with argon2-cffi's current defaults (RFC 9106's low-memory profile)


@cache
def _dummy_hash() -> str:
    """What an unknown e-mail is checked against, so it costs what a wrong password costs."""
    return _hasher().hash(secrets.token_urlsafe(16))


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidOperator("an operator's e-mail looks like name@example.com")
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidOperator(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidOperator(f"the password may have at most {MAX_PASSWORD} characters")
    if password.strip() != password or "\n" in password:
        raise InvalidOperator("the password must not start or end with white space, nor hold a line break")
    return password


def generate_password() -> str:
    """For the demo operator: 24 URL-safe characters (144 random bits)."""
    return secrets.token_urlsafe(18)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _email_key(raw: str) -> str:
    return hashlib.sha256(raw.strip().lower().encode()).hexdigest()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def add_operator(store: Store, email: str, password: str) -> OperatorRecord:
    """Raises InvalidOperator or OperatorExists."""
    normalized = normalize_email(email)
    hashed = await asyncio.to_thread(_hasher().hash, check_password(password))
    return await db.add(store, normalized, hashed)


async def set_password(store: Store, email: str, password: str) -> bool:
    """A new password for an existing operator; every session of theirs ends."""
    hashed = await asyncio.to_thread(_hasher().hash, check_password(password))
    return await db.set_password(store, normalize_email(email), hashed)


async def remove_operator(store: Store, email: str) -> bool:
    return await db.remove(store, normalize_email(email))


async def list_operators(store: Store) -> list[OperatorRecord]:
    return await db.list_all(store)


async def sign_in(store: Store, email: str, password: str) -> SignedIn | Refused:
    now = now_utc()
    key = _email_key(email)
    password = password[:MAX_PASSWORD]
    throttle = await db.throttle(store, key)
    if throttle is not None and throttle.locked_until is not None and throttle.locked_until > now:
        await asyncio.to_thread(_verify, _dummy_hash(), password)  # the same cost as any other answer
        return Refused(locked_until=throttle.locked_until)
    try:
        found = await db.credentials(store, normalize_email(email))
    except InvalidOperator:
        found = None
    stored = found[1] if found is not None else _dummy_hash()
    matches = await asyncio.to_thread(_verify, stored, password)  # always: an unknown e-mail costs the same
    if found is None or not matches:
        counted = await db.note_failure(store, key, now, window=FAILURE_WINDOW, limit=FAILURE_LIMIT, lock=LOCK)
        locked = counted.locked_until if counted.locked_until is not None and counted.locked_until > now else None
        return Refused(locked_until=locked)
    operator, password_hash = found
    if throttle is not None:
        await db.clear_failures(store, key)
    if _hasher().check_needs_rehash(password_hash):
        await db.update_hash(store, operator.id, await asyncio.to_thread(_hasher().hash, password))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires_at = now + SESSION_IDLE
    await db.open_session(store, operator.id, token_digest(token), csrf, expires_at=expires_at)
    return SignedIn(operator=operator, token=token, csrf_token=csrf, expires_at=expires_at)


async def session_of(store: Store, token: str | None) -> SessionRecord | None:
    """The live session a cookie's token opens, its idle expiry pushed on (at most once a minute)."""
    if not token or len(token) > 128:
        return None
    now = now_utc()
    session = await db.get_session(store, token_digest(token), now)
    if session is None:
        return None
    if now - session.last_seen_at >= TOUCH_EVERY:
        expires_at = min(now + SESSION_IDLE, session.created_at + SESSION_MAX)
        await db.touch_session(store, session.id, now, expires_at)
        session = msgspec.structs.replace(session, last_seen_at=now, expires_at=expires_at)
    return session


async def sign_out(store: Store, token: str | None) -> None:
    if token and len(token) <= 128:
        await db.close_session(store, token_digest(token))

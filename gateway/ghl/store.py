"""GHL storage: path tokens, GHL location links and the per-location idempotency anchor. Takes the shared Store."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

import msgspec
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.apikeys import hash_secret
from gateway.ghl import tokens
from gateway.storage.errors import UnknownLocation
from gateway.storage.ids import new_id
from gateway.storage.records import ApiKeyRecord, LocationRecord
from gateway.storage.store import Store, _key, _location
from gateway.storage.tables import api_keys, ghl_tokens, idempotency_records, locations

ANCHOR_ID_PREFIX = "ghl_"
ANCHOR_KEY_PREFIX = "ghl:"  # + the 26-character location suffix: 30 of the 32 allowed


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    location_id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class IssuedToken(msgspec.Struct, frozen=True, kw_only=True):
    record: TokenRecord
    secret: str

    def __repr__(self) -> str:
        return f"IssuedToken(record={self.record!r}, secret=<redacted>)"


class GhlLinkConflict(Exception):
    """Another location already answers for this GHL location id."""


def _now() -> datetime:
    return datetime.now(UTC)


def _token(row: object) -> TokenRecord:
    return TokenRecord(
        id=row.id,  # type: ignore[attr-defined]
        location_id=row.location_id,  # type: ignore[attr-defined]
        prefix=row.prefix,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        revoked_at=row.revoked_at,  # type: ignore[attr-defined]
    )


# -- path tokens -------------------------------------------------------------------------------------------------------


async def issue_token(store: Store, location_id: str) -> IssuedToken:
    for _attempt in range(5):
        new = tokens.generate()
        record = TokenRecord(
            id=new_id("ght"), location_id=location_id, prefix=new.prefix, created_at=_now(), revoked_at=None
        )
        try:
            async with store.write() as conn:
                exists = (await conn.execute(select(locations.c.id).where(locations.c.id == location_id))).first()
                if exists is None:
                    raise UnknownLocation(location_id)
                await conn.execute(
                    insert(ghl_tokens).values(
                        id=record.id,
                        location_id=location_id,
                        prefix=new.prefix,
                        sha256=new.sha256,
                        created_at=record.created_at,
                        revoked_at=None,
                    )
                )
        except IntegrityError:
            continue  # display-prefix collision: draw again
        return IssuedToken(record=record, secret=new.secret)
    raise RuntimeError("could not draw a unique GHL token prefix")


async def authenticate_token(store: Store, secret: str) -> TokenRecord | None:
    if not tokens.looks_like_token(secret):
        return None
    digest = hash_secret(secret)
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                select(ghl_tokens).where(ghl_tokens.c.sha256 == digest, ghl_tokens.c.revoked_at.is_(None))
            )
        ).first()
    return _token(row) if row is not None else None


async def revoke_token(store: Store, prefix: str) -> int:
    async with store.write() as conn:
        result = await conn.execute(
            update(ghl_tokens)
            .where(ghl_tokens.c.prefix == prefix, ghl_tokens.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
    return int(result.rowcount)


async def list_tokens(store: Store, location_id: str | None = None) -> list[TokenRecord]:
    query = select(ghl_tokens).order_by(ghl_tokens.c.created_at, ghl_tokens.c.id)
    if location_id is not None:
        query = query.where(ghl_tokens.c.location_id == location_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_token(row) for row in rows]


# -- GHL location links ------------------------------------------------------------------------------------------------


async def link_ghl_location(store: Store, location_id: str, ghl_location_id: str | None) -> LocationRecord:
    """One GHL location answers to one gateway location, so a marketplace event can never reach two EMRs."""
    async with store.write() as conn:
        row = (await conn.execute(select(locations).where(locations.c.id == location_id))).first()
        if row is None:
            raise UnknownLocation(location_id)
        if ghl_location_id is not None:
            other = (
                await conn.execute(
                    select(locations.c.id).where(
                        locations.c.ghl_location_id == ghl_location_id, locations.c.id != location_id
                    )
                )
            ).first()
            if other is not None:
                raise GhlLinkConflict(str(other.id))
        await conn.execute(
            update(locations).where(locations.c.id == location_id).values(ghl_location_id=ghl_location_id)
        )
        row = (await conn.execute(select(locations).where(locations.c.id == location_id))).first()
    assert row is not None
    return _location(row)


async def location_for_ghl(store: Store, ghl_location_id: str) -> LocationRecord | None:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(select(locations).where(locations.c.ghl_location_id == ghl_location_id).limit(1))
        ).first()
    return _location(row) if row is not None else None


# -- idempotency anchor ------------------------------------------------------------------------------------------------


async def anchor_key(store: Store, location_id: str) -> ApiKeyRecord:
    """The owner of a location's GHL idempotency records, whichever way GHL authenticated (header key, path token,
    marketplace signature), so a retry through another path still dedupes. It is an `api_keys` row because the
    records reference that table; it is born revoked and its hash has no known preimage, so it never authenticates.
    """
    anchor_id = ANCHOR_ID_PREFIX + location_id.removeprefix("loc_")
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == anchor_id))).first()
    if row is not None:
        return _key(row)
    now = _now()
    unguessable = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    try:
        async with store.write() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=anchor_id,
                    location_id=location_id,
                    prefix=(ANCHOR_KEY_PREFIX + location_id.removeprefix("loc_"))[:32],
                    sha256=unguessable,
                    created_at=now,
                    revoked_at=now,
                )
            )
    except IntegrityError:
        pass  # a concurrent request created it
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == anchor_id))).first()
    if row is None:
        raise UnknownLocation(location_id)
    return _key(row)


async def forget_superseded(store: Store, anchor_id: str, key_prefix: str, keep: str) -> None:
    """After a reschedule succeeds, earlier reschedules of the same GHL appointment stop replaying: moving A->B->A
    must move it back to A, not replay the first answer."""
    t = idempotency_records.c
    async with store.write() as conn:
        await conn.execute(
            delete(idempotency_records).where(
                and_(t.api_key_id == anchor_id, t.key.startswith(key_prefix, autoescape=True), t.key != keep)
            )
        )

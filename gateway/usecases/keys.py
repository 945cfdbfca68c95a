"""API keys of a location: issued (the plaintext returned once, never stored) and revoked, each audited. Shared by
`emr-gateway keys` and the console."""

from __future__ import annotations

from gateway.storage.records import ApiKeyRecord, IssuedKey
from gateway.storage.store import Store


async def issue_key(store: Store, location_id: str, *, test: bool, actor: str) -> IssuedKey:
    """Raises gateway.storage.errors.UnknownLocation."""
    issued = await store.issue_key(location_id, test=test)
    await store.audit(location_id=location_id, actor=actor, action="api_key.issue", target=issued.record.prefix)
    return issued


async def revoke_key(store: Store, prefix: str, *, actor: str, location_id: str | None = None) -> int:
    """Revokes the active key with this display prefix (refused by every replica within EGW_AUTH_CACHE_SECONDS);
    with `location_id`, only if it is that location's. Returns how many keys it revoked (0 or 1)."""
    if location_id is not None and not any(
        key.prefix == prefix and key.revoked_at is None for key in await store.list_keys(location_id)
    ):
        return 0
    revoked = await store.revoke_key(prefix)
    if revoked:
        await store.audit(location_id=location_id, actor=actor, action="api_key.revoke", target=prefix)
    return revoked


async def list_keys(store: Store, location_id: str | None = None) -> list[ApiKeyRecord]:
    return await store.list_keys(location_id)

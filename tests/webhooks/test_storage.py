"""The webhook store on both backends: leases, lost leases, secret sealing, and master-key rotation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from gateway.crypto import Keyring
from gateway.storage.store import Store
from gateway.storage.tables import deliveries, webhook_endpoints
from gateway.storage.webhooks import Outcome, WebhookStore
from gateway.webhooks.outbox import publish_now
from schemas.webhooks import CreateWebhook, EventType
from tests.webhooks.conftest import sample_event


async def _location(store: Store) -> str:
    loc = await store.create_location(
        emr="cliniko", name="Site", settings_json=b"{}", credentials_json=b"{}", time_zone="UTC"
    )
    return loc.id


async def test_claims_are_disjoint_and_a_lapsed_lease_is_reclaimed(store: Store) -> None:
    webhooks = WebhookStore(store)
    location_id = await _location(store)
    endpoint, _secret = await webhooks.create_endpoint(location_id, CreateWebhook(url="https://example.com/hook"))
    for _ in range(6):
        assert await publish_now(store, sample_event(location_id)) == 1
    a, b = await asyncio.gather(
        webhooks.claim("w1", limit=3, lease_seconds=60), webhooks.claim("w2", limit=3, lease_seconds=60)
    )
    assert len(a) + len(b) == 6
    assert not {c.delivery_id for c in a} & {c.delivery_id for c in b}
    assert await webhooks.claim("w3", limit=10, lease_seconds=60) == []  # all leased
    # w1 "dies": its lease lapses and w3 takes the delivery over; w1's late outcome is then ignored.
    async with store.write() as conn:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == a[0].delivery_id)
            .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    taken = await webhooks.claim("w3", limit=10, lease_seconds=60)
    assert [c.delivery_id for c in taken] == [a[0].delivery_id]
    assert taken[0].secrets == a[0].secrets
    assert not await webhooks.finish(a[0], "w1", Outcome(succeeded=True, status_code=200), disable_after_seconds=1e9)
    assert await webhooks.finish(taken[0], "w3", Outcome(succeeded=True, status_code=200), disable_after_seconds=1e9)
    log = await webhooks.list_deliveries(location_id, endpoint.id)
    assert log is not None
    assert [d.state for d in log].count("succeeded") == 1


async def test_secrets_are_sealed_and_survive_master_key_rotation(database_url: str) -> None:
    old = Keyring([("old", b"o" * 32)])
    store = await Store.open(database_url, old)
    try:
        webhooks = WebhookStore(store)
        location_id = await _location(store)
        endpoint, secret = await webhooks.create_endpoint(location_id, CreateWebhook(url="https://example.com/h"))
        _record, newer = (await webhooks.rotate_secret(location_id, endpoint.id, 3600)) or (None, "")
        async with store.engine.connect() as conn:
            blob = (await conn.execute(select(webhook_endpoints.c.ciphertext))).scalar_one()
        assert secret.encode() not in bytes(blob)
        assert newer.encode() not in bytes(blob)
    finally:
        await store.close()
    both = Keyring([("new", b"n" * 32), ("old", b"o" * 32)])
    rotating = await Store.open(database_url, both)
    try:
        assert await rotating.rotate_master_key() >= 2  # the location's credentials and the webhook secrets
    finally:
        await rotating.close()
    fresh = await Store.open(database_url, Keyring([("new", b"n" * 32)]))
    try:
        await publish_now(fresh, sample_event(location_id, EventType.PATIENT_UPDATED))
        [claim] = await WebhookStore(fresh).claim("w", limit=5, lease_seconds=60)
        assert claim.secrets == [newer, secret]
    finally:
        await fresh.close()

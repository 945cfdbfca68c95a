"""What an operator or an API caller does to a webhook endpoint by hand: retry a delivery, replay events, rotate the
secret, re-enable. Each is audited here, so `/v1/webhooks` and the console leave the same trace. None means the
endpoint (or delivery) is not this location's."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from gateway.storage.records import ApiKeyRecord
from gateway.storage.store import Store
from gateway.storage.webhooks import DeliveryRecord, EndpointRecord, WebhookStore

T = TypeVar("T")


def api_actor(key: ApiKeyRecord) -> str:
    """The audit log's name for an API caller: its key's display prefix (never the secret)."""
    return f"api_key:{key.prefix}"


async def _audited(
    store: Store, done: Awaitable[T | None], *, location_id: str, actor: str, action: str, target: str
) -> T | None:
    result = await done
    if result is not None:
        await store.audit(location_id=location_id, actor=actor, action=action, target=target)
    return result


async def retry_delivery(
    store: Store, location_id: str, endpoint_id: str, delivery_id: str, *, actor: str
) -> DeliveryRecord | None:
    done = WebhookStore(store).retry_delivery(location_id, endpoint_id, delivery_id)
    return await _audited(
        store, done, location_id=location_id, actor=actor, action="delivery.retry", target=delivery_id
    )


async def replay(store: Store, location_id: str, endpoint_id: str, since: datetime, *, actor: str) -> int | None:
    done = WebhookStore(store).replay(location_id, endpoint_id, since)
    return await _audited(
        store, done, location_id=location_id, actor=actor, action="webhook.replay", target=endpoint_id
    )


async def rotate_secret(
    store: Store, location_id: str, endpoint_id: str, grace_seconds: float, *, actor: str
) -> tuple[EndpointRecord, str] | None:
    done = WebhookStore(store).rotate_secret(location_id, endpoint_id, grace_seconds)
    return await _audited(
        store, done, location_id=location_id, actor=actor, action="webhook.rotate", target=endpoint_id
    )


async def enable(store: Store, location_id: str, endpoint_id: str, *, actor: str) -> EndpointRecord | None:
    done = WebhookStore(store).enable_endpoint(location_id, endpoint_id)
    return await _audited(
        store, done, location_id=location_id, actor=actor, action="webhook.enable", target=endpoint_id
    )

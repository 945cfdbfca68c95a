"""Publishing an event outside any transaction of the caller's, and waking the in-process worker to send it."""

from __future__ import annotations

from gateway.storage.outbox import publish
from gateway.storage.store import Store
from gateway.webhooks import wakeup
from schemas.webhooks import WebhookEvent


async def publish_now(store: Store, event: WebhookEvent) -> int:
    """For callers with no transaction of their own (changes made through the gateway itself)."""
    async with store.write() as conn:
        queued = await publish(conn, event)
    wakeup.notify()
    return queued

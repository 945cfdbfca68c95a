"""Outcomes are recorded a batch at a time, each row still under its own lease guard; the pipelined worker groups
answers into few transactions against a real receiver on loopback; the SSRF check is cached only briefly and every
new connection is checked again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config import GatewayConfig
from gateway.storage.store import Store
from gateway.storage.tables import deliveries, webhook_endpoints
from gateway.storage.webhooks import Finished, Lane, Outcome, WebhookStore
from gateway.webhooks.delivery import (
    CheckedResolver,
    ConnectRefused,
    Pipeline,
    TargetChecks,
    WebhookClient,
    deliver_batch,
)
from gateway.webhooks.outbox import publish_now
from gateway.webhooks.ssrf import parse_networks
from schemas.webhooks import CreateWebhook
from tests.webhooks.conftest import FAST, sample_event
from tests.webhooks.receiver import Answer, Receiver, verify


async def _endpoint(store: Store, url: str) -> tuple[WebhookStore, str, str, str]:
    loc = await store.create_location(
        emr="cliniko", name="Site", settings_json=b"{}", credentials_json=b"{}", time_zone="UTC"
    )
    webhooks = WebhookStore(store)
    endpoint, secret = await webhooks.create_endpoint(loc.id, CreateWebhook(url=url))
    return webhooks, loc.id, endpoint.id, secret


def _count_transactions(store: Store) -> Callable[[], int]:
    """Wraps the store's write transactions (and its lanes' statements) with a counter."""
    count = 0
    inner = store.write

    @asynccontextmanager
    async def counted() -> AsyncIterator[AsyncConnection]:
        nonlocal count
        count += 1
        async with inner() as conn:
            yield conn

    store.write = counted  # type: ignore[method-assign]
    return lambda: count


async def _rows(store: Store) -> dict[str, Any]:
    async with store.engine.connect() as conn:
        return {row.id: row for row in (await conn.execute(select(deliveries))).all()}


async def test_a_batch_is_recorded_in_one_transaction_and_a_lost_lease_only_skips_its_row(store: Store) -> None:
    webhooks, location_id, endpoint_id, _ = await _endpoint(store, "https://example.com/hook")
    for _ in range(8):
        await publish_now(store, sample_event(location_id))
    claims = await webhooks.claim("w1", limit=8, lease_seconds=60)
    assert len(claims) == 8
    # w1's lease on the first one lapsed and w2 took it over: w1's outcome for it must not land.
    async with store.write() as conn:
        await conn.execute(update(deliveries).where(deliveries.c.id == claims[0].delivery_id).values(locked_by="w2"))
    later = datetime.now(UTC) + timedelta(seconds=30)
    ok = Outcome(succeeded=True, status_code=200, response_body="fine\x00then")  # NUL: PostgreSQL text refuses it
    boom = Outcome(succeeded=False, status_code=500, error="HTTP 500", response_body="boom", next_attempt_at=later)
    finished = [Finished(c, ok) for c in claims[:6]] + [Finished(c, boom) for c in claims[6:]]
    transactions = _count_transactions(store)

    recorded = await webhooks.finish_many(finished, "w1", disable_after_seconds=1e9)

    assert transactions() == 1
    assert recorded.delivery_ids == {c.delivery_id for c in claims[1:]}
    rows = await _rows(store)
    taken = rows[claims[0].delivery_id]
    assert (taken.state, taken.locked_by, taken.attempts) == ("delivering", "w2", 0)
    assert Counter(rows[c.delivery_id].state for c in claims[1:]) == Counter({"succeeded": 5, "failed": 2})
    for c in claims[1:6]:
        row = rows[c.delivery_id]
        assert (row.attempts, row.last_status_code, row.locked_by, row.next_attempt_at) == (1, 200, None, None)
        assert row.last_response_body == "fine\ufffdthen"
    for c in claims[6:]:
        row = rows[c.delivery_id]
        assert (row.attempts, row.last_error, row.last_response_body) == (1, "HTTP 500", "boom")
        assert abs((row.next_attempt_at - later).total_seconds()) < 1
    # The last answers were failures: the endpoint's failing streak started with this batch.
    endpoint = await webhooks.get_endpoint(location_id, endpoint_id)
    assert endpoint is not None
    assert endpoint.failing_since is not None
    assert endpoint.enabled


async def test_a_410_in_a_batch_disables_the_endpoint_once(store: Store) -> None:
    webhooks, location_id, endpoint_id, _ = await _endpoint(store, "https://example.com/hook")
    for _ in range(3):
        await publish_now(store, sample_event(location_id))
    claims = await webhooks.claim("w1", limit=3, lease_seconds=60)
    gone = Outcome(succeeded=False, status_code=410, error="gone", next_attempt_at=datetime.now(UTC), gone=True)
    recorded = await webhooks.finish_many([Finished(c, gone) for c in claims], "w1", disable_after_seconds=1e9)
    assert recorded.disabled_endpoints == {endpoint_id}
    endpoint = await webhooks.get_endpoint(location_id, endpoint_id)
    assert endpoint is not None
    assert not endpoint.enabled
    assert "410" in (endpoint.disabled_reason or "")
    disabled = [e for e in await webhooks.list_events(location_id) if e.type.value == "endpoint.disabled"]
    assert len(disabled) == 1


async def test_on_postgresql_a_lane_claims_and_records_successes_in_one_statement_each(store: Store) -> None:
    if store.backend != "postgresql":
        pytest.skip("lanes are PostgreSQL's")
    webhooks, location_id, endpoint_id, _ = await _endpoint(store, "https://example.com/hook")
    for _ in range(5):
        await publish_now(store, sample_event(location_id))
    async with store.write() as conn:  # a streak another worker started: the successes end it
        await conn.execute(update(webhook_endpoints).values(failing_since=datetime.now(UTC)))
    lane = webhooks.lane()
    assert isinstance(lane, Lane)
    statements = 0
    fetch = lane.fetch

    async def counted(sql: str, params: dict[str, Any]) -> list[Any]:
        nonlocal statements
        statements += 1
        return await fetch(sql, params)

    lane.fetch = counted  # type: ignore[method-assign]
    transactions = _count_transactions(store)
    try:
        claims = await webhooks.claim("w1", limit=10, lease_seconds=60, lane=lane)
        assert len(claims) == 5
        assert all(c.secrets for c in claims)
        async with store.write() as conn:
            await conn.execute(
                update(deliveries).where(deliveries.c.id == claims[0].delivery_id).values(locked_by="w2")
            )
        ok = Outcome(succeeded=True, status_code=204, response_body="")
        recorded = await webhooks.finish_many(
            [Finished(c, ok) for c in claims], "w1", disable_after_seconds=1e9, lane=lane
        )
    finally:
        await lane.close()
    assert statements == 2
    assert transactions() == 1  # the test's own take-over
    assert recorded.delivery_ids == {c.delivery_id for c in claims[1:]}
    rows = await _rows(store)
    assert rows[claims[0].delivery_id].state == "delivering"
    assert {rows[c.delivery_id].state for c in claims[1:]} == {"succeeded"}
    endpoint = await webhooks.get_endpoint(location_id, endpoint_id)
    assert endpoint is not None
    assert endpoint.failing_since is None


async def test_the_worker_records_answers_in_groups_and_sends_each_event_once(store: Store, receiver: Receiver) -> None:
    """Against a real receiver: 60 deliveries, a batch of 20, a 100 ms answer. One transaction per delivery (the
    old way) would be 60 records; answers that arrive while a record runs are written together by the next one."""
    webhooks, location_id, _endpoint_id, secret = await _endpoint(store, receiver.url)
    events = [sample_event(location_id) for _ in range(60)]
    for event in events:
        await publish_now(store, event)
    receiver.answer = Answer(status=200, delay=0.1)
    config = GatewayConfig(**{"database_url": "unused", **FAST, "webhook_batch_size": 20})  # type: ignore[arg-type]
    records = Counter[int]()
    finish_many = webhooks.finish_many

    async def counted(finished: Any, *args: Any, **kwargs: Any) -> Any:
        records[len(finished)] += 1
        return await finish_many(finished, *args, **kwargs)

    webhooks.finish_many = counted  # type: ignore[method-assign]
    stop = asyncio.Event()

    async def idle(stop: asyncio.Event, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async with WebhookClient(config) as client:
        pipeline = Pipeline(webhooks, client, config, "w1")
        running = asyncio.create_task(pipeline.run(stop, idle))
        deadline = time.monotonic() + 30
        while Counter(r.state for r in (await _rows(store)).values()) != Counter({"succeeded": 60}):
            assert time.monotonic() < deadline, "not every delivery succeeded"
            await asyncio.sleep(0.05)
        stop.set()
        await running
    got = receiver.snapshot()
    assert Counter(r.headers["webhook-id"] for r in got) == Counter({e.id: 1 for e in events})
    for r in got:
        verify(secret, r)
    assert sum(size * n for size, n in records.items()) == 60
    assert sum(records.values()) <= 30, records  # typically 10-20 records of 1-10


async def test_deliver_batch_sends_a_batch_and_records_it_at_once(store: Store, receiver: Receiver) -> None:
    webhooks, location_id, _endpoint_id, secret = await _endpoint(store, receiver.url)
    events = [sample_event(location_id) for _ in range(12)]
    for event in events:
        await publish_now(store, event)
    receiver.script.extend([Answer(status=503, body=b"busy"), Answer(status=200, delay=0.2)])
    config = GatewayConfig(**{"database_url": "unused", **FAST, "webhook_batch_size": 12})  # type: ignore[arg-type]
    calls: list[int] = []
    finish_many = webhooks.finish_many

    async def counted(finished: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(finished))
        return await finish_many(finished, *args, **kwargs)

    webhooks.finish_many = counted  # type: ignore[method-assign]
    async with WebhookClient(config) as client:
        assert await deliver_batch(webhooks, client, config, "w1") == 12
    assert calls == [12]
    rows = await _rows(store)
    assert Counter(r.state for r in rows.values()) == Counter({"succeeded": 11, "failed": 1})
    assert {r.headers["webhook-id"] for r in receiver.snapshot()} == {e.id for e in events}
    for r in receiver.snapshot():
        verify(secret, r)


async def test_target_checks_are_cached_for_their_ttl_only() -> None:
    checks = TargetChecks(parse_networks([]), ttl=0.2)
    assert await checks.refusal("http://127.0.0.1:9/hook") is not None
    checks.allowed = parse_networks(["127.0.0.0/8"])  # an operator change: seen once the cached answer lapses
    assert await checks.refusal("http://127.0.0.1:9/hook") is not None
    await asyncio.sleep(0.25)
    assert await checks.refusal("http://127.0.0.1:9/hook") is None
    assert await TargetChecks([], ttl=0).refusal("ftp://example.com/") == "the URL must be http or https"


async def test_every_new_connection_is_checked_again_at_connect_time() -> None:
    """A host name whose DNS answer turned private after the per-attempt check (rebinding) is refused when the
    connection is made; an operator-allowed subnet, or the configured proxy, passes."""
    refused = CheckedResolver(parse_networks([]), frozenset())
    try:
        with pytest.raises(ConnectRefused):
            await refused.resolve("localhost", 80)
    finally:
        await refused.close()
    allowed = CheckedResolver(parse_networks(["127.0.0.0/8", "::1/128"]), frozenset())
    proxy = CheckedResolver(parse_networks([]), frozenset({"localhost"}))
    try:
        assert await allowed.resolve("localhost", 80)
        assert await proxy.resolve("localhost", 80)
    finally:
        await allowed.close()
        await proxy.close()


async def test_released_claims_are_due_again_at_once(store: Store) -> None:
    """A stopping worker gives back what it claimed but never sent: no attempt counted, no lease to wait out."""
    webhooks, location_id, _endpoint_id, _ = await _endpoint(store, "https://example.com/hook")
    for _ in range(2):
        await publish_now(store, sample_event(location_id))
    fresh, retried = await webhooks.claim("w1", limit=2, lease_seconds=60)
    async with store.write() as conn:  # as if one had failed once before this claim
        await conn.execute(update(deliveries).where(deliveries.c.id == retried.delivery_id).values(attempts=1))
    assert await webhooks.release([fresh, retried], "w2") == 0  # not w2's to give back
    assert await webhooks.release([fresh, retried], "w1") == 2
    rows = await _rows(store)
    assert (rows[fresh.delivery_id].state, rows[fresh.delivery_id].attempts) == ("pending", 0)
    assert (rows[retried.delivery_id].state, rows[retried.delivery_id].attempts) == ("failed", 1)
    assert {r.locked_by for r in rows.values()} == {None}
    again = await webhooks.claim("w2", limit=5, lease_seconds=60)
    assert {c.delivery_id for c in again} == {fresh.delivery_id, retried.delivery_id}

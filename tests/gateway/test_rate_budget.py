"""The database-kept budget: one allowance however many processes (here: separate engines) draw on it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from adapters.http import retry_after_seconds
from adapters.pacing import Batch, Grant, LeasedBudget, RateLimit
from gateway.crypto import Keyring
from gateway.storage.rate_buckets import StoredBudget
from gateway.storage.store import Store

NOW = 1_795_219_200.0  # Sat, 21 Nov 2026 00:00:00 GMT


async def test_two_replicas_share_one_burst(database_url: str, keyring: Keyring, store: Store) -> None:
    other = await Store.open(database_url, keyring)  # a second replica: its own engine and connection pool
    try:
        budgets = [StoredBudget(store), StoredBudget(other)]
        limit = RateLimit(per_second=0.001, burst=10)  # no meaningful refill during the test
        grants = await asyncio.gather(*(budgets[i % 2].reserve("apikey:k", limit, 0.0) for i in range(30)))
    finally:
        await other.close()
    assert sum(g.granted for g in grants) == 10
    refused = [g for g in grants if not g.granted]
    assert all(g.wait > 900 for g in refused)  # a token every 1000 s


async def test_reservations_queue_up_to_the_longest_wait_allowed(store: Store) -> None:
    budget = StoredBudget(store)
    limit = RateLimit(per_second=10.0, burst=2)
    grants = [await budget.reserve("emr:x", limit, 1.0) for _ in range(15)]
    granted = [g for g in grants if g.granted]
    # 2 at once, then one every 0.1 s up to 1 s ahead (a little more refills while the test runs).
    assert 12 <= len(granted) <= 13
    assert granted[:2] == [Grant(True, 0.0), Grant(True, 0.0)]
    waits = [g.wait for g in granted]
    assert waits == sorted(waits)
    assert waits[-1] <= 1.0
    assert all(not g.granted and g.wait <= 0.2 for g in grants[len(granted) :])
    other = await budget.reserve("emr:y", limit, 0.0)  # another account is untouched
    assert other == Grant(True, 0.0)


async def test_a_429_holds_every_holder_of_the_budget(store: Store) -> None:
    budget = StoredBudget(store)
    limit = RateLimit(per_second=5.0, burst=20)
    assert (await budget.reserve("emr:z", limit, 0.0)).granted
    await budget.penalize("emr:z", limit, 30.0)
    held = await budget.reserve("emr:z", limit, 10.0)
    assert not held.granted
    assert held.wait == pytest.approx(20.0, abs=1.0)  # 30 s of silence, minus the 10 s it may wait


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "30"}, 30.0),
        ({"retry-after": "Sat, 21 Nov 2026 00:01:00 GMT"}, 60.0),
        ({"x-ratelimit-reset": str(NOW + 45)}, 45.0),
        ({"retry-after": "inf"}, 1.0),  # unusable: never a pause without end
        ({"retry-after": "999999"}, 3600.0),
        ({"retry-after": "soon", "x-ratelimit-reset": str(NOW + 5)}, 5.0),
        ({}, 1.0),
    ],
)
def test_how_long_an_emr_429_pauses_the_account(headers: dict[str, str], expected: float) -> None:
    response = httpx.Response(429, headers=headers)
    assert retry_after_seconds(response, now=NOW) == pytest.approx(expected)


class CountingBudget:
    """The shared bucket with a count of the round trips each process makes to it."""

    def __init__(self, inner: StoredBudget) -> None:
        self.inner = inner
        self.calls = 0

    async def reserve(self, key: str, limit: RateLimit, max_wait: float) -> Grant:
        self.calls += 1
        return await self.inner.reserve(key, limit, max_wait)

    async def penalize(self, key: str, limit: RateLimit, seconds: float) -> None:
        self.calls += 1
        await self.inner.penalize(key, limit, seconds)

    async def take_batch(self, key: str, limit: RateLimit, n: int) -> Batch:
        self.calls += 1
        return await self.inner.take_batch(key, limit, n)

    async def give_back(self, key: str, limit: RateLimit, n: int) -> None:
        self.calls += 1
        await self.inner.give_back(key, limit, n)


async def test_leased_batches_cost_one_round_trip_per_batch_and_never_exceed_the_bucket(
    database_url: str, keyring: Keyring, store: Store
) -> None:
    """Four processes (separate engines) lease from one bucket: together they never spend more than it holds, and
    each spends most of its tokens without a database write."""
    others = [await Store.open(database_url, keyring) for _ in range(3)]
    try:
        shared = [CountingBudget(StoredBudget(s)) for s in (store, *others)]
        processes = [LeasedBudget(c, batch_seconds=1000.0, hold_seconds=30.0) for c in shared]
        limit = RateLimit(per_second=0.01, burst=400)  # batches of 10; no meaningful refill: 400 tokens in all
        grants = await asyncio.gather(*(processes[i % 4].reserve("emr:x", limit, 0.0) for i in range(600)))
    finally:
        for other in others:
            await other.close()
    assert sum(g.granted for g in grants) <= 400
    assert sum(g.granted for g in grants) >= 390  # what one process holds but nobody asked for is at most a batch
    # 40 batches, then the refused: one round trip per process until its "empty" note lapses, not one per request.
    assert sum(c.calls for c in shared) < 100


async def test_unused_leased_tokens_go_back_to_the_bucket(store: Store) -> None:
    shared = StoredBudget(store)
    leased = LeasedBudget(shared, batch_seconds=250.0, hold_seconds=0.2)
    limit = RateLimit(per_second=0.04, burst=20)  # batches of 10; refill negligible
    assert (await leased.reserve("emr:y", limit, 0.0)).granted  # takes a batch of 10, spends 1
    assert (await shared.take_batch("emr:y", limit, 20)).taken == 10  # the other 9 are held by the first process
    await shared.give_back("emr:y", limit, 10)
    await asyncio.sleep(0.4)  # the lease expires and the 9 go back
    assert (await shared.take_batch("emr:y", limit, 20)).taken == 19

"""Requests to an EMR are paced by the account's budget, so a burst of callers never earns the clinic a 429."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import Fault, FaultKind
from adapters.pacing import RateLimit
from gateway.crypto import Keyring
from tests.gateway.conftest import Harness, running_harness, two_business_seed

# The emulator allows 8 requests per 1 s window; the budget sends at most 2 + 4/s = 6 in any second.
WINDOW_LIMIT = 8
BUDGET = (RateLimit(per_second=4.0, burst=2),)
UNKNOWN_ID = "1390053863163199999"


@pytest.fixture
def strict(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    emulator = ClinikoEmulator(two_business_seed(), rate_limit_per_minute=WINDOW_LIMIT, rate_limit_window_seconds=1.0)
    overrides = {"emr_rate_limits": {"cliniko": BUDGET}, "emr_budget_max_wait_seconds": 30.0}
    with running_harness("cliniko", database_url, keyring, overrides, emulator=emulator) as h:
        yield h


async def _burst(h: Harness, n: int) -> list[int]:
    headers = {"x-api-key": h.sites[0].api_key}
    async with httpx.AsyncClient(base_url=h.base_url, headers=headers, timeout=60) as c:
        answers = await asyncio.gather(*(c.get(f"/v1/appointments/{UNKNOWN_ID}") for _ in range(n)))
    return [r.status_code for r in answers]


def test_a_burst_is_paced_under_the_emr_limit(strict: Harness) -> None:
    emulator = strict.emulator
    before = emulator.stats().requests
    codes = asyncio.run(_burst(strict, 20))
    assert codes == [404] * 20  # every caller got Cliniko's real answer, none a 429
    stats = emulator.stats()
    assert stats.requests - before >= 20
    assert stats.rate_limited == 0


def test_after_an_emr_429_the_account_is_held_without_sending(strict: Harness) -> None:
    strict.emulator.faults.add(Fault(kind=FaultKind.RATE_LIMIT, retry_after=50))
    with strict.client() as c:
        first = c.get(f"/v1/appointments/{UNKNOWN_ID}")
        assert first.status_code == 429
        assert first.json()["code"] == "rate_limited"
        sent = strict.emulator.stats().requests
        second = c.get(f"/v1/appointments/{UNKNOWN_ID}")  # 50 s of silence is longer than the 30 s it may wait
        assert second.status_code == 429
        assert 15 <= int(second.headers["retry-after"]) <= 50
        assert strict.emulator.stats().requests == sent

"""Pacing every request an adapter sends to stay inside its EMR's rate limit for one set of credentials.

An EMR limits an account (Cliniko: 200 requests a minute per user), not a process. Every replica and worker that
holds the same credentials must therefore draw from one budget; `Budget` is that budget's interface, and the gateway
supplies one kept in its database. `PacedTransport` puts the budget in front of the adapter's HTTP client, so every
request (reads, their retries, writes, token mints) is counted in one place, whatever the adapter.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import httpx
import msgspec

from adapters.errors import RateLimited
from adapters.http import retry_after_seconds


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A token bucket: `burst` requests at once, then `per_second`. Any span of T seconds carries at most
    burst + per_second * T requests, so an EMR window of N per T is respected when burst + per_second * T <= N."""

    per_second: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")


class Grant(msgspec.Struct, frozen=True):
    """`granted`: send after `wait` seconds (0: now). Refused: nothing was taken; `wait` is when to try again."""

    granted: bool
    wait: float


class Budget(Protocol):
    """Shared request allowance per EMR account (`key` names the account, never its secret)."""

    async def reserve(self, key: str, limit: RateLimit, max_wait: float) -> Grant:
        """Take one request's allowance unless the wait for it would exceed `max_wait` seconds."""
        ...

    async def penalize(self, key: str, limit: RateLimit, seconds: float) -> None:
        """The EMR answered 429: send nothing for `seconds` (every holder of the budget, not only this one)."""
        ...


def refill(tokens: float, elapsed: float, limit: RateLimit) -> float:
    return min(float(limit.burst), tokens + max(0.0, elapsed) * limit.per_second)


def grant_of(tokens: float, limit: RateLimit, max_wait: float) -> Grant:
    """The decision for a bucket holding `tokens` (after refill) when one more request asks."""
    if tokens - 1.0 < -max_wait * limit.per_second:
        return Grant(False, max(0.0, (1.0 - tokens) / limit.per_second - max_wait))
    return Grant(True, max(0.0, (1.0 - tokens) / limit.per_second))


class LocalBudget:
    """The budget of one process, for adapters used without a gateway (scripts, tests of one adapter)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._guard = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def reserve_now(self, key: str, limit: RateLimit, max_wait: float) -> Grant:
        with self._guard:
            now = self.clock()
            tokens, at = self._buckets.get(key, (float(limit.burst), now))
            tokens = refill(tokens, now - at, limit)
            grant = grant_of(tokens, limit, max_wait)
            self._buckets[key] = (tokens - 1.0 if grant.granted else tokens, now)
            return grant

    async def reserve(self, key: str, limit: RateLimit, max_wait: float) -> Grant:
        return self.reserve_now(key, limit, max_wait)

    async def penalize(self, key: str, limit: RateLimit, seconds: float) -> None:
        with self._guard:
            now = self.clock()
            tokens, at = self._buckets.get(key, (float(limit.burst), now))
            self._buckets[key] = (min(refill(tokens, now - at, limit), -seconds * limit.per_second), now)


class PacedTransport(httpx.AsyncBaseTransport):
    """Waits for the account's budget before each request and hands it to the shared client (its connection pool).

    A request whose wait would exceed `max_wait` is not sent: `RateLimited` says when to retry, which is what the
    EMR itself would have answered, without spending the clinic's allowance on a refusal.
    """

    def __init__(
        self,
        inner: httpx.AsyncClient,
        budget: Budget,
        key: str,
        limits: tuple[RateLimit, ...],
        max_wait: float,
        emr: str,
    ) -> None:
        self.inner = inner
        self.budget = budget
        self.keys = [f"{key}:{i}" for i in range(len(limits))]
        self.limits = limits
        self.max_wait = max_wait
        self.emr = emr

    async def _admit(self) -> None:
        """Every bucket must allow the request; a refusal by a later bucket wastes the earlier ones' tokens, which
        errs on the side of sending less."""
        wait = 0.0
        for key, limit in zip(self.keys, self.limits, strict=True):
            grant = await self.budget.reserve(key, limit, self.max_wait)
            if not grant.granted:
                raise RateLimited(
                    f"the gateway is holding requests to stay within {self.emr}'s rate limit for these credentials",
                    retry_after=max(1, math.ceil(grant.wait)),
                )
            wait = max(wait, grant.wait)
        if wait > 0:
            await asyncio.sleep(wait)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.limits:
            await self._admit()
        response = await self.inner.send(request, stream=True)
        if response.status_code == 429 and self.limits:
            await self.budget.penalize(self.keys[0], self.limits[0], retry_after_seconds(response))
        return response


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Adapters send their session cookies explicitly; a paced client must never collect one location's cookies."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


def paced_client(
    inner: httpx.AsyncClient, budget: Budget, key: str, limits: tuple[RateLimit, ...], *, max_wait: float, emr: str
) -> httpx.AsyncClient:
    """A client with `inner`'s timeouts whose requests go through the budget, then through `inner`'s pool."""
    jar = http.cookiejar.CookieJar(policy=_NoCookies())
    return httpx.AsyncClient(
        transport=PacedTransport(inner, budget, key, limits, max_wait, emr),
        timeout=inner.timeout,
        follow_redirects=inner.follow_redirects,
        cookies=jar,
        trust_env=False,
    )

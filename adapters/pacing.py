"""Pacing every request an adapter sends to stay inside its EMR's rate limit for one set of credentials.

An EMR limits an account (Cliniko: 200 requests a minute per user), not a process. Every replica and worker that
holds the same credentials must therefore draw from one budget; `Budget` is that budget's interface, and the gateway
supplies one kept in its database. `PacedTransport` puts the budget in front of the adapter's HTTP client, so every
request (reads, their retries, writes, token mints) is counted in one place, whatever the adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class Batch(msgspec.Struct, frozen=True):
    """`taken` whole tokens (0..n); with none, `wait` is how long until the bucket holds one."""

    taken: int
    wait: float


class BatchBudget(Budget, Protocol):
    """A shared budget that can hand out several whole tokens in one round trip, and take unused ones back."""

    async def take_batch(self, key: str, limit: RateLimit, n: int) -> Batch:
        """Up to `n` tokens available now (never debt)."""
        ...

    async def give_back(self, key: str, limit: RateLimit, n: int) -> None: ...


class _Lease:
    __slots__ = ("empty_until", "expires", "lock", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.expires = 0.0
        self.empty_until = 0.0  # the shared bucket was empty: refuse without asking again until then
        self.lock = asyncio.Lock()


def batch_size(limit: RateLimit, seconds: float) -> int:
    """About `seconds` of the limit's rate, at most half its burst (so one process cannot hold it all), at least 1."""
    return max(1, min(limit.burst // 2, math.ceil(limit.per_second * seconds)))


class LeasedBudget:
    """A process's share of a shared budget: tokens are taken in batches (one round trip per batch, about
    `batch_seconds` of the rate) and spent locally; what is left after `hold_seconds` goes back to the shared
    bucket. Every token spent was granted by the shared bucket, so all processes together stay within the limit;
    when the bucket is empty, each request waits its turn there (the shared budget's own debt rule)."""

    def __init__(self, shared: BatchBudget, *, batch_seconds: float = 0.5, hold_seconds: float = 1.0) -> None:
        self.shared = shared
        self.batch_seconds = batch_seconds
        self.hold_seconds = hold_seconds
        self._leases: dict[str, _Lease] = {}
        self._returns: set[asyncio.Task[None]] = set()

    def _lease(self, key: str) -> _Lease:
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
        return lease

    async def reserve(self, key: str, limit: RateLimit, max_wait: float) -> Grant:
        lease = self._lease(key)
        now = time.monotonic()
        if lease.tokens >= 1 and now < lease.expires:
            lease.tokens -= 1
            return Grant(True, 0.0)
        if max_wait <= 0 and now < lease.empty_until:
            return Grant(False, lease.empty_until - now)  # refused without a round trip (an API key over its limit)
        async with lease.lock:
            now = time.monotonic()
            if lease.tokens >= 1 and now < lease.expires:
                lease.tokens -= 1
                return Grant(True, 0.0)
            if max_wait <= 0 and now < lease.empty_until:
                return Grant(False, lease.empty_until - now)
            batch = await self.shared.take_batch(key, limit, batch_size(limit, self.batch_seconds))
            if batch.taken >= 1:
                lease.tokens, lease.expires = batch.taken - 1, time.monotonic() + self.hold_seconds
                if batch.taken > 1:
                    self._schedule_return(key, limit, lease)
                return Grant(True, 0.0)
            if max_wait <= 0:
                lease.empty_until = time.monotonic() + min(batch.wait, self.hold_seconds)
                return Grant(False, batch.wait)
        return await self.shared.reserve(key, limit, max_wait)  # at the limit: wait its turn in the shared queue

    def _schedule_return(self, key: str, limit: RateLimit, lease: _Lease) -> None:
        async def give_back() -> None:
            await asyncio.sleep(self.hold_seconds)
            async with lease.lock:
                left, lease.tokens = int(lease.tokens), 0
            if left >= 1:
                # A token that cannot be returned counts as spent: that only errs on the side of sending less.
                with contextlib.suppress(Exception):
                    await self.shared.give_back(key, limit, left)

        task = asyncio.get_running_loop().create_task(give_back())
        self._returns.add(task)
        task.add_done_callback(self._returns.discard)

    async def penalize(self, key: str, limit: RateLimit, seconds: float) -> None:
        lease = self._lease(key)
        lease.tokens = 0  # the EMR said stop: what this process held is not spent either
        await self.shared.penalize(key, limit, seconds)


RESEND_PAUSE = 2.0  # seconds: longer pauses are answered, not waited out


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
        # The shared client's own transport (its pool), so a request is not handled by two clients in a row: the
        # paced client already applies timeouts and builds the response (profiled: the second pass through httpx's
        # client, its cookie extraction and its log line, was ~15% of a read's CPU). Falls back to `send` for a
        # client without httpx's (private, long-stable) mount lookup.
        self._route: Callable[[httpx.URL], httpx.AsyncBaseTransport] | None = getattr(inner, "_transport_for_url", None)
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

    async def _send(self, request: httpx.Request) -> httpx.Response:
        if self.limits:
            await self._admit()
        if self._route is not None:
            return await self._route(request.url).handle_async_request(request)
        return await self.inner.send(request, stream=True)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """A 429 pauses every holder of the budget. A momentary overrun the EMR says will end within `RESEND_PAUSE`
        (another process's burst, the jitter between two clocks) sends the refused request once more after it (a
        429 applied nothing, so this is safe for writes too); a longer or unstated pause is the caller's answer."""
        response = await self._send(request)
        if response.status_code != 429 or not self.limits:
            return response
        pause = retry_after_seconds(response)
        await self.budget.penalize(self.keys[0], self.limits[0], pause)
        told = "retry-after" in response.headers or "x-ratelimit-reset" in response.headers
        if not told or pause > min(self.max_wait, RESEND_PAUSE) or not isinstance(request.stream, httpx.ByteStream):
            return response  # an EMR that did not say when (GoHighLevel) would only be refused again
        await response.aclose()
        response = await self._send(request)
        if response.status_code == 429:
            await self.budget.penalize(self.keys[0], self.limits[0], retry_after_seconds(response))
        return response


class _NoCookies(httpx.Cookies):
    """Adapters send their session cookies explicitly; a paced client must never collect one location's cookies,
    and does not parse `Set-Cookie` at all (httpx's cookie extraction was ~10% of a read's CPU)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _PacedClient(httpx.AsyncClient):
    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        """httpx assigns the (empty) jar it was given; there is none to keep."""


def paced_client(
    inner: httpx.AsyncClient, budget: Budget, key: str, limits: tuple[RateLimit, ...], *, max_wait: float, emr: str
) -> httpx.AsyncClient:
    """A client with `inner`'s timeouts whose requests go through the budget, then through `inner`'s pool."""
    return _PacedClient(
        transport=PacedTransport(inner, budget, key, limits, max_wait, emr),
        timeout=inner.timeout,
        follow_redirects=inner.follow_redirects,
        trust_env=False,
    )

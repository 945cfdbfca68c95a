"""Process-wide, per-credential state every adapter instance of one practice shares: the OAuth token and the
request budget. Adapters are rebuilt per location every few minutes (and per poll), so this state cannot live on
the instance: a fresh instance must neither mint a new token nor start a fresh burst allowance.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable

EARLY_SECONDS = 60.0  # re-mint this long before the token expires
DEFAULT_LIFETIME = 3600  # when `expires_in` is missing (what integrators assume; UNCONFIRMED)


class TokenCache:
    """One bearer token per credential key, minted by one request at a time (no stampede on the token endpoint)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        # asyncio locks belong to one event loop; keep one per loop (tests and the CLI run several loops).
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )
        self._guard = threading.Lock()

    def _lock(self, key: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._guard:
            per_loop = self._locks.setdefault(loop, {})
            return per_loop.setdefault(key, asyncio.Lock())

    def _valid(self, key: str) -> str | None:
        hit = self._tokens.get(key)
        if hit is not None and self.clock() < hit[1]:
            return hit[0]
        return None

    async def get(self, key: str, mint: Callable[[], Awaitable[tuple[str, int | None]]]) -> str:
        token = self._valid(key)
        if token is not None:
            return token
        async with self._lock(key):
            token = self._valid(key)  # another request minted it while this one waited
            if token is not None:
                return token
            token, expires_in = await mint()
            lifetime = float(expires_in if expires_in is not None else DEFAULT_LIFETIME)
            if lifetime > EARLY_SECONDS:
                self._tokens[key] = (token, self.clock() + lifetime - EARLY_SECONDS)
            return token

    def invalidate(self, key: str, token: str) -> None:
        """Forget `token` after a 401 (only that one: a newer token another request minted stays)."""
        hit = self._tokens.get(key)
        if hit is not None and hit[0] == token:
            del self._tokens[key]


class RequestBudget:
    """A token bucket per credential key (rate per second, burst) plus a pause after the EMR's 429 `Retry-After`."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._guard = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._paused_until: dict[str, float] = {}

    def paused_for(self, key: str) -> float:
        """Seconds left of a 429 pause (0: none)."""
        with self._guard:
            return max(0.0, self._paused_until.get(key, 0.0) - self.clock())

    def pause(self, key: str, seconds: float) -> None:
        with self._guard:
            until = self.clock() + seconds
            self._paused_until[key] = max(until, self._paused_until.get(key, 0.0))

    def reserve(self, key: str) -> float:
        """Takes one request's allowance; returns how long to wait before sending it (0: at once)."""
        with self._guard:
            now = self.clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            tokens -= 1.0
            self._buckets[key] = (tokens, now)
            return 0.0 if tokens >= 0 else -tokens / self.rate

    async def acquire(self, key: str) -> None:
        wait = self.reserve(key)
        if wait > 0:
            await asyncio.sleep(wait)


# 5 requests/s with bursts of 20 (integrators citing the swagger): stay a little under the sustained rate.
TOKENS = TokenCache()
BUDGET = RequestBudget(rate=4.5, burst=20)

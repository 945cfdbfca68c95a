"""Authentication from memory: the gateway reads a key (or a GoHighLevel path token) from the database at most once
per `ttl` seconds per process, so a request costs no database round trip.

Bounded staleness is the contract: a key revoked anywhere (the CLI, another replica) stops working on every replica
within `ttl` (EGW_AUTH_CACHE_SECONDS, 5 s); `forget()` makes it immediate in this process. Unknown secrets are
remembered too (so a client hammering with a bad key costs one read per `ttl`), in a bounded map.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class KeyCache(Generic[V]):
    """digest -> what authenticating it found (None: nothing), for `ttl` seconds; at most `size` entries."""

    def __init__(self, ttl: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, V | None]] = OrderedDict()

    async def get(self, digest: str, load: Callable[[], Awaitable[V | None]]) -> V | None:
        now = self.clock()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await load()
        if self.ttl > 0:
            self._entries[digest] = (now + self.ttl, value)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def forget(self, digest: str | None = None) -> None:
        """Drop one entry, or every entry (a revocation in this process takes effect at once)."""
        if digest is None:
            self._entries.clear()
        else:
            self._entries.pop(digest, None)

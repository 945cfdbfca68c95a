"""Process-wide, per-credential OAuth tokens every adapter instance of one account shares (Practice Better, Halaxy,
FHIR servers). Adapters are rebuilt per location every few minutes (and per poll), so a token cannot live on the
instance: a fresh instance must not mint a new one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from adapters.locks import LoopLocks

EARLY_SECONDS = 60.0  # re-mint this long before the token expires
DEFAULT_LIFETIME = 3600  # when `expires_in` is missing (what Practice Better integrators assume; UNCONFIRMED)


class TokenCache:
    """One bearer token per credential key, minted by one request at a time (no stampede on the token endpoint)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks = LoopLocks()

    def _valid(self, key: str) -> str | None:
        hit = self._tokens.get(key)
        if hit is not None and self.clock() < hit[1]:
            return hit[0]
        return None

    async def get(self, key: str, mint: Callable[[], Awaitable[tuple[str, int | None]]]) -> str:
        token = self._valid(key)
        if token is not None:
            return token
        async with self._locks.get(key):
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


TOKENS = TokenCache()

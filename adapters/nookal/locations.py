"""Process-wide: the locations each Nookal API key's `getLocations` showed, kept for an hour (issue 17).

The adapter needs a location's `Timezone` (to turn instants into the clinic-local wall times Nookal speaks) and its
`Country` (to format phones) on nearly every call, but an adapter instance lives for one poll or a few minutes in the
pool: an instance's own memo made every quiet poll read `getLocations` again, a third request where two suffice.
Zones and countries change rarely, so one read serves every instance of the key for `TTL_SECONDS`; a changed zone is
picked up when the entry expires, and at once by `check()` and `observed_settings()`, which always read afresh and
refresh the entry. A location an entry does not hold is never answered from it: it is read again (the key may have
been ticked for it since), and a key that still does not list it is not remembered.

Entries are keyed by the base URL and a digest of the key (the key itself is not kept twice).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Awaitable, Callable

from adapters.locks import LoopLocks
from adapters.nookal import mapping, wire

TTL_SECONDS = 3600.0


def account_of(base_url: str, api_key: str) -> str:
    """One cache entry per Nookal account: the host it is reached at and its key (as a digest)."""
    return f"{base_url}#{hashlib.sha256(api_key.encode()).hexdigest()[:24]}"


class LocationCache:
    """getLocations per account, read by one request at a time (no stampede when a catalog and a poll start at once)."""

    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, tuple[float, dict[str, wire.Location]]] = {}
        self._locks = LoopLocks()
        self._guard = threading.Lock()

    def _held(self, account: str, location_id: str) -> wire.Location | None:
        entry = self._entries.get(account)
        if entry is None or self.clock() - entry[0] >= self.ttl:
            return None
        return entry[1].get(location_id)

    def put(self, account: str, locations: list[wire.Location]) -> None:
        """What a `getLocations` read just showed, replacing the account's entry; expired entries are dropped."""
        now = self.clock()
        with self._guard:
            for stale in [a for a, (at, _) in self._entries.items() if now - at >= self.ttl]:
                del self._entries[stale]
            self._entries[account] = (now, {mapping.ident(loc.ID): loc for loc in locations})

    async def get(
        self, account: str, location_id: str, read: Callable[[], Awaitable[list[wire.Location]]]
    ) -> wire.Location | None:
        """The location as last read within the TTL, else read now; None when the key does not list it."""
        held = self._held(account, location_id)
        if held is not None:
            return held
        async with self._locks.get(account):
            held = self._held(account, location_id)  # another instance read it while this one waited
            if held is not None:
                return held
            found = await read()
            self.put(account, found)
            return next((loc for loc in found if mapping.ident(loc.ID) == location_id), None)

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()


LOCATIONS = LocationCache()

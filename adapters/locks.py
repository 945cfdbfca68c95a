"""Named asyncio locks for process-wide state (tokens, caches, per-location creates). An asyncio lock belongs to the
event loop it was first contended in, and tests, the CLI and the bench run several loops in one process: one set of
locks per loop, so a lock is never awaited from a loop it does not belong to."""

from __future__ import annotations

import asyncio
import threading
import weakref


class LoopLocks:
    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )
        self._guard = threading.Lock()

    def get(self, key: str) -> asyncio.Lock:
        """The lock named `key` in the running loop."""
        loop = asyncio.get_running_loop()
        with self._guard:
            return self._locks.setdefault(loop, {}).setdefault(key, asyncio.Lock())

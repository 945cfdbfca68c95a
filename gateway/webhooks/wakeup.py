"""Wakes an idle in-process worker loop the moment its work is committed, instead of at its next poll: deliveries
(an event was published) and gateway writes (a booking's snapshot is to be built).

Separate worker processes still find new work at `EGW_WEBHOOK_POLL_INTERVAL_SECONDS`; this only removes that wait
when the API and the worker share a process (the default `serve`)."""

from __future__ import annotations

import asyncio
import contextlib


class Channel:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    def notify(self) -> None:
        """Call after the transaction that created the work has committed."""
        for event in list(self._waiters):
            event.set()

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep up to `seconds`, returning early on `notify()` or when `stop` is set."""
        woken = asyncio.Event()
        self._waiters.add(woken)
        try:
            stop_task = asyncio.ensure_future(stop.wait())
            woken_task = asyncio.ensure_future(woken.wait())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait({stop_task, woken_task}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            for task in (stop_task, woken_task):
                task.cancel()
        finally:
            self._waiters.discard(woken)


deliveries = Channel()
gateway_writes = Channel()
ghl = Channel()  # GoHighLevel pushes: queued by the same publish as deliveries


def notify() -> None:
    """Deliveries (and GoHighLevel pushes): call after the transaction that published events has committed."""
    deliveries.notify()
    ghl.notify()


async def wait(stop: asyncio.Event, seconds: float) -> None:
    await deliveries.wait(stop, seconds)

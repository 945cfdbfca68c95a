"""Wakes an idle in-process delivery worker the moment an event is committed, instead of at its next poll.

Separate worker processes still find new deliveries at `EGW_WEBHOOK_POLL_INTERVAL_SECONDS`; this only removes that
wait when the API and the worker share a process (the default `serve`)."""

from __future__ import annotations

import asyncio
import contextlib

_waiters: set[asyncio.Event] = set()


def notify() -> None:
    """Call after the transaction that published events has committed."""
    for event in list(_waiters):
        event.set()


async def wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, returning early on `notify()` or when `stop` is set."""
    woken = asyncio.Event()
    _waiters.add(woken)
    try:
        stop_task = asyncio.ensure_future(stop.wait())
        woken_task = asyncio.ensure_future(woken.wait())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({stop_task, woken_task}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in (stop_task, woken_task):
            task.cancel()
    finally:
        _waiters.discard(woken)

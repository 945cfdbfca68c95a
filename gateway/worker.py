"""The background worker: webhook delivery batches, the change-detection scheduler's ticks, and the reconciler
that settles bookings whose answer was lost (or whose process died mid-booking).

`serve` runs it in-process; `emr-gateway worker` runs it alone so API and workers scale apart. Any number of workers
may share one PostgreSQL: each claims its own batch (SKIP LOCKED) under a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable

import httpx

from gateway.config import GatewayConfig
from gateway.logsafe import log_unexpected
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.storage.store import Store
from gateway.storage.webhooks import WebhookStore
from gateway.sync.immediate import process_tick
from gateway.usecases.operations import reconcile_tick
from gateway.webhooks import wakeup
from gateway.webhooks.delivery import Pipeline, WebhookClient

log = logging.getLogger("emr_gateway.worker")

Tick = Callable[[Store, httpx.AsyncClient, GatewayConfig, str], Awaitable[int]]


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


def _scheduler_tick() -> Tick | None:
    """The change-detection half is optional until it lands: no module, no ticks."""
    try:
        module = importlib.import_module("gateway.sync.scheduler")
    except ModuleNotFoundError as exc:
        if exc.name in ("gateway.sync", "gateway.sync.scheduler"):
            return None
        raise
    tick: Tick = module.tick
    return tick


class Worker:
    def __init__(self, store: Store, emr_http: httpx.AsyncClient, config: GatewayConfig) -> None:
        self.store = store
        self.emr_http = emr_http
        self.config = config
        self.worker_id = new_worker_id()

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    async def _deliveries(self, stop: asyncio.Event) -> None:
        """Claims, sends and records overlapping (gateway.webhooks.delivery.Pipeline); one client for every endpoint,
        so connections stay alive per receiver. Idle, it waits for a wake-up or the poll interval."""
        async with WebhookClient(self.config) as client:
            while not stop.is_set():
                try:
                    await Pipeline(WebhookStore(self.store), client, self.config, self.worker_id).run(stop, wakeup.wait)
                except Exception as exc:  # a bug, not a database or receiver failure (those are handled inside)
                    log_unexpected(log, "webhook delivery loop failed; starting it again", exc)
                    await self._sleep(stop, self.config.webhook_poll_interval_seconds)

    async def _scheduler(self, stop: asyncio.Event) -> None:
        tick = _scheduler_tick()
        if tick is None:
            return
        interval = float(getattr(self.config, "sync_tick_seconds", self.config.webhook_poll_interval_seconds))
        while not stop.is_set():
            try:
                if await tick(self.store, self.emr_http, self.config, self.worker_id):
                    wakeup.notify()  # what the poll published goes out now, not at the delivery loop's next look
            except Exception as exc:
                log_unexpected(log, "change-detection tick failed", exc)
            await self._sleep(stop, interval)

    async def _reconciler(self, stop: asyncio.Event, runtime: Runtime) -> None:
        interval = float(getattr(self.config, "sync_tick_seconds", self.config.webhook_poll_interval_seconds))
        while not stop.is_set():
            try:
                if await reconcile_tick(runtime, self.worker_id):
                    wakeup.gateway_writes.notify()
            except Exception as exc:
                log_unexpected(log, "reconciler tick failed", exc)
            await self._sleep(stop, interval)

    async def _gateway_writes(self, stop: asyncio.Event, runtime: Runtime) -> None:
        """The snapshots and events of writes made through the gateway, built after their caller had the answer."""
        while not stop.is_set():
            try:
                taken = await process_tick(runtime, self.worker_id)
            except Exception as exc:
                log_unexpected(log, "gateway-writes tick failed", exc)
                taken = 0
            if taken == 0:
                await wakeup.gateway_writes.wait(stop, self.config.webhook_poll_interval_seconds)

    async def _ghl(self, stop: asyncio.Event, runtime: Runtime) -> None:
        """GoHighLevel pushes: the other kind of destination, fed by the same outbox (gateway.ghl.destination)."""
        from gateway.ghl.destination import push

        while not stop.is_set():
            try:
                taken = await push.tick(runtime, self.worker_id)
            except Exception as exc:
                log_unexpected(log, "GoHighLevel push tick failed", exc)
                taken = 0
            if taken == 0:
                await wakeup.ghl.wait(stop, self.config.webhook_poll_interval_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Returns once `stop` is set and the current batch and tick have finished."""
        runtime = Runtime(self.config, self.store, self.emr_http, Metrics())
        async with asyncio.TaskGroup() as group:
            group.create_task(self._deliveries(stop))
            group.create_task(self._scheduler(stop))
            group.create_task(self._reconciler(stop, runtime))
            group.create_task(self._gateway_writes(stop, runtime))
            group.create_task(self._ghl(stop, runtime))

"""`emr-gateway worker`: webhook delivery and change detection without the HTTP API (scale them apart)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable

import httpx

from adapters.transport import EMRTransport
from gateway.commands import Subparsers
from gateway.config import load_config
from gateway.crypto import Keyring
from gateway.heap import freeze_start_up_heap
from gateway.logging_setup import configure_logging, quiet_http_clients
from gateway.storage.migrate import upgrade
from gateway.storage.store import Store
from gateway.worker import Worker


def register(sub: Subparsers) -> None:
    p = sub.add_parser("worker", help="run the webhook delivery and change-detection worker (no HTTP API)")
    p.add_argument("--migrate", action="store_true", help="apply pending migrations before starting")
    p.set_defaults(handler=run)


async def _main() -> None:
    config = load_config()
    store = await Store.open(config.database_url, Keyring.from_env())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timeout = httpx.Timeout(config.emr_timeout_seconds, connect=config.emr_connect_timeout_seconds)
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=EMRTransport(), follow_redirects=False) as emr_http:
            freeze_start_up_heap()
            await Worker(store, emr_http, config).run(stop)
    finally:
        await store.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed (as `serve` gets it through uvicorn): the delivery loop is event-loop bound, and
    uvloop's loop costs less CPU per webhook than asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(args: argparse.Namespace) -> int:
    configure_logging()
    quiet_http_clients()
    if args.migrate:
        upgrade(load_config().database_url)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_main())
    return 0

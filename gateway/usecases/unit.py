"""What a write records after the EMR answered — its operation's outcome, a GoHighLevel link, the job that will
build its webhook snapshot — commits in one short transaction, together with the request's idempotency outcome
when there is one (`gateway.idempotency.run_idempotent` collects them and runs them inside `idem_complete`).

Without a collector (no Idempotency-Key) they commit on their own, at once. Either way the gateway-writes worker is
woken only after the commit, so it never looks for a job that is not there yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from sqlalchemy.engine import Connection

from gateway.storage.store import Store
from gateway.webhooks import wakeup

# A write on a synchronous connection: run inside one transaction by `Store.run_write` (one hop to SQLite's writer
# thread, or `run_sync` on PostgreSQL).
Deferred = Callable[[Connection], None]

_collector: ContextVar[list[Deferred] | None] = ContextVar("egw_deferred_writes", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[Deferred]]:
    bucket: list[Deferred] = []
    token = _collector.set(bucket)
    try:
        yield bucket
    finally:
        _collector.reset(token)


def run(conn: Connection, writes: list[Deferred]) -> None:
    for write in writes:
        write(conn)


async def commit(store: Store, writes: list[Deferred]) -> None:
    """Join the request's idempotency transaction if there is one, else commit now."""
    bucket = _collector.get()
    if bucket is not None:
        bucket.extend(writes)
        return
    await store.run_write(lambda conn: run(conn, writes))
    wakeup.gateway_writes.notify()


async def flush(store: Store, writes: list[Deferred]) -> None:
    """For a collector whose request failed after deferring: what the EMR already holds is recorded anyway."""
    if writes:
        await store.run_write(lambda conn: run(conn, writes))
        wakeup.gateway_writes.notify()

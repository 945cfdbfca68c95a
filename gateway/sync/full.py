"""A full listing of one location through its change feed (`emr-gateway sync --full`), at the EMR's rate.

It reads every patient and appointment the feed holds (`changes_since(FULL_LISTING)`: Cliniko's 5,000 patients are
50 + 50 requests), stores the appointment facts and snapshot digests without announcing what was merely never seen,
and, where the adapter's full listing covers every appointment (`full_listing_complete`), marks the location's facts
complete so each later snapshot costs no appointment read. Real changes (a stored state or digest that differs) are
announced as a poll would. A location never polled gets the listing's cursor, so the first poll continues from it
and misses nothing that changed while the listing ran. The poll cursor of a polled location is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import httpx
import msgspec

from adapters.base import FULL_LISTING
from gateway.config import GatewayConfig, write_patience
from gateway.emr import AnyAdapter, EMRPacing, location_adapter
from gateway.storage import activity
from gateway.storage import sync as db
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store
from gateway.sync.detector import detect
from gateway.sync.scheduler import cached_catalog


class SyncResult(msgspec.Struct, kw_only=True):
    location_id: str
    full: bool
    patients: int  # records the listing returned
    appointments: int
    events: int  # webhook events published (real changes only)
    requests: int  # EMR requests sent, counted at the transport
    seconds: float
    facts_complete: bool  # every later snapshot comes from stored facts
    appointments_changed: int = 0  # appointments whose stored state changed
    patients_changed: int = 0  # patients whose snapshot digest changed


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts requests as they are sent (after the budget let them through), for progress and the result."""

    def __init__(self, inner: httpx.AsyncBaseTransport, on_request: Callable[[int], None] | None = None) -> None:
        self.inner = inner
        self.sent = 0
        self.on_request = on_request

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.on_request is not None:
            self.on_request(self.sent)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class SyncObserver(Protocol):
    """What a progress display is told besides each request (CountingTransport): counts only, never records."""

    def estimated(self, requests: int | None) -> None:
        """Before the listing: the requests it will send (the adapter's `full_listing_requests`, whose own
        probes, Cliniko's 2, are sent and counted first), or None: unknown, or not a full listing."""

    def listed(self, patients: int, appointments: int) -> None:
        """The EMR's part is read; storing it (and the catalog's few reads) follows."""


def adapter_for(
    store: Store, http: httpx.AsyncClient, config: GatewayConfig, location: LocationRecord, credentials: bytes
) -> AnyAdapter:
    return location_adapter(
        location,
        credentials,
        http=http,
        store=store,
        pacing=EMRPacing.for_config(config, store),
        write_patience_seconds=write_patience(config),
    )


async def sync_location(
    store: Store,
    http: httpx.AsyncClient,
    config: GatewayConfig,
    location: LocationRecord,
    *,
    full: bool,
    counter: CountingTransport | None = None,
    observer: SyncObserver | None = None,
) -> SyncResult:
    """One sync now: `full` lists everything, otherwise the change feed from the stored cursor (a poll that does
    not wait for its turn and leaves the worker's schedule alone). `counter` is the transport `http` sends
    through, if the caller counts requests. `observer` is told what a progress display needs (see SyncObserver).
    The run is recorded (`sync_runs`, shown by the console), a failed one with its error's class name."""
    started = datetime.now(UTC)
    trigger = activity.FULL if full else activity.MANUAL
    try:
        result = await _sync(store, http, config, location, full=full, counter=counter, observer=observer)
    except Exception as exc:
        failed = activity.Run(
            location_id=location.id,
            trigger=trigger,
            started_at=started,
            finished_at=datetime.now(UTC),
            emr_requests=counter.sent if counter is not None else None,
            error=type(exc).__name__[:100],
        )
        await activity.record_run(store, failed)
        raise
    await activity.record_run(
        store,
        activity.Run(
            location_id=location.id,
            trigger=trigger,
            started_at=started,
            finished_at=datetime.now(UTC),
            emr_requests=counter.sent if counter is not None else None,
            appointments_changed=result.appointments_changed,
            patients_changed=result.patients_changed,
            events=result.events,
        ),
    )
    return result


async def _sync(
    store: Store,
    http: httpx.AsyncClient,
    config: GatewayConfig,
    location: LocationRecord,
    *,
    full: bool,
    counter: CountingTransport | None,
    observer: SyncObserver | None,
) -> SyncResult:
    started = datetime.now(UTC)
    adapter = adapter_for(store, http, config, location, await store.get_credentials(location.id))
    if observer is not None:
        observer.estimated(await adapter.full_listing_requests() if full else None)
    await db.ensure_states(store, [location.id], started)
    state = await db.get_state(store, location.id)
    cursor = FULL_LISTING if full else (state.cursor if state is not None else None)
    changes = await adapter.changes_since(cursor)
    if observer is not None:
        observer.listed(len(changes.patients), len(changes.appointments))
    complete = full and await adapter.lists_every_appointment()
    found = await detect(
        store,
        adapter,
        location,
        changes,
        catalog=cached_catalog(config, store, adapter),
        now=datetime.now(UTC),
        announce_new=not full,
        complete=complete,
        # A listing that is not complete would make every patient's snapshot cost a read of their appointments.
        build_snapshots=complete or not full,
    )
    if state is None or state.cursor is None or not full:
        await db.set_cursor(store, location.id, changes.cursor, only_if_unset=full)
    return SyncResult(
        location_id=location.id,
        full=full,
        patients=len(changes.patients),
        appointments=len(changes.appointments),
        events=len(found.events),
        requests=counter.sent if counter is not None else 0,
        seconds=(datetime.now(UTC) - started).total_seconds(),
        facts_complete=complete,
        appointments_changed=found.appointments_changed,
        patients_changed=found.patients_changed,
    )

"""One scheduling pass: lease the locations that are due, poll each EMR's change feed, sweep daily, release.

Per location and poll: `changes_since` (Cliniko: 2 list requests), then 2 requests per affected patient (the
patient, their appointments) and the catalog once if anything changed. The daily reconciliation sweep lists the
appointments that *started* since the last sweep (1 request per 100) and re-snapshots their patients (2 requests
each): time alone moves an appointment from "upcoming" to "last" and a past `booked` into the visit count, and no
EMR edit announces that. It also re-checks those appointments' states, so a change a poll missed is caught within
a day. Locations whose EMR has no change feed are not polled (gateway writes still emit events immediately).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from datetime import UTC, datetime, timedelta

import httpx
import msgspec

from adapters.base import Capability
from adapters.errors import AdapterError, ContractChanged, RateLimited
from adapters.pacing import Budget, Grant, LocalBudget, RateLimit
from adapters.registry import get_adapter_class
from gateway import emr_contract
from gateway.catalog import Catalog, CatalogCache
from gateway.config import GatewayConfig, write_patience
from gateway.emr import AnyAdapter, EMRPacing, location_adapter
from gateway.logsafe import log_unexpected
from gateway.storage import activity
from gateway.storage import sync as db
from gateway.storage.rate_buckets import StoredBudget
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store
from gateway.sync.detector import Detection, detect
from gateway.sync.snapshots import CatalogSource
from schemas.changes import ChangeSet
from schemas.commands import AppointmentQuery

log = logging.getLogger("gateway.sync")


def poll_interval(config: GatewayConfig, emr: str) -> float:
    """Before a location's first poll: EGW_POLL_SECONDS if set, else what a quiet poll alone would be given."""
    if config.poll_seconds is not None:
        return config.poll_seconds
    cls = get_adapter_class(emr)
    limits = EMRPacing(LocalBudget(), config.emr_rate_limits, 0.0).limits_for(cls)
    return adaptive_interval(config, cls, limits, requests=2, sharing=1, fill=1.0)


def adaptive_interval(
    config: GatewayConfig,
    cls: type[AnyAdapter],
    limits: tuple[RateLimit, ...],
    *,
    requests: int,
    sharing: int,
    fill: float,
) -> float:
    """How long until a location polls again, so that all the account's locations together spend at most
    `poll_budget_share` of its tightest sustained rate: `requests` (what the last poll sent) x `sharing` (locations
    on the account) / (share x rate). Polls back off when the account's bucket is under half full (bookings need
    it), up to 2x at a quarter full or less: a burst empties it for seconds, so a harder backoff would leave a
    location unpolled for many minutes after one busy moment. EGW_POLL_SECONDS, if set, wins; an unpaced EMR keeps its
    adapter default."""
    if config.poll_seconds is not None:
        return config.poll_seconds
    if not limits:
        return float(cls.default_poll_seconds)
    rate = min(limit.per_second for limit in limits)
    interval = max(1, requests) * max(1, sharing) / (config.poll_budget_share * rate)
    if fill < 0.5:
        interval *= 0.5 / max(fill, 0.25)
    return min(max(interval, config.poll_min_seconds), config.sync_max_backoff_seconds)


class _Counted:
    """The budget one poll draws on, counting the requests it lets through (the first bucket is asked once per
    request): the next interval is derived from what the poll really cost."""

    def __init__(self, inner: Budget) -> None:
        self.inner = inner
        self.requests = 0

    async def reserve(self, key: str, limit: RateLimit, max_wait: float) -> Grant:
        if key.endswith(":0"):
            self.requests += 1
        return await self.inner.reserve(key, limit, max_wait)

    async def penalize(self, key: str, limit: RateLimit, seconds: float) -> None:
        await self.inner.penalize(key, limit, seconds)


def backoff(config: GatewayConfig, interval: float, failures: int, error: Exception) -> float:
    """Honours the EMR's Retry-After; otherwise doubles the interval per consecutive failure, capped."""
    if isinstance(error, RateLimited):
        return max(float(error.retry_after), interval)
    return min(max(interval, 1.0) * 2.0 ** min(failures, 16), config.sync_max_backoff_seconds)


POLL_CATALOG_TTL = timedelta(minutes=15)
_CATALOGS: weakref.WeakKeyDictionary[Store, CatalogCache] = weakref.WeakKeyDictionary()


def cached_catalog(config: GatewayConfig, store: Store, adapter: AnyAdapter) -> CatalogSource:
    """The location's catalog from a per-process cache, read only when a poll found a change and kept for
    POLL_CATALOG_TTL (or EGW_CATALOG_TTL_SECONDS if longer): a renamed practitioner may show under the old name in
    events for that long, and frequent polls do not spend the budget on the catalog."""
    cache = _CATALOGS.get(store)
    if cache is None:
        cache = _CATALOGS[store] = CatalogCache(max(config.catalog_ttl_seconds, POLL_CATALOG_TTL.total_seconds()))
    # Keyed by account and settings, not location: locations on one account and business share one read.
    settings = hashlib.sha256(msgspec.json.encode(adapter.settings)).hexdigest()[:16]
    key = f"{EMRPacing.account_key(type(adapter), adapter.credentials)}:{settings}"

    async def get() -> Catalog:
        return await cache.get(key, adapter)

    return get


_PACINGS: weakref.WeakKeyDictionary[Store, EMRPacing] = weakref.WeakKeyDictionary()


def _pacing(config: GatewayConfig, store: Store) -> EMRPacing:
    """One per store (a worker process has one): its batches of EMR tokens carry over from one poll to the next."""
    pacing = _PACINGS.get(store)
    if pacing is None:
        pacing = _PACINGS[store] = EMRPacing.for_config(config, store)
    return pacing


def _pollable(location: LocationRecord) -> bool:
    try:
        return Capability.CHANGES_SINCE in get_adapter_class(location.emr).capabilities
    except KeyError:
        return False


async def sweep(
    store: Store, adapter: AnyAdapter, location: LocationRecord, since: datetime, now: datetime, catalog: CatalogSource
) -> Detection:
    started = await adapter.list_appointments(AppointmentQuery(start_from=since, start_to=now))
    changes = ChangeSet(patients=[], appointments=started, cursor="")
    patients = frozenset(a.patient_id for a in started)
    return await detect(store, adapter, location, changes, catalog=catalog, now=now, resnapshot=patients)


async def poll_location(
    store: Store, http: httpx.AsyncClient, config: GatewayConfig, state: db.SyncState, worker_id: str
) -> int:
    """Polls one leased location; returns how many events it published. Releases the lease in every case."""
    now = datetime.now(UTC)
    location = await store.get_location(state.location_id)
    if location is None:
        return 0
    if not _pollable(location):  # its row exists because of a gateway write; nothing to poll
        later = now + timedelta(seconds=config.sync_max_backoff_seconds)
        await db.release(store, location.id, worker_id, next_poll_at=later)
        return 0
    interval = poll_interval(config, location.emr)
    if config.poll_seconds is None and state.poll_interval_seconds:
        interval = state.poll_interval_seconds  # the last derived one: an error's backoff starts from it
    heartbeat = asyncio.create_task(_keep_lease(store, location.id, worker_id, config.sync_lease_seconds))
    try:
        return await _poll(store, http, config, state, worker_id, location, interval, now)
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat


async def _keep_lease(store: Store, location_id: str, worker_id: str, lease_seconds: float) -> None:
    """Leases are short (a dead worker's locations are polled again within one lease) and renewed every third of
    one while a poll runs, however long the EMR takes."""
    while True:
        await asyncio.sleep(lease_seconds / 3)
        until = datetime.now(UTC) + timedelta(seconds=lease_seconds)
        try:
            if not await db.renew(store, location_id, worker_id, until):
                return  # another worker has it now; the poll's final write will notice and roll back
        except Exception as exc:  # a failed renewal must not kill the poll; the next one may succeed
            log.warning("sync lease renewal failed", extra={"location_id": location_id, "error": type(exc).__name__})


async def _poll(
    store: Store,
    http: httpx.AsyncClient,
    config: GatewayConfig,
    state: db.SyncState,
    worker_id: str,
    location: LocationRecord,
    interval: float,
    now: datetime,
) -> int:
    shared = _pacing(config, store)
    counted = _Counted(shared.budget)
    account: str | None = None  # known once the adapter is built; kept even when the poll fails (see release)
    try:
        adapter = location_adapter(
            location,
            await store.get_credentials(location.id),
            http=http,
            store=store,
            pacing=EMRPacing(counted, shared.overrides, shared.max_wait),
            write_patience_seconds=write_patience(config),
        )
        account = EMRPacing.account_key(type(adapter), adapter.credentials)
        catalog = cached_catalog(config, store, adapter)
        changes = await adapter.changes_since(state.cursor)
        found = await detect(store, adapter, location, changes, catalog=catalog, now=now, worker_id=worker_id)
        published = len(found.events)
        appointments, patients = found.appointments_changed, found.patients_changed
        swept_at: datetime | None = None
        if state.last_sweep_at is None:
            swept_at = now  # the first sweep covers from here on, never the location's history
        elif now - state.last_sweep_at >= timedelta(seconds=config.sync_sweep_seconds):
            swept = await sweep(store, adapter, location, state.last_sweep_at, now, catalog)
            published += len(swept.events)
            appointments += swept.appointments_changed
            patients += swept.patients_changed
            swept_at = now
    except db.LeaseLost:
        log.warning("sync lease lost; results discarded", extra={"location_id": location.id})
        return 0
    except Exception as exc:  # an EMR error or a bug must not stop the other locations
        delay = backoff(config, interval, state.consecutive_failures, exc)
        # The class name only: EMR messages may quote patient data.
        error = type(exc).__name__
        if not isinstance(exc, AdapterError):
            log_unexpected(log, "sync failed", exc, location_id=location.id)
        else:
            log.warning("sync failed", extra={"location_id": location.id, "error": error, "retry_in": delay})
            if isinstance(exc, ContractChanged):
                await emr_contract.note(store, location.id, exc, emr=location.emr)
        # The account is recorded even so: a location that keeps failing must not count as sharing every account.
        await db.release(
            store,
            location.id,
            worker_id,
            next_poll_at=now + timedelta(seconds=delay),
            error=error,
            account_key=account,
            run=_run(location, now, counted.requests, error=error),
        )
        return 0
    cls = type(adapter)
    account = EMRPacing.account_key(cls, adapter.credentials)
    limits = shared.limits_for(cls)
    interval = adaptive_interval(
        config,
        cls,
        limits,
        requests=counted.requests,
        sharing=await db.locations_sharing(store, account) if limits else 1,
        fill=await _fill(store, account, limits),
    )
    await db.release(
        store,
        location.id,
        worker_id,
        next_poll_at=now + timedelta(seconds=interval),
        polled_at=now,
        swept_at=swept_at,
        interval=interval,
        requests=counted.requests,
        account_key=account,
        run=_run(location, now, counted.requests, appointments=appointments, patients=patients, events=published),
    )
    return published


def _run(
    location: LocationRecord,
    started: datetime,
    requests: int,
    *,
    appointments: int = 0,
    patients: int = 0,
    events: int = 0,
    error: str | None = None,
) -> activity.Run:
    """What the poll did, for the console's sync log and its EMR budget figure (counts and a class name only)."""
    return activity.Run(
        location_id=location.id,
        trigger=activity.POLL,
        started_at=started,
        finished_at=datetime.now(UTC),
        emr_requests=requests,
        appointments_changed=appointments,
        patients_changed=patients,
        events=events,
        error=error[:100] if error else None,
    )


async def _fill(store: Store, account: str, limits: tuple[RateLimit, ...]) -> float:
    """How full the account's tightest bucket is (1.0 when unpaced or unused)."""
    if not limits:
        return 1.0
    index = min(range(len(limits)), key=lambda i: limits[i].per_second)
    return await StoredBudget(store).fill(f"{account}:{index}", limits[index])


async def tick(store: Store, http: httpx.AsyncClient, config: GatewayConfig, worker_id: str) -> int:
    """Polls every due location this worker can lease; returns how many locations it polled."""
    now = datetime.now(UTC)
    locations = [loc for loc in await store.list_locations() if _pollable(loc)]
    await db.ensure_states(store, (loc.id for loc in locations), now)
    claimed = await db.claim_due(store, worker_id, now, config.sync_lease_seconds, config.sync_batch_size)
    for state in claimed:
        await poll_location(store, http, config, state, worker_id)
    return len(claimed)

"""Whether a location's EMR connection works, so an operator hears of an expired session before a patient does."""

from __future__ import annotations

import asyncio
import time

from adapters import errors as ae
from gateway import emr_contract
from gateway.runtime import Runtime
from gateway.storage import ghl_destination as ghl_db
from gateway.storage import sync as sync_db
from gateway.storage.records import LocationRecord
from gateway.times import now_utc
from schemas.health import ContractChange, EMRStatus, GhlHealth, GhlStatus, LocationHealth, SyncHealth

CHECK_TTL_SECONDS = 30.0

_cache: dict[str, tuple[float, LocationHealth]] = {}
_locks: dict[str, asyncio.Lock] = {}


async def check_location(runtime: Runtime, location: LocationRecord, *, fresh: bool = False) -> LocationHealth:
    """Runs the adapter's cheap `check()` at most every 30 s per location (the EMR's rate budget is the clinic's)."""
    hit = _cache.get(location.id)
    if hit and not fresh and time.monotonic() - hit[0] < CHECK_TTL_SECONDS:
        return hit[1]
    async with _locks.setdefault(location.id, asyncio.Lock()):
        hit = _cache.get(location.id)
        if hit and not fresh and time.monotonic() - hit[0] < CHECK_TTL_SECONDS:
            return hit[1]
        status, detail = EMRStatus.OK, None
        try:
            adapter = await runtime.adapters.get(location)
            await adapter.check()
        except ae.ContractChanged as exc:
            status, detail = EMRStatus.EMR_CONTRACT_CHANGED, exc.message
            await emr_contract.note(runtime.store, location.id, exc, runtime.metrics, location.emr)
        except ae.AuthFailed as exc:
            status, detail = EMRStatus.EMR_AUTH_FAILED, exc.message
        except (ae.Unavailable, ae.Timeout, ae.RateLimited) as exc:
            status, detail = EMRStatus.EMR_UNAVAILABLE, exc.message
        except ae.AdapterError as exc:
            status, detail = EMRStatus.EMR_ERROR, exc.message
        changes = await emr_contract.recent(runtime.store, location.id)
        if changes and status is EMRStatus.OK:
            # The check's own call decodes, but a request or a poll within the last day met an answer that did not.
            latest = changes[0]
            status = EMRStatus.EMR_CONTRACT_CHANGED
            detail = (
                f"{location.emr} answered with a shape this adapter does not know: {latest.problem} at {latest.path}"
            )
        state = await sync_db.get_state(runtime.store, location.id)
        sync = (
            SyncHealth(
                last_poll_at=state.last_poll_at,
                next_poll_at=state.next_poll_at,
                last_error=state.last_error,
                consecutive_failures=state.consecutive_failures,
                poll_interval_seconds=state.poll_interval_seconds,
                poll_requests=state.poll_requests,
                facts_complete=state.facts_complete_at is not None,
            )
            if state
            else None
        )
        health = LocationHealth(
            location_id=location.id,
            emr=location.emr,
            status=status,
            checked_at=now_utc(),
            detail=detail,
            sync=sync,
            contract_changes=[
                ContractChange(path=c.path, problem=c.problem, last_seen=c.last_seen, count=c.count) for c in changes
            ],
            ghl=await ghl_health(runtime, location.id),
        )
        runtime.metrics.location_emr_up.labels(location.id, location.emr).set(1 if status is EMRStatus.OK else 0)
        _cache[location.id] = (time.monotonic(), health)
        return health


async def ghl_health(runtime: Runtime, location_id: str) -> GhlHealth | None:
    """From what the pushes recorded (a refused token marks the connection), so it costs GHL no request."""
    connection = await ghl_db.get_connection(runtime.store, location_id)
    if connection is None:
        return None
    counts = await ghl_db.counts(runtime.store, location_id)
    now = now_utc()
    if not connection.enabled:
        status = GhlStatus.DISCONNECTED
    elif connection.status == "auth_failed":
        status = GhlStatus.GHL_AUTH_FAILED
    elif connection.paused_until is not None and connection.paused_until > now:
        status = GhlStatus.GHL_RATE_LIMITED
    else:
        status = GhlStatus.OK
    return GhlHealth(
        ghl_location_id=connection.ghl_location_id,
        status=status,
        detail=connection.status_detail if status is GhlStatus.GHL_AUTH_FAILED else None,
        paused_until=connection.paused_until if status is GhlStatus.GHL_RATE_LIMITED else None,
        daily_remaining=connection.daily_remaining,
        pending=sum(counts.get(state, 0) for state in ghl_db.UNFINISHED),
        dead=counts.get(ghl_db.DEAD, 0),
    )

"""`emr-gateway ghl sync`: every current patient of a location pushed to GHL, in patient-id order, resumable.

The position is stored after each patient, so a crash resumes after the last one finished; a patient pushed twice
costs a diff (the link and digest make the repeat free, never a second contact). A GHL 429 waits and tries the same
patient again: nothing is skipped. Outcomes go to the same sync log as the queue's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from adapters.errors import AdapterError, RateLimited
from gateway.ghl.destination.errors import PushFailed
from gateway.ghl.destination.push import Pusher, failure_of
from gateway.runtime import Runtime
from gateway.storage import ghl_destination as db
from gateway.storage.errors import UnknownLocation
from gateway.sync.detector import current_snapshots
from gateway.times import now_utc
from schemas.webhooks import PatientSnapshot

BATCH = 100  # patients whose snapshots are built together (the EMR's patient reads are batched)
MAX_RATE_WAITS = 30


class Progress(msgspec.Struct, kw_only=True):
    location_id: str
    total: int
    done: int
    pushed: int
    skipped: int
    failed: int
    ghl_calls: int
    resumed_after: str | None = None


async def backfill(
    runtime: Runtime, location_id: str, *, restart: bool = False, observe: Callable[[Progress], None] | None = None
) -> Progress:
    pusher = await Pusher.open(runtime, location_id, max_wait=60.0)
    if pusher is None:
        raise UnknownLocation(location_id)
    store = runtime.store
    after = None if restart else pusher.connection.backfill_after
    total = await db.count_patients(store, location_id)
    progress = Progress(location_id=location_id, total=total, done=0, pushed=0, skipped=0, failed=0, ghl_calls=0)
    progress.resumed_after = after
    if after is not None:
        progress.done = total - await _remaining(runtime, location_id, after)
    while True:
        batch = await db.patients_to_push(store, location_id, after=after, limit=BATCH)
        if not batch:
            break
        now = now_utc()
        adapter = await runtime.adapters.get(pusher.location)
        snapshots = await current_snapshots(store, adapter, pusher.location, batch, catalog=pusher.catalog, now=now)
        for patient_id in batch:
            outcome = await _one(runtime, pusher, patient_id, snapshots.get(patient_id))
            await db.record(store, location_id, patient_id, outcome)
            progress.done += 1
            progress.ghl_calls += outcome.calls
            if outcome.state == db.PUSHED:
                progress.pushed += 1
            elif outcome.state == db.SKIPPED:
                progress.skipped += 1
            else:
                progress.failed += 1
            await db.set_backfill_after(store, location_id, patient_id)
            if observe is not None:
                observe(progress)
        after = batch[-1]
    await db.set_backfill_after(store, location_id, None)
    return progress


async def _remaining(runtime: Runtime, location_id: str, after: str) -> int:
    count = 0
    cursor: str | None = after
    while True:
        page = await db.patients_to_push(runtime.store, location_id, after=cursor, limit=1000)
        if not page:
            return count
        count += len(page)
        cursor = page[-1]


async def _one(runtime: Runtime, pusher: Pusher, patient_id: str, snapshot: PatientSnapshot | None) -> db.PushOutcome:
    before = pusher.client.calls
    for _ in range(MAX_RATE_WAITS):
        try:
            now = now_utc()
            changed = await pusher.refresh(patient_id, now, snapshot)
            return db.PushOutcome(state=db.PUSHED if changed else db.SKIPPED, calls=pusher.client.calls - before)
        except RateLimited as exc:
            await asyncio.sleep(max(1, exc.retry_after))  # a 429 pauses; the same patient is tried again
        except (PushFailed, AdapterError) as exc:
            code, message, status, _ = failure_of(exc)
            return db.PushOutcome(  # dead in the log: `replay` (or the next `ghl sync`) pushes it again
                state=db.DEAD, calls=pusher.client.calls - before, ghl_status=status, error_code=code, error=message
            )
    return db.PushOutcome(
        state=db.DEAD,
        calls=pusher.client.calls - before,
        error_code="ghl_rate_limited",
        error=f"GoHighLevel answered 429 {MAX_RATE_WAITS} times in a row",
    )

"""Events for changes made through the gateway itself: recorded with the write, built by the worker right after.

The caller does not wait for the patient snapshot (it costs EMR reads: the patient and their appointments): the
write's transaction records a `gateway_writes` job (`job()`), and the worker (`process_tick`, woken on commit when it
runs in the same process) runs the poll's own detector on the one appointment and publishes its events. The poll that
later reads the same change from the EMR finds the stored state and digest already equal and emits nothing more.
A job that fails is tried again; the next poll emits whatever was missed anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import msgspec
from sqlalchemy.engine import Connection

from gateway.runtime import Runtime
from gateway.storage import gateway_writes
from gateway.storage.records import LocationRecord
from gateway.sync.targeted import detect_now
from gateway.times import now_utc
from gateway.webhooks import wakeup
from schemas.appointments import Appointment
from schemas.changes import ChangeSet
from schemas.webhooks import EventType

log = logging.getLogger("gateway.sync")

LEASE = timedelta(seconds=60)
RETRY = timedelta(seconds=5)
_APPOINTMENT = msgspec.json.Decoder(Appointment)


def job(location: LocationRecord, appointment: Appointment, kind: EventType) -> Callable[[Connection], None]:
    """A deferred write (see `gateway.usecases.unit`) that records the job. `kind` is what the caller did; it
    decides the event only when the gateway has never seen the appointment."""
    payload = msgspec.json.encode(appointment)

    def record(conn: Connection) -> None:
        gateway_writes.enqueue(conn, location.id, kind.value, payload, now_utc())

    return record


async def build_events(runtime: Runtime, location: LocationRecord, appointment: Appointment, kind: EventType) -> None:
    adapter = await runtime.adapters.get(location)
    changes = ChangeSet(patients=[], appointments=[appointment], cursor="")
    await detect_now(runtime, location, adapter, changes, hints={appointment.id: kind})


async def process_tick(runtime: Runtime, worker_id: str, limit: int = 50) -> int:
    """Builds the events of every waiting gateway write this worker can claim; returns how many it took."""
    now = now_utc()
    claimed = await gateway_writes.claim(runtime.store, worker_id, now, LEASE.total_seconds(), limit)
    published = False
    for write in claimed:
        location = await runtime.store.get_location(write.location_id)
        try:
            if location is not None:
                appointment = _APPOINTMENT.decode(write.appointment)
                await build_events(runtime, location, appointment, EventType(write.kind))
                published = True
            await gateway_writes.done(runtime.store, write.id)
        except Exception as exc:  # an EMR hiccup: try again shortly; the next poll would emit it anyway
            log.warning(
                "building a gateway write's events failed; will retry",
                extra={"location_id": write.location_id, "error": type(exc).__name__},
            )
            await gateway_writes.release(runtime.store, write.id, worker_id, now_utc() + RETRY)
    if published:
        wakeup.notify()  # committed: an in-process delivery loop sends them now
    return len(claimed)

"""Events for changes made through the gateway itself, emitted as the write returns instead of at the next poll.

It runs the poll's own detector on the one appointment, so the poll that later reads the same change from the EMR
finds the stored state and digest already equal and emits nothing more. Costs two EMR reads (the patient and their
appointments; the catalog comes from the request's cache). A failure here never fails the caller's write: the next
poll emits whatever was missed.
"""

from __future__ import annotations

import logging

from gateway.catalog import Catalog
from gateway.runtime import Runtime
from gateway.storage.records import LocationRecord
from gateway.sync.detector import detect
from gateway.times import now_utc
from gateway.webhooks import wakeup
from schemas.appointments import Appointment
from schemas.changes import ChangeSet
from schemas.webhooks import EventType

log = logging.getLogger("gateway.sync")


async def notify_gateway_write(
    runtime: Runtime, location: LocationRecord, appointment: Appointment, kind: EventType
) -> None:
    """`kind` is what the caller did; it decides the event only when the gateway has never seen the appointment."""
    try:
        adapter = await runtime.adapters.get(location)

        async def catalog() -> Catalog:
            return await runtime.catalogs.get(location.id, adapter)

        await detect(
            runtime.store,
            adapter,
            location,
            ChangeSet(patients=[], appointments=[appointment], cursor=""),
            catalog=catalog,
            now=now_utc(),
            hints={appointment.id: kind},
        )
        wakeup.notify()  # committed: an in-process worker sends it now, not at its next poll
    except Exception as exc:  # the write succeeded; the next poll will publish what this could not
        log.warning(
            "immediate webhook event failed; the next poll will emit it",
            extra={"location_id": location.id, "error": type(exc).__name__},
        )

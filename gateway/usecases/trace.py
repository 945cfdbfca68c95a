"""A patient's trace through the gateway: the events it emitted about them, where each was delivered, their
GoHighLevel contact and pushes. Found by the patient's EMR id, or by e-mail through the location's adapter
(`find_patients`, one EMR read). Read-only; nothing here is logged."""

from __future__ import annotations

import msgspec

from gateway.runtime import Runtime
from gateway.storage import console_reads
from gateway.storage import ghl_destination as ghl_db
from gateway.storage.console_reads import EventDelivery, EventRow
from gateway.storage.ghl_destination import ContactLink, PushRecord
from gateway.storage.records import LocationRecord
from schemas.patients import PatientQuery

MAX_EVENTS = 200
MAX_PUSHES = 200


class Match(msgspec.Struct, frozen=True, kw_only=True):
    """A patient an e-mail found in the EMR."""

    patient_id: str
    name: str


class TracedEvent(msgspec.Struct, frozen=True, kw_only=True):
    event: EventRow
    deliveries: list[EventDelivery]
    pushes: list[PushRecord]  # the GoHighLevel pushes this event queued


class PatientTrace(msgspec.Struct, frozen=True, kw_only=True):
    location: LocationRecord
    patient_id: str
    events: list[TracedEvent]
    contact: ContactLink | None  # the GoHighLevel contact linked to the patient
    ghl_connected: bool
    pushes: list[PushRecord]  # every push of the patient, newest first (refreshes included)


async def find_by_email(runtime: Runtime, location: LocationRecord, email: str) -> list[Match]:
    """The location's EMR asked once (`find_patients`); adapter errors propagate."""
    adapter = await runtime.adapters.get(location)
    found = await adapter.find_patients(PatientQuery(email=email.strip()))
    return [Match(patient_id=p.id, name=f"{p.first_name} {p.last_name}".strip()) for p in found]


async def trace(runtime: Runtime, location: LocationRecord, patient_id: str) -> PatientTrace:
    store = runtime.store
    events = await console_reads.patient_events(store, location.id, patient_id, limit=MAX_EVENTS)
    deliveries = await console_reads.event_deliveries(store, [e.id for e in events])
    pushes = await ghl_db.list_pushes(store, location.id, patient_id=patient_id, limit=MAX_PUSHES)
    by_event: dict[str, list[PushRecord]] = {}
    for push in pushes:
        if push.event_id is not None:
            by_event.setdefault(push.event_id, []).append(push)
    connection = await ghl_db.get_connection(store, location.id)
    return PatientTrace(
        location=location,
        patient_id=patient_id,
        events=[
            TracedEvent(event=e, deliveries=deliveries.get(e.id, []), pushes=by_event.get(e.id, [])) for e in events
        ],
        contact=await ghl_db.contact_link(store, location.id, patient_id),
        ghl_connected=connection is not None,
        pushes=pushes,
    )

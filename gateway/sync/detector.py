"""From a batch of changed records to webhook events, written in one transaction with the state that explains them.

Fetching (EMR calls) happens before the transaction; deciding happens inside it, against the states and digests read
under the location's lock. So a poll and a gateway write racing on one appointment emit its event once, and a poll
that dies before its commit leaves nothing behind: the next poll sees the same changes and decides the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import msgspec

from gateway.catalog import Catalog
from gateway.emr import AnyAdapter
from gateway.storage import sync as db
from gateway.storage.outbox import new_event_id, publish
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store
from gateway.sync.snapshots import BuiltSnapshot, CatalogSource, build_snapshot, sha256_of, summarize
from schemas.appointments import Appointment, AppointmentStatus
from schemas.changes import ChangeSet
from schemas.webhooks import AppointmentEventData, EventData, EventType, WebhookEvent

# An appointment first seen by the gateway counts as newly booked only if the EMR created it after tracking began;
# the margin absorbs clock skew between the EMR and the gateway.
CLOCK_SKEW = timedelta(minutes=5)
GONE = frozenset({AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW})
NO_NAMES = Catalog(practitioners=[], services=[], locations=[])  # only if a record moved between read and commit


def appointment_digest(appointment: Appointment) -> str:
    return sha256_of(msgspec.structs.replace(appointment, updated_at=None))


def classify(
    previous: db.StoredAppointment | None,
    current: Appointment,
    *,
    tracking_since: datetime,
    hint: EventType | None = None,
) -> EventType | None:
    """Which appointment event a change is, if any (a notes edit or an arrival is none: only the snapshot moves)."""
    status = current.status
    if previous is None:
        if status in GONE:
            # Cancelled or missed before tracking began (a sweep finds those) is old news, not a transition.
            if hint is None and current.updated_at is not None and current.updated_at < tracking_since - CLOCK_SKEW:
                return None
            cancelled = status == AppointmentStatus.CANCELLED
            return EventType.APPOINTMENT_CANCELLED if cancelled else EventType.APPOINTMENT_NO_SHOW
        if hint is not None:
            return hint
        if current.created_at is None or current.created_at >= tracking_since - CLOCK_SKEW:
            return EventType.APPOINTMENT_BOOKED
        return None  # existed before tracking began: its earlier state is unknown, so no transition to report
    if status != previous.status and status in GONE:
        return (
            EventType.APPOINTMENT_CANCELLED if status == AppointmentStatus.CANCELLED else EventType.APPOINTMENT_NO_SHOW
        )
    if status in GONE:
        return None
    if previous.status in {s.value for s in GONE}:
        return EventType.APPOINTMENT_BOOKED  # reinstated
    if current.start != previous.start or current.practitioner_id != previous.practitioner_id:
        return EventType.APPOINTMENT_RESCHEDULED
    return None


def _stale(seen: datetime | None, stored: datetime | None) -> bool:
    """A read older than what is stored (a slow poll finishing after a gateway write) must not roll state back."""
    return seen is not None and stored is not None and seen < stored


class Detection(msgspec.Struct, kw_only=True):
    events: list[WebhookEvent]
    patients_checked: int


async def detect(
    store: Store,
    adapter: AnyAdapter,
    location: LocationRecord,
    changes: ChangeSet,
    *,
    catalog: CatalogSource,
    now: datetime,
    worker_id: str | None = None,
    resnapshot: frozenset[str] = frozenset(),
    hints: Mapping[str, EventType] | None = None,
) -> Detection:
    """Computes and publishes the events for `changes`; with `worker_id`, also advances that worker's cursor.

    `resnapshot` names patients to rebuild even if none of their records changed (the sweep: time moved on).
    """
    hints = hints or {}
    appointments = [a for a in changes.appointments if a.location_id == location.id]
    async with store.engine.connect() as conn:
        known = await db.load_appointments(conn, location.id, (a.id for a in appointments))
        seen = await db.load_snapshots(conn, location.id, (p.id for p in changes.patients))
    moved = [a for a in appointments if (k := known.get(a.id)) is None or k.digest != appointment_digest(a)]
    # A change feed re-reads the record stamped at its cursor: a patient whose version was snapshotted costs nothing.
    edited = {p.id for p in changes.patients if (s := seen.get(p.id)) is None or s.patient_updated_at != p.updated_at}
    affected = {a.patient_id for a in moved} | edited | set(resnapshot)
    affected |= {k.patient_id for a in moved if (k := known.get(a.id)) is not None and k.patient_id != a.patient_id}
    given = {p.id: p for p in changes.patients}
    built: dict[str, BuiltSnapshot] = {}
    for patient_id in sorted(affected):
        snapshot = await build_snapshot(adapter, patient_id, catalog, now, patient=given.get(patient_id))
        if snapshot is not None:
            built[patient_id] = snapshot
    names = await catalog() if moved else None

    events: list[WebhookEvent] = []
    async with store.write() as conn:
        await db.ensure_state(conn, location.id, now)
        state = await db.lock_state(conn, location.id)
        stored = await db.load_appointments(conn, location.id, (a.id for a in appointments))
        for appointment in sorted(appointments, key=lambda a: (a.updated_at or now, a.id)):
            previous = stored.get(appointment.id)
            digest = appointment_digest(appointment)
            if previous is not None and (
                previous.digest == digest or _stale(appointment.updated_at, previous.emr_updated_at)
            ):
                continue
            kind = classify(previous, appointment, tracking_since=state.tracking_since, hint=hints.get(appointment.id))
            if kind is not None:
                snap = built.get(appointment.patient_id)
                data = AppointmentEventData(
                    appointment=summarize(appointment, names or NO_NAMES),
                    patient=snap.snapshot.patient if snap else None,
                    previous_start=previous.start if previous and kind == EventType.APPOINTMENT_RESCHEDULED else None,
                )
                events.append(_event(kind, location, data, now))
            await db.save_appointment(
                conn,
                location.id,
                appointment.id,
                db.StoredAppointment(
                    patient_id=appointment.patient_id,
                    status=appointment.status.value,
                    start=appointment.start,
                    practitioner_id=appointment.practitioner_id,
                    digest=digest,
                    emr_updated_at=appointment.updated_at,
                ),
                now,
            )
        snapshots = await db.load_snapshots(conn, location.id, built)
        for patient_id, snap in sorted(built.items()):
            before = snapshots.get(patient_id)
            if before is not None and (
                before.digest == snap.digest or _stale(snap.source_updated_at, before.source_updated_at)
            ):
                continue
            # Patients are account-wide in some EMRs (Cliniko): one with no appointment here is not this location's
            # to announce; its digest is kept all the same, so the next re-read of it costs no EMR request.
            if snap.snapshot.total_appointments > 0:
                events.append(_event(EventType.PATIENT_UPDATED, location, snap.snapshot, now))
            await db.save_snapshot(
                conn,
                location.id,
                patient_id,
                db.StoredSnapshot(
                    digest=snap.digest,
                    source_updated_at=snap.source_updated_at,
                    patient_updated_at=snap.snapshot.patient.updated_at,
                ),
                now,
            )
        for event in events:
            await publish(conn, event)
        if worker_id is not None:
            await db.advance_cursor(conn, location.id, worker_id, changes.cursor)
    return Detection(events=events, patients_checked=len(built))


def _event(kind: EventType, location: LocationRecord, data: EventData, now: datetime) -> WebhookEvent:
    return WebhookEvent(
        id=new_event_id(), type=kind, timestamp=now, location_id=location.id, emr=location.emr, data=data
    )

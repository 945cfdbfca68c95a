"""From a batch of changed records to webhook events, written in one transaction with the state that explains them.

Fetching (EMR calls) happens before the transaction; deciding happens inside it, against the states and digests read
under the location's lock. So a poll and a gateway write racing on one appointment emit its event once, and a poll
that dies before its commit leaves nothing behind: the next poll sees the same changes and decides the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import msgspec

from adapters.errors import NotFound
from gateway.catalog import Catalog
from gateway.emr import AnyAdapter
from gateway.storage import sync as db
from gateway.storage.outbox import new_event_id, publish_many
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store
from gateway.sync.snapshots import BuiltSnapshot, CatalogSource, built, sha256_of, summarize
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.changes import ChangeSet
from schemas.commands import AppointmentQuery
from schemas.patients import Patient
from schemas.webhooks import AppointmentEventData, EventData, EventType, PatientSnapshot, WebhookEvent

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
    appointments_changed: int = 0  # appointments whose stored state this detection changed
    patients_changed: int = 0  # patients whose snapshot digest changed


def fact_of(appointment: Appointment, digest: str) -> db.StoredAppointment:
    """What is stored of an appointment: its state for classifying the next change, and what a snapshot shows."""
    return db.StoredAppointment(
        patient_id=appointment.patient_id,
        status=appointment.status.value,
        start=appointment.start,
        practitioner_id=appointment.practitioner_id,
        digest=digest,
        emr_updated_at=appointment.updated_at,
        end_at=appointment.end,
        service_id=appointment.service_id,
        time_zone=appointment.time_zone,
        emr_location_id=appointment.emr_location_id,
        cancel_reason=appointment.cancel_reason.value if appointment.cancel_reason else None,
    )


def appointment_of(appointment_id: str, fact: db.StoredAppointment, location: LocationRecord) -> Appointment | None:
    """The appointment a stored fact describes, as far as a snapshot needs it; None for a row stored before facts
    were kept (migration 0012)."""
    if fact.end_at is None or fact.service_id is None or fact.time_zone is None:
        return None
    return Appointment(
        id=appointment_id,
        status=AppointmentStatus(fact.status),
        start=fact.start,
        end=fact.end_at,
        time_zone=fact.time_zone,
        patient_id=fact.patient_id,
        practitioner_id=fact.practitioner_id,
        service_id=fact.service_id,
        location_id=location.id,
        cancel_reason=CancelReason(fact.cancel_reason) if fact.cancel_reason else None,
        updated_at=fact.emr_updated_at,
        emr=location.emr,
        emr_location_id=fact.emr_location_id,
    )


class _Built(msgspec.Struct, kw_only=True):
    snapshots: dict[str, BuiltSnapshot]
    listed: list[Appointment]  # appointments read from the EMR for patients whose facts were incomplete
    gone: list[str]  # patients the EMR no longer has: what is stored of them is forgotten


async def _build(
    store: Store,
    adapter: AnyAdapter,
    location: LocationRecord,
    affected: list[str],
    changed: list[Appointment],
    given: Mapping[str, Patient],
    catalog: CatalogSource,
    now: datetime,
    *,
    complete: bool,
) -> _Built:
    """Snapshots of `affected` from stored facts plus `changed`; EMR reads: the patients not given, in batches of
    the adapter's `patient_batch_size`, and a patient's appointments only while theirs are not all known."""
    if not affected:
        return _Built(snapshots={}, listed=[], gone=[])
    state = await db.get_state(store, location.id)
    everything_known = complete or (state is not None and state.facts_complete_at is not None)
    async with store.engine.connect() as conn:
        stored = {} if complete else await db.load_patient_appointments(conn, location.id, affected)
        known = await db.load_snapshots(conn, location.id, affected)
    changed_ids = {a.id for a in changed}
    mine: dict[str, list[Appointment]] = {}
    for appointment in changed:
        mine.setdefault(appointment.patient_id, []).append(appointment)
    missing = [patient_id for patient_id in affected if patient_id not in given]
    patients = dict(given)
    if missing:
        patients.update((p.id, p) for p in await adapter.get_patients(missing))
    names = await catalog()
    snapshots: dict[str, BuiltSnapshot] = {}
    listed: list[Appointment] = []
    gone: list[str] = []
    for patient_id in affected:
        patient = patients.get(patient_id)
        if patient is None:
            gone.append(patient_id)  # nothing to announce, and nothing of theirs to keep
            continue
        facts = [appointment_of(i, f, location) for i, f in stored.get(patient_id, {}).items() if i not in changed_ids]
        snap = known.get(patient_id)
        if (everything_known or (snap is not None and snap.appointments_known)) and None not in facts:
            appointments = [a for a in facts if a is not None] + mine.get(patient_id, [])
        else:
            try:
                read = await adapter.list_appointments(AppointmentQuery(patient_id=patient_id))
            except NotFound:
                continue
            here = [a for a in read if a.location_id == location.id]
            ids = {a.id for a in here}  # read after the change set: the newer version wins
            appointments = here + [a for a in mine.get(patient_id, []) if a.id not in ids]
            listed.extend(a for a in here if a.id not in changed_ids)
        snapshots[patient_id] = built(patient, appointments, names, now)
    return _Built(snapshots=snapshots, listed=listed, gone=gone)


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
    announce_new: bool = True,
    complete: bool = False,
    build_snapshots: bool = True,
) -> Detection:
    """Computes and publishes the events for `changes`; with `worker_id`, also advances that worker's cursor.

    `resnapshot` names patients to rebuild even if none of their records changed (the sweep: time moved on).
    `announce_new=False` (a first full listing) stores what it has never seen without announcing it. `complete`
    says `changes` lists every appointment of the location: from then on snapshots come from stored facts alone.
    `build_snapshots=False` stores appointment facts only (a full listing that is not complete would otherwise list
    every patient's appointments); a patient's snapshot is then built the first time a poll meets them.
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
    if not build_snapshots:
        affected = set()
    given = {p.id: p for p in changes.patients}
    found = await _build(
        store, adapter, location, sorted(affected), appointments, given, catalog, now, complete=complete
    )
    built = found.snapshots
    names = await catalog() if moved else None

    events: list[WebhookEvent] = []
    async with store.write() as conn:
        await db.ensure_state(conn, location.id, now)
        state = await db.lock_state(conn, location.id)
        stored = await db.load_appointments(
            conn, location.id, [*(a.id for a in appointments), *(a.id for a in found.listed)]
        )
        await db.forget_patients(conn, location.id, found.gone)
        facts: dict[str, db.StoredAppointment] = {}  # saved together at the end: one statement per 500 rows
        appointments_changed = patients_changed = 0
        for appointment in sorted(appointments, key=lambda a: (a.updated_at or now, a.id)):
            previous = stored.get(appointment.id)
            digest = appointment_digest(appointment)
            if previous is not None and (
                (previous.digest == digest and previous.end_at is not None)
                or _stale(appointment.updated_at, previous.emr_updated_at)
            ):
                continue
            appointments_changed += 1
            kind = classify(previous, appointment, tracking_since=state.tracking_since, hint=hints.get(appointment.id))
            if kind is not None and (announce_new or previous is not None):
                snap = built.get(appointment.patient_id)
                data = AppointmentEventData(
                    appointment=summarize(appointment, names or NO_NAMES),
                    patient=snap.snapshot.patient if snap else None,
                    previous_start=previous.start if previous and kind == EventType.APPOINTMENT_RESCHEDULED else None,
                )
                events.append(_event(kind, location, data, now))
            facts[appointment.id] = fact_of(appointment, digest)
        unsure: set[str] = set()  # patients with an appointment left for the feed: theirs are read again next time
        for appointment in found.listed:
            # Read with a patient's appointments, not from the feed: kept only as old news (never announced). One
            # the feed has yet to bring (booked after tracking began) is left for the feed, which announces it.
            if appointment.id in stored or appointment.id in facts:
                continue
            if classify(None, appointment, tracking_since=state.tracking_since) is not None:
                unsure.add(appointment.patient_id)
                continue
            facts[appointment.id] = fact_of(appointment, appointment_digest(appointment))
        await db.save_appointments(conn, location.id, list(facts.items()), now)
        snapshots = await db.load_snapshots(conn, location.id, built)
        digests: list[tuple[str, db.StoredSnapshot]] = []
        for patient_id, snap in sorted(built.items()):
            before = snapshots.get(patient_id)
            if before is not None and _stale(snap.source_updated_at, before.source_updated_at):
                continue
            keep = _stored_snapshot(snap, known=patient_id not in unsure)
            if before is not None and before.digest == snap.digest:
                if before.appointments_known != keep.appointments_known:
                    digests.append((patient_id, keep))
                continue
            patients_changed += 1
            # Patients are account-wide in some EMRs (Cliniko): one with no appointment here is not this location's
            # to announce; its digest is kept all the same, so the next re-read of it costs no EMR request.
            if snap.snapshot.total_appointments > 0 and (announce_new or before is not None):
                events.append(_event(EventType.PATIENT_UPDATED, location, snap.snapshot, now))
            digests.append((patient_id, keep))
        await db.save_snapshots(conn, location.id, digests, now)
        await publish_many(conn, events)
        if complete:
            await db.mark_facts_complete(conn, location.id, now)
        if worker_id is not None:
            await db.advance_cursor(conn, location.id, worker_id, changes.cursor)
    return Detection(
        events=events,
        patients_checked=len(built),
        appointments_changed=appointments_changed,
        patients_changed=patients_changed,
    )


def _stored_snapshot(snap: BuiltSnapshot, *, known: bool) -> db.StoredSnapshot:
    return db.StoredSnapshot(
        digest=snap.digest,
        source_updated_at=snap.source_updated_at,
        patient_updated_at=snap.snapshot.patient.updated_at,
        appointments_known=known,
    )


def _event(kind: EventType, location: LocationRecord, data: EventData, now: datetime) -> WebhookEvent:
    return WebhookEvent(
        id=new_event_id(), type=kind, timestamp=now, location_id=location.id, emr=location.emr, data=data
    )


async def current_snapshots(
    store: Store,
    adapter: AnyAdapter,
    location: LocationRecord,
    patient_ids: list[str],
    *,
    catalog: CatalogSource,
    now: datetime,
) -> dict[str, PatientSnapshot]:
    """Snapshots as they stand now, announcing nothing (a destination's backfill or refresh): stored facts plus
    batched patient reads, the same building as a poll's."""
    found = await _build(store, adapter, location, sorted(set(patient_ids)), [], {}, catalog, now, complete=False)
    return {patient_id: snap.snapshot for patient_id, snap in found.snapshots.items()}

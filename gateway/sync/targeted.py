"""A targeted sync: run the poll's change detector on a few records now, rather than wait for the next poll.

EMR webhooks (`gateway/routes/*_webhooks.py`) re-read the patients a notification names and call `resync_patients`;
the gateway's own writes (`gateway.sync.immediate`) call `detect_now` on the one appointment they changed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

import msgspec

from adapters.errors import NotFound
from gateway.catalog import Catalog
from gateway.emr import AnyAdapter
from gateway.runtime import Runtime
from gateway.storage import sync as db
from gateway.storage.records import LocationRecord
from gateway.sync.detector import GONE, Detection, appointment_of, detect
from gateway.times import now_utc
from gateway.webhooks import wakeup
from schemas.appointments import Appointment, AppointmentStatus
from schemas.changes import ChangeSet
from schemas.commands import AppointmentQuery
from schemas.patients import Patient
from schemas.webhooks import EventType


@dataclass(frozen=True)
class Deletions:
    """Reconcile deletions an EMR's listings never show: a stored appointment of a re-snapshotted patient that is
    neither cancelled nor listed any more, and whose own read is not found (or now another location's), is reported
    cancelled. `vanished` are appointments already read as not found (their stored patients are re-snapshotted too);
    any other candidate costs one read, at most `max_reads` of them (the rest wait for a later resync)."""

    vanished: Collection[str] = frozenset()
    max_reads: int = 20


async def detect_now(
    runtime: Runtime,
    location: LocationRecord,
    adapter: AnyAdapter,
    changes: ChangeSet,
    *,
    now: datetime | None = None,
    resnapshot: frozenset[str] = frozenset(),
    hints: Mapping[str, EventType] | None = None,
) -> Detection:
    """The detector on `changes`, with the location's cached catalog; the caller wakes the delivery loop."""

    async def catalog() -> Catalog:
        return await runtime.catalogs.get(location.id, adapter)

    return await detect(
        runtime.store,
        adapter,
        location,
        changes,
        catalog=catalog,
        now=now or now_utc(),
        resnapshot=resnapshot,
        hints=hints,
    )


async def resync_patients(
    runtime: Runtime,
    location: LocationRecord,
    adapter: AnyAdapter,
    patients: Mapping[str, Patient],
    *,
    deletions: Deletions | None = None,
) -> Detection | None:
    """Re-snapshots `patients` (as just read from the EMR) and, with `deletions`, the stored patients of its
    `vanished` appointments: lists their appointments, runs the detector and wakes the delivery loop if it found
    events. None when no patient is affected (nothing this location holds changed). A patient whose listing is not
    found (deleted since) is re-snapshotted from what is stored."""
    affected = set(patients)
    stored: dict[str, dict[str, db.StoredAppointment]] = {}
    if deletions is not None:
        async with runtime.store.engine.connect() as conn:  # another location's: none stored here
            facts = await db.load_appointments(conn, location.id, set(deletions.vanished))
        affected |= {fact.patient_id for fact in facts.values()}
    if not affected:
        return None
    if deletions is not None:
        # What is stored of them is read before the EMR lists theirs: an appointment stored after this is listed.
        async with runtime.store.engine.connect() as conn:
            stored = await db.load_patient_appointments(conn, location.id, affected)
    appointments: list[Appointment] = []
    for patient_id in sorted(affected):
        try:
            appointments += await adapter.list_appointments(AppointmentQuery(patient_id=patient_id))
        except NotFound:
            continue
    now = now_utc()
    if deletions is not None:
        listed = {a.id for a in appointments}
        appointments += await _gone_since(adapter, location, stored, listed, deletions, now)
    found = await detect_now(
        runtime,
        location,
        adapter,
        ChangeSet(patients=list(patients.values()), appointments=appointments, cursor=""),
        now=now,
        resnapshot=frozenset(affected),
    )
    if found.events:
        wakeup.notify()
    return found


def _removed(
    appointment_id: str, fact: db.StoredAppointment, location: LocationRecord, now: datetime
) -> Appointment | None:
    """A stored appointment the EMR no longer has, as cancelled (None for a row stored before facts were kept)."""
    shown = appointment_of(appointment_id, fact, location)
    if shown is None:
        return None
    stamp = max(now, fact.emr_updated_at) if fact.emr_updated_at is not None else now
    return msgspec.structs.replace(shown, status=AppointmentStatus.CANCELLED, updated_at=stamp)


async def _gone_since(
    adapter: AnyAdapter,
    location: LocationRecord,
    stored: dict[str, dict[str, db.StoredAppointment]],
    listed: set[str],
    deletions: Deletions,
    now: datetime,
) -> list[Appointment]:
    """The stored appointments of re-snapshotted patients that the EMR no longer has: not listed now, and read as
    not found (already, for `deletions.vanished`; once more here for the others, at most `deletions.max_reads`)."""
    out: list[Appointment] = []
    reads = 0
    for theirs in stored.values():
        for appointment_id, fact in sorted(theirs.items()):
            if appointment_id in listed or AppointmentStatus(fact.status) in GONE:
                continue
            if appointment_id not in deletions.vanished:
                if reads >= deletions.max_reads:
                    continue
                reads += 1
                try:
                    await adapter.get_appointment(appointment_id)
                    continue  # still there: a listing that lags, not a deletion
                except NotFound:
                    pass
            removed = _removed(appointment_id, fact, location, now)
            if removed is not None:
                out.append(removed)
    return out

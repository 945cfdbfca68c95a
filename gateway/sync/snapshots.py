"""The patient snapshot `patient.updated` carries, and the digest that decides if it changed.

Built from the patient's record and their appointments at this location; the detector supplies the appointments
from the facts the gateway stores (`gateway.storage.sync`), so a snapshot costs no appointment read.

Definitions (documented in docs/change-detection.md):
- last appointment: the latest one that started before now, whatever its status (so a subscriber sees that the
  last one was cancelled or missed, as the seed's `last_appointment_cancelled_at` / `_did_not_arrive` expect);
- upcoming appointment: the earliest one starting after now that is neither cancelled nor a no-show;
- visits: arrived, checked-in or fulfilled, or still `booked` once its start has passed (the EMR was not told);
- total: every appointment of the patient at this location, cancelled ones included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import msgspec

from gateway.catalog import Catalog
from schemas.appointments import Appointment, AppointmentStatus
from schemas.patients import Patient
from schemas.webhooks import AppointmentSummary, PatientSnapshot

CatalogSource = Callable[[], Awaitable[Catalog]]

VISITED = frozenset({AppointmentStatus.ARRIVED, AppointmentStatus.CHECKED_IN, AppointmentStatus.FULFILLED})
NOT_HAPPENING = frozenset({AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW})


class BuiltSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    snapshot: PatientSnapshot
    digest: str
    source_updated_at: datetime | None  # the newest EMR `updated_at` it was built from: tells a stale build


def sha256_of(value: msgspec.Struct) -> str:
    """msgspec encodes a Struct's fields in declaration order, so equal values give equal bytes."""
    return hashlib.sha256(msgspec.json.encode(value)).hexdigest()


def snapshot_digest(snapshot: PatientSnapshot) -> str:
    """`updated_at` is left out: an edit to a field the snapshot does not carry must not wake subscribers."""
    stable = msgspec.structs.replace(snapshot, patient=msgspec.structs.replace(snapshot.patient, updated_at=None))
    return sha256_of(stable)


def summarize(appointment: Appointment, catalog: Catalog) -> AppointmentSummary:
    practitioners = {p.id: p.name for p in catalog.practitioners}
    services = {s.id: s.name for s in catalog.services}
    places = {loc.id: loc.name for loc in catalog.locations}
    place = appointment.emr_location_id
    location_name = places.get(place) if place else None
    if location_name is None and len(catalog.locations) == 1:
        location_name = catalog.locations[0].name
    cancelled = appointment.status == AppointmentStatus.CANCELLED
    return AppointmentSummary(
        id=appointment.id,
        status=appointment.status,
        start=appointment.start,
        end=appointment.end,
        time_zone=appointment.time_zone,
        practitioner_id=appointment.practitioner_id,
        practitioner_name=practitioners.get(appointment.practitioner_id),
        service_id=appointment.service_id,
        service_name=services.get(appointment.service_id),
        location_id=appointment.location_id,
        location_name=location_name,
        cancelled_at=None,  # the normalized Appointment does not carry the EMR's cancelled_at (see docs)
        cancel_reason=appointment.cancel_reason.value if cancelled and appointment.cancel_reason else None,
    )


def snapshot_of(patient: Patient, appointments: list[Appointment], catalog: Catalog, now: datetime) -> PatientSnapshot:
    ordered = sorted(appointments, key=lambda a: (a.start, a.id))
    past = [a for a in ordered if a.start <= now]
    upcoming = [a for a in ordered if a.start > now and a.status not in NOT_HAPPENING]
    visits = [a for a in ordered if a.status in VISITED or (a.status == AppointmentStatus.BOOKED and a.start <= now)]
    return PatientSnapshot(
        patient=patient,
        last_appointment=summarize(past[-1], catalog) if past else None,
        upcoming_appointment=summarize(upcoming[0], catalog) if upcoming else None,
        upcoming_count=len(upcoming),
        visit_count=len(visits),
        cancellation_count=sum(1 for a in ordered if a.status == AppointmentStatus.CANCELLED),
        no_show_count=sum(1 for a in ordered if a.status == AppointmentStatus.NOSHOW),
        total_appointments=len(ordered),
    )


def built(patient: Patient, appointments: list[Appointment], catalog: Catalog, now: datetime) -> BuiltSnapshot:
    """The snapshot of `patient` from their appointments at this location, with its digest and newest source stamp."""
    snapshot = snapshot_of(patient, appointments, catalog, now)
    stamps = [s for s in [patient.updated_at, *(a.updated_at for a in appointments)] if s is not None]
    return BuiltSnapshot(
        snapshot=snapshot, digest=snapshot_digest(snapshot), source_updated_at=max(stamps) if stamps else None
    )

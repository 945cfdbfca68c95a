"""Intents to adapter calls: the same use cases (`gateway.usecases`) as /v1, for every EMR."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import msgspec

from adapters.errors import NotFound, SlotUnavailable
from gateway.catalog import Catalog
from gateway.compat.bodies import ProvisionalContext
from gateway.compat.intents import (
    AvailabilityIntent,
    BookIntent,
    CancelIntent,
    Intent,
    LocationRef,
    PatientAppointmentsIntent,
    PatientIntent,
    RescheduleIntent,
    Target,
)
from gateway.errors import NotFoundError, UnknownService, ValidationFailed
from gateway.resolver import lookup_or_create_patient, norm, resolve_practitioner, resolve_service
from gateway.times import now_utc, to_instant, zone
from gateway.usecases import appointments, operations
from gateway.usecases.appointments import Booking, Move
from gateway.usecases.operations import ExternalLink
from gateway.usecases.scope import LocationScope
from schemas.appointments import Appointment, AppointmentStatus
from schemas.availability import Slot
from schemas.catalog import Practitioner, Service
from schemas.commands import AppointmentQuery, AvailabilityQuery
from schemas.common import Out
from schemas.patients import Patient, PatientQuery
from schemas.problems import FieldError
from schemas.refs import PatientRef, ServiceRef

# External appointment ids in ClinicSync bodies are GoHighLevel calendar ids: the same link space as /ghl/v1.
LINK_SOURCE = "ghl"
MAX_RANGE = timedelta(days=62)


class Outcome(Out):
    """What a shaper needs to answer in the caller's documented format."""

    time_zone: str
    catalog: Catalog
    appointment: Appointment | None = None
    appointments: list[Appointment] = msgspec.field(default_factory=list)
    slots: list[Slot] = msgspec.field(default_factory=list)
    patient: Patient | None = None
    created: bool = False
    provisional: ProvisionalContext | None = None
    replayed: bool = False


def check_location(scope: LocationScope, catalog: Catalog, ref: LocationRef | None) -> None:
    """A key reaches one location: naming another is 404 (never 403), as everywhere in the gateway."""
    if ref is None:
        return
    if ref.id is not None and ref.id not in {scope.location_id, *(loc.id for loc in catalog.locations)}:
        raise NotFoundError("this API key does not reach that location")
    if ref.name is not None and catalog.locations:
        wanted = norm(ref.name)
        if not any(wanted in norm(loc.name) or norm(loc.name) in wanted for loc in catalog.locations):
            raise NotFoundError(f"this API key's location is not called {ref.name!r}")


def service_of(catalog: Catalog, ref: ServiceRef) -> Service:
    """A code that matches no service code is tried as a name: several EMRs have no codes, and ClinicSync
    clients put the appointment type's name in `serviceCode`."""
    try:
        return resolve_service(catalog, ref)
    except UnknownService:
        if ref.code is None:
            raise
        return resolve_service(catalog, ServiceRef(name=ref.code), field="service.code")


def _instant(value: datetime, tz: str, field: str) -> datetime:
    zone(tz)
    return to_instant(value, tz, field=field)


async def _book(scope: LocationScope, intent: BookIntent) -> Outcome:
    catalog = await scope.catalog()
    check_location(scope, catalog, intent.location)
    booking = msgspec.structs.replace(
        intent.booking, service=ServiceRef(id=service_of(catalog, intent.booking.service).id)
    )
    tz = booking.time_zone or scope.time_zone
    start = _instant(booking.start, tz, "start")
    if intent.provisional:
        return Outcome(
            time_zone=scope.time_zone, catalog=catalog, provisional=await _provisional(scope, catalog, booking, tz)
        )
    store = scope.runtime.store
    if intent.external_id is not None:
        linked = await store.find_link(scope.location_id, LINK_SOURCE, intent.external_id)
        if linked is not None:
            try:
                existing = await scope.get_appointment(linked)
            except NotFound:
                existing = None
            if existing is not None and existing.status is AppointmentStatus.BOOKED and existing.start == start:
                # A retried webhook: the appointment it asked for is already there.
                return Outcome(time_zone=scope.time_zone, catalog=catalog, appointment=existing, replayed=True)
    link = ExternalLink(source=LINK_SOURCE, external_id=intent.external_id) if intent.external_id else None
    appointment = await appointments.book(scope, msgspec.structs.replace(booking, end_is_hint=True, link=link))
    return Outcome(time_zone=scope.time_zone, catalog=catalog, appointment=appointment)


async def _provisional(scope: LocationScope, catalog: Catalog, booking: Booking, tz: str) -> ProvisionalContext:
    """Jane's createAppt: everything is resolved and the slot checked, nothing is written to the EMR."""
    practitioner = resolve_practitioner(catalog, booking.practitioner)
    service = service_of(catalog, booking.service)
    start = _instant(booking.start, tz, "start_at")
    end = _instant(booking.end, tz, "end_at") if booking.end else start + timedelta(minutes=service.duration_minutes)
    if end <= start:
        raise ValidationFailed(
            "end_at must be after start_at", errors=[FieldError(field="end_at", message="not after start")]
        )
    patient, _ = await lookup_or_create_patient(scope.adapter, booking.patient, scope.time_zone)
    nearby = await scope.adapter.list_appointments(
        AppointmentQuery(practitioner_id=practitioner.id, start_from=start - timedelta(hours=12), start_to=end)
    )
    if any(a.status is not AppointmentStatus.CANCELLED and a.start < end and start < a.end for a in nearby):
        raise SlotUnavailable("the practitioner already has an appointment at that time")
    return ProvisionalContext(
        staff_member_id=practitioner.id,
        treatment_id=service.id,
        patient_id=patient.id,
        location_id=scope.location_id,
        start_at=start.isoformat().replace("+00:00", "Z"),
        end_at=end.isoformat().replace("+00:00", "Z"),
        time_zone=scope.time_zone,
        notes=booking.notes,
    )


async def appointment_id_of(scope: LocationScope, target: Target) -> str:
    """A linked external id first (GoHighLevel's), else the EMR's own id; or the patient's next booked one."""
    if target.ref is not None:
        linked = await scope.runtime.store.find_link(scope.location_id, LINK_SOURCE, target.ref)
        if linked is None:  # a booking for this id still being settled (its answer was lost): settle it now
            link = ExternalLink(source=LINK_SOURCE, external_id=target.ref)
            linked = await operations.find_linked(scope.runtime, scope.adapter, scope.principal.location, link)
        return linked or target.ref
    if target.patient is None:
        raise ValidationFailed("which appointment?", errors=[FieldError(field="appointment_id", message="required")])
    upcoming = await upcoming_for(scope, await find_patient(scope, target.patient))
    if not upcoming:
        raise NotFoundError("this caller has no upcoming booked appointment")
    return upcoming[0].id


async def upcoming_for(scope: LocationScope, patient: Patient) -> list[Appointment]:
    now = now_utc()
    found = await scope.adapter.list_appointments(AppointmentQuery(patient_id=patient.id, start_from=now))
    return sorted(
        (a for a in found if a.status is AppointmentStatus.BOOKED and a.start >= now), key=lambda a: (a.start, a.id)
    )


async def find_patient(scope: LocationScope, ref: PatientRef) -> Patient:
    """An existing patient only: by id, by e-mail/phone (with names where the EMR needs them), or by exact name."""
    if ref.id or ref.email or ref.phone:
        patient, _ = await lookup_or_create_patient(scope.adapter, ref, scope.time_zone, create=False)
        return patient
    if not (ref.first_name and ref.last_name):
        raise ValidationFailed(
            "give the patient's phone, e-mail, or first_name and last_name",
            errors=[FieldError(field="phone", message="required")],
        )
    found = await scope.adapter.find_patients(PatientQuery(first_name=ref.first_name, last_name=ref.last_name))
    exact = [
        p for p in found if norm(p.first_name) == norm(ref.first_name) and norm(p.last_name) == norm(ref.last_name)
    ]
    if len(exact) != 1:
        reason = "no patient has that name" if not exact else "several patients have that name; give a phone number"
        raise ValidationFailed(reason, errors=[FieldError(field="last_name", message=reason)])
    return exact[0]


async def _reschedule(scope: LocationScope, intent: RescheduleIntent) -> Outcome:
    catalog = await scope.catalog()
    check_location(scope, catalog, intent.location)
    tz = intent.time_zone or scope.time_zone
    start = _instant(intent.start, tz, "start")
    end = _instant(intent.end, tz, "end") if intent.end else None
    if end is not None and end <= start:
        raise ValidationFailed("end must be after start", errors=[FieldError(field="end", message="not after start")])
    appointment_id = await appointment_id_of(scope, intent.target)
    move = Move(appointment_id=appointment_id, start=start, end=end, practitioner=intent.practitioner, end_is_hint=True)
    # An EMR that replaces the appointment on a move gives a new id: the alias it records moves the link along.
    moved = await appointments.reschedule(scope, move)
    return Outcome(time_zone=scope.time_zone, catalog=catalog, appointment=moved)


async def _cancel(scope: LocationScope, intent: CancelIntent) -> Outcome:
    catalog = await scope.catalog()
    appointment_id = await appointment_id_of(scope, intent.target)
    cancelled = await appointments.cancel(scope, appointment_id, intent.reason, intent.note)
    return Outcome(time_zone=scope.time_zone, catalog=catalog, appointment=cancelled)


def _practitioners(catalog: Catalog, intent: AvailabilityIntent, service: Service) -> list[Practitioner]:
    if intent.practitioner is not None:
        return [resolve_practitioner(catalog, intent.practitioner)]
    offered = service.practitioner_ids
    return [p for p in catalog.practitioners if p.active and (offered is None or p.id in offered)]


async def _availability(scope: LocationScope, intent: AvailabilityIntent) -> Outcome:
    catalog = await scope.catalog()
    check_location(scope, catalog, intent.location)
    service = service_of(catalog, intent.service)
    tz = intent.time_zone or scope.time_zone
    now = now_utc()
    start = max(_instant(intent.start_from, tz, "start_date") if intent.start_from else now, now)
    end = _instant(intent.start_to, tz, "end_date") if intent.start_to else start + timedelta(days=intent.days)
    if end <= start:
        raise ValidationFailed(
            "the range must end after it starts, in the future", errors=[FieldError(field="end_date", message="empty")]
        )
    if end - start > MAX_RANGE:
        raise ValidationFailed(
            "the range may span at most 62 days", errors=[FieldError(field="end_date", message="too long")]
        )
    queries = [
        AvailabilityQuery(practitioner_id=p.id, service_id=service.id, start_from=start, start_to=end)
        for p in _practitioners(catalog, intent, service)
    ]
    if intent.earliest_only:
        found = await asyncio.gather(*(scope.adapter.next_available(q) for q in queries))
        slots = [s for s in found if s is not None and s.start >= start]
        slots = sorted(slots, key=lambda s: (s.start, s.practitioner_id))[:1]
    else:
        lists = await asyncio.gather(*(scope.adapter.availability(q) for q in queries))
        slots = sorted((s for group in lists for s in group), key=lambda s: (s.start, s.practitioner_id))
    return Outcome(time_zone=scope.time_zone, catalog=catalog, slots=slots)


async def _patient(scope: LocationScope, intent: PatientIntent) -> Outcome:
    catalog = await scope.catalog()
    patient, created = await lookup_or_create_patient(scope.adapter, intent.ref, scope.time_zone, create=intent.create)
    return Outcome(time_zone=scope.time_zone, catalog=catalog, patient=patient, created=created)


async def _patient_appointments(scope: LocationScope, intent: PatientAppointmentsIntent) -> Outcome:
    catalog = await scope.catalog()
    patient = await find_patient(scope, intent.ref)
    if intent.upcoming_only:
        appointments = await upcoming_for(scope, patient)
    else:
        found = await scope.adapter.list_appointments(AppointmentQuery(patient_id=patient.id))
        appointments = sorted(found, key=lambda a: (a.start, a.id))
    return Outcome(time_zone=scope.time_zone, catalog=catalog, patient=patient, appointments=appointments)


async def execute(scope: LocationScope, intent: Intent) -> Outcome:
    if isinstance(intent, BookIntent):
        return await _book(scope, intent)
    if isinstance(intent, RescheduleIntent):
        return await _reschedule(scope, intent)
    if isinstance(intent, CancelIntent):
        return await _cancel(scope, intent)
    if isinstance(intent, AvailabilityIntent):
        return await _availability(scope, intent)
    if isinstance(intent, PatientIntent):
        return await _patient(scope, intent)
    if isinstance(intent, PatientAppointmentsIntent):
        return await _patient_appointments(scope, intent)
    catalog = await scope.catalog()
    check_location(scope, catalog, intent.location)
    return Outcome(time_zone=scope.time_zone, catalog=catalog)

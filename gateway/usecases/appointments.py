"""Book, reschedule and cancel: every check the gateway can make happens here, once, before any EMR write.

Entry points hand in a `Booking` or a `Move` with times already read from their wire format (naive wall times stay
naive and are read in `time_zone`, else the location's); what comes back is the appointment as the EMR stored it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from adapters.base import Capability
from adapters.errors import AdapterError, OutcomeUnknown, SlotUnavailable
from gateway.config import GatewayConfig
from gateway.errors import GatewayError, ValidationFailed
from gateway.resolver import lookup_or_create_patient, resolve_practitioner, resolve_service
from gateway.sync.immediate import job
from gateway.times import TimeBounds, now_utc, to_instant, zone
from gateway.usecases import operations, unit
from gateway.usecases.operations import ExternalLink
from gateway.usecases.scope import LocationScope
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.commands import AppointmentQuery, BookCommand, CancelCommand, RescheduleCommand
from schemas.problems import FieldError
from schemas.refs import PatientRef, PractitionerRef, ServiceRef
from schemas.webhooks import EventType

# How far back the calendar is read to find an appointment that started earlier and still overlaps.
OVERLAP_LOOKBACK = timedelta(hours=12)


class Booking(msgspec.Struct, frozen=True, kw_only=True):
    """A booking as every entry point asks for it. `end_is_hint`: the end came from a calendar slot (GoHighLevel,
    ClinicSync), not from a caller choosing a length; an EMR that fixes the length by service then books the
    service's length instead of refusing."""

    practitioner: PractitionerRef
    service: ServiceRef
    patient: PatientRef
    start: datetime
    end: datetime | None = None
    time_zone: str | None = None
    notes: str | None = None
    end_is_hint: bool = False
    link: ExternalLink | None = None  # e.g. GoHighLevel's appointment id, linked once the booking exists


class Move(msgspec.Struct, frozen=True, kw_only=True):
    """A reschedule (and/or new notes or practitioner) of one appointment."""

    appointment_id: str
    start: datetime | None = None
    end: datetime | None = None
    time_zone: str | None = None
    practitioner: PractitionerRef | None = None
    notes: str | None = None
    end_is_hint: bool = False


def time_bounds(config: GatewayConfig) -> TimeBounds:
    return TimeBounds(
        max_past=timedelta(seconds=config.booking_max_past_seconds),
        max_ahead=timedelta(days=config.booking_max_ahead_days),
        min_length=timedelta(minutes=config.appointment_min_minutes),
        max_length=timedelta(minutes=config.appointment_max_minutes),
    )


def _fixed_length(scope: LocationScope, length: timedelta, service_minutes: int, end_is_hint: bool) -> bool:
    """True when the EMR derives the end from the service: then an explicit end is dropped (a hint) or refused."""
    if scope.adapter.supports(Capability.CUSTOM_DURATION):
        return False
    if length != timedelta(minutes=service_minutes) and not end_is_hint:
        raise ValidationFailed(
            f"{scope.adapter.display_name} sets an appointment's length from its service "
            f"({service_minutes} min): omit end",
            errors=[FieldError(field="end", message="this EMR books the service's length")],
        )
    return True


async def _slot_is_free(scope: LocationScope, practitioner_id: str, start: datetime, end: datetime) -> None:
    """The practitioner's calendar, read before a new patient is created for this booking: a slot that is taken
    must not leave a new chart behind. (The adapter checks again around its own write.)"""
    if not scope.adapter.supports(Capability.LIST_APPOINTMENTS):
        return
    nearby = await scope.adapter.list_appointments(
        AppointmentQuery(practitioner_id=practitioner_id, start_from=start - OVERLAP_LOOKBACK, start_to=end)
    )
    if any(a.status is not AppointmentStatus.CANCELLED and a.start < end and start < a.end for a in nearby):
        raise SlotUnavailable("the practitioner already has an appointment at that time")


async def book(scope: LocationScope, booking: Booking) -> Appointment:
    """Resolve every reference once, check every bound, then hand the adapter ids and instants only."""
    tz = booking.time_zone or scope.time_zone
    zone(tz)
    start = to_instant(booking.start, tz, field="start")
    end = to_instant(booking.end, tz, field="end") if booking.end is not None else None
    bounds = time_bounds(scope.runtime.config)
    bounds.check(start, end, now_utc())
    catalog = await scope.catalog()
    practitioner = resolve_practitioner(catalog, booking.practitioner)
    service = resolve_service(catalog, booking.service)
    if end is not None and _fixed_length(scope, end - start, service.duration_minutes, booking.end_is_hint):
        end = None  # the EMR derives it; the answer carries the real end
    if end is None:
        bounds.check_length(timedelta(minutes=service.duration_minutes), field="service")
    slot_end = end or start + timedelta(minutes=service.duration_minutes)
    runtime, location = scope.runtime, scope.principal.location
    key = operations.request_key(location.id, booking.link, booking.patient, practitioner.id, service.id, start)

    def command_for(patient_id: str) -> BookCommand:
        return BookCommand(
            patient_id=patient_id,
            practitioner_id=practitioner.id,
            service_id=service.id,
            start=start,
            end=end,
            notes=booking.notes,
        )

    # A patient given by id is used as given (the EMR refuses an unknown one at the write; no read first), and the
    # operation is taken with its command in one write.
    known = command_for(booking.patient.id) if booking.patient.id else None
    claimed = await operations.claim(runtime, scope.adapter, location, key, booking.link, known)
    if isinstance(claimed, Appointment):
        return claimed  # an earlier attempt at this very booking made it (its answer was lost, or it crashed)
    if known is not None:
        command = msgspec.structs.replace(known, operation_id=claimed.operation_id)
    else:

        async def before_create() -> None:
            await _slot_is_free(scope, practitioner.id, start, slot_end)

        try:
            patient, _ = await lookup_or_create_patient(
                scope.adapter, booking.patient, scope.time_zone, before_create=before_create
            )
            command = await operations.ready(runtime, claimed, command_for(patient.id))
        except (AdapterError, GatewayError):
            await operations.abandon(runtime, claimed)
            raise
    try:
        booked = await scope.adapter.book(command)
    except OutcomeUnknown as exc:
        exc.operation_id = claimed.operation_id  # what the caller quotes is the operation the reconciler watches
        await operations.unknown(runtime, command)
        raise
    except (AdapterError, GatewayError):
        await operations.failed(runtime, command)
        raise
    # Anything else (a bug, a cancelled request) leaves the operation pending: its lease lapses and the reconciler
    # looks for what the EMR may have stored.
    # The outcome, the link and the snapshot job in one transaction (with the idempotency outcome, if any); the
    # caller does not wait for the snapshot's EMR reads.
    await unit.commit(runtime.store, operations.booked(runtime, location, command, booked, booking.link))
    return booked


async def reschedule(scope: LocationScope, move: Move) -> Appointment:
    if move.start is None and move.end is None and move.notes is None and move.practitioner is None:
        raise ValidationFailed("nothing to change: give start, end, practitioner or notes")
    tz = move.time_zone or scope.time_zone
    zone(tz)
    start = to_instant(move.start, tz, field="start") if move.start is not None else None
    end = to_instant(move.end, tz, field="end") if move.end is not None else None
    bounds = time_bounds(scope.runtime.config)
    if start is not None:
        bounds.check(start, end, now_utc())
    practitioner_id = None
    if move.practitioner is not None:
        practitioner_id = resolve_practitioner(await scope.catalog(), move.practitioner).id
    command = RescheduleCommand(
        appointment_id=move.appointment_id, start=start, end=end, practitioner_id=practitioner_id, notes=move.notes
    )
    moved = await scope.reschedule(command, end_is_hint=move.end_is_hint)
    await unit.commit(scope.runtime.store, [job(scope.principal.location, moved, EventType.APPOINTMENT_RESCHEDULED)])
    return moved


async def cancel(
    scope: LocationScope, appointment_id: str, reason: CancelReason, note: str | None = None
) -> Appointment:
    cancelled = await scope.cancel(CancelCommand(appointment_id=appointment_id, reason=reason, note=note))
    await unit.commit(scope.runtime.store, [job(scope.principal.location, cancelled, EventType.APPOINTMENT_CANCELLED)])
    return cancelled


async def list_for_patient(
    scope: LocationScope, patient_id: str, start_from: datetime | None, start_to: datetime | None
) -> list[Appointment]:
    query = AppointmentQuery(patient_id=patient_id, start_from=start_from, start_to=start_to)
    return sorted(await scope.adapter.list_appointments(query), key=lambda a: a.start)

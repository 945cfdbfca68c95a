"""One appointment per request, whatever the EMR does late or the gateway does when it crashes.

Every booking is recorded as an operation before anything is sent to the EMR (`pending`, owned by the request for
`idempotency_lock_seconds`) and settled after. The operation's id travels with the command and is written as a
marker where the EMR keeps notes, so the booking it made is recognised as this one and no other.

- The EMR's answer was lost (`OutcomeUnknown`): the operation becomes `unknown` and the reconciler (the worker's
  `reconcile_tick`) keeps looking for the booking until `settle_by`; it adopts it when it appears (the webhook event
  goes out, the GoHighLevel link is written) or records it `absent`.
- The gateway crashed mid-booking: the lease lapses and the reconciler, or the caller's retry, finds the booking
  and adopts it; the retry answers 201 with it, as the first request should have, instead of `409
  slot_unavailable` for the caller's own appointment.
- The caller booked again before a lost booking appeared: the old operation is superseded, and if its booking
  arrives later anyway it is cancelled, so one request never becomes two appointments.
- The same booking arriving while another request is making it gets `409 idempotency_in_flight`.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

import msgspec
from sqlalchemy.engine import Connection

from adapters.errors import AdapterError
from adapters.verify import MISMATCH_NOTE, Asked, differences
from gateway.emr import AnyAdapter
from gateway.errors import IdempotencyInFlight
from gateway.runtime import Runtime
from gateway.storage import operations as ops
from gateway.storage.ids import new_id
from gateway.storage.operations import OperationRecord
from gateway.storage.records import LocationRecord
from gateway.sync.immediate import job
from gateway.times import now_utc
from gateway.usecases import unit
from gateway.usecases.unit import Deferred
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.commands import BookCommand, CancelCommand
from schemas.refs import PatientRef
from schemas.webhooks import EventType

log = logging.getLogger("emr_gateway.operations")

WATCH = timedelta(hours=1)  # how long a lost booking is looked for before it is recorded absent
FIRST_CHECK = timedelta(seconds=5)
MAX_INTERVAL = timedelta(minutes=5)
UNDO_NOTE = "Cancelled automatically by the EMR Gateway: it arrived after the same booking was made again."
_COMMAND = msgspec.json.Decoder(BookCommand)


class ExternalLink(msgspec.Struct, frozen=True, kw_only=True):
    """An id another system holds for the booking (GoHighLevel's appointment id), linked once the booking exists."""

    source: str
    external_id: str


def request_key(
    location_id: str, link: ExternalLink | None, patient: PatientRef, practitioner_id: str, service_id: str,
    start: datetime,
) -> str:  # fmt: skip
    """The booking's identity, known before the patient is looked up or created (so two identical requests at once
    never create two patients either): another system's id for it (GoHighLevel's appointment id) where there is
    one, else the patient as the caller named them, the practitioner, the service and the start instant."""
    if link is not None:
        raw = "|".join((location_id, "link", link.source, link.external_id))
    else:
        who = "|".join(
            (patient.id or "", (patient.email or "").casefold(), patient.phone or "",
             (patient.first_name or "").casefold(), (patient.last_name or "").casefold(),
             patient.date_of_birth.isoformat() if patient.date_of_birth else "")
        )  # fmt: skip
        raw = "|".join((location_id, "request", who, practitioner_id, service_id, start.isoformat()))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def _stored_command(command: BookCommand) -> bytes:
    """Ids and times only: the caller's notes may carry anything, and the reconciler does not need them."""
    return msgspec.json.encode(msgspec.structs.replace(command, notes=None))


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """This request's operation, taken before anything is written (a patient included)."""

    operation_id: str
    link: ExternalLink | None


async def claim(
    runtime: Runtime,
    adapter: AnyAdapter,
    location: LocationRecord,
    key: str,
    link: ExternalLink | None,
    command: BookCommand | None = None,
) -> Claim | Appointment:
    """Take the booking's operation, or return the appointment an earlier attempt at the same booking made (its
    answer was lost, or its process died): adopted now. Raises IdempotencyInFlight while a live request makes it."""
    store, now = runtime.store, now_utc()
    operation_id = new_id("op")
    fresh = ops.Fresh(
        operation_id=operation_id,
        location_id=location.id,
        request_key=key,
        command=_stored_command(msgspec.structs.replace(command, operation_id=operation_id)) if command else b"",
        link=(link.source, link.external_id) if link else None,
        owner=f"request:{operation_id}",
        lease_until=now + timedelta(seconds=runtime.config.idempotency_lock_seconds),
        settle_by=now + WATCH,
        now=now,
    )
    try:
        priors = await ops.begin_unless_seen(store, fresh, now - WATCH)
    except ops.AlreadyPending:
        raise IdempotencyInFlight("the same booking is being made right now; retry in a moment") from None
    if not priors:
        return Claim(operation_id=operation_id, link=link)  # the common case: one write, nothing earlier
    for prior in priors:
        if prior.state == ops.PENDING and prior.lease_until is not None and prior.lease_until > now:
            raise IdempotencyInFlight("the same booking is being made right now; retry in a moment")
        if prior.state in ops.OPEN:
            found = await settle(runtime, adapter, location, prior, by_retry=True) if prior.command else None
            if found is not None:
                return found
            await ops.supersede(store, prior.id, operation_id, now)
        elif prior.state in (ops.ADOPTED, ops.DONE) and prior.appointment_id is not None and link is not None:
            # The same external booking (a GoHighLevel retry) made before: never twice.
            try:
                earlier = await adapter.get_appointment(prior.appointment_id)
            except AdapterError:
                continue
            if earlier.status is not AppointmentStatus.CANCELLED:
                await _link(runtime, location, link, earlier)
                return earlier
        elif prior.state == ops.ADOPTED and prior.appointment_id is not None:
            try:
                earlier = await adapter.get_appointment(prior.appointment_id)
            except AdapterError:
                continue
            if earlier.status is not AppointmentStatus.CANCELLED:
                return earlier  # found after its answer was lost: the retry gets it, as the first should have
    try:
        await ops.begin(store, fresh)
    except ops.AlreadyPending:
        raise IdempotencyInFlight("the same booking is being made right now; retry in a moment") from None
    return Claim(operation_id=operation_id, link=link)


async def ready(runtime: Runtime, claim: Claim, command: BookCommand) -> BookCommand:
    """Just before the EMR write: the resolved command is stored with the operation (the reconciler needs it to
    look for the booking) and carries the operation id (the marker)."""
    command = msgspec.structs.replace(command, operation_id=claim.operation_id)
    await ops.set_command(runtime.store, claim.operation_id, _stored_command(command))
    return command


async def abandon(runtime: Runtime, claim: Claim) -> None:
    """Refused before anything reached the EMR's appointments (a check, the patient lookup)."""
    await ops.settle(runtime.store, claim.operation_id, ops.FAILED, now_utc())


def booked(
    runtime: Runtime,
    location: LocationRecord,
    command: BookCommand,
    appointment: Appointment,
    link: ExternalLink | None,
) -> list[Deferred]:
    """What a successful booking records, in one transaction: the operation's outcome, the external link, and the
    job that builds its webhook snapshot."""
    operation_id = command.operation_id

    def settled(conn: Connection) -> None:
        if operation_id is not None:
            ops.settle_in(conn, operation_id, ops.DONE, now_utc(), appointment_id=appointment.id)

    writes: list[Deferred] = [settled]
    if link is not None:
        writes.append(_link_write(runtime, location, link, appointment))
    writes.append(job(location, appointment, EventType.APPOINTMENT_BOOKED))
    return writes


async def failed(runtime: Runtime, command: BookCommand) -> None:
    """A definite answer: nothing was booked (or what was booked was undone)."""
    if command.operation_id is not None:
        await ops.settle(runtime.store, command.operation_id, ops.FAILED, now_utc())


async def unknown(runtime: Runtime, command: BookCommand) -> None:
    if command.operation_id is not None:
        now = now_utc()
        await ops.mark_unknown(runtime.store, command.operation_id, now, now + FIRST_CHECK)


def _link_write(runtime: Runtime, location: LocationRecord, link: ExternalLink, appointment: Appointment) -> Deferred:
    def write(conn: Connection) -> None:
        runtime.store.link_appointment_in(conn, location.id, link.source, link.external_id, appointment.id)

    return write


async def _link(
    runtime: Runtime, location: LocationRecord, link: ExternalLink | None, appointment: Appointment
) -> None:
    if link is not None:
        await runtime.store.link_appointment(location.id, link.source, link.external_id, appointment.id)


async def settle(
    runtime: Runtime, adapter: AnyAdapter, location: LocationRecord, op: OperationRecord, *, by_retry: bool = False
) -> Appointment | None:
    """Look for the booking `op` may have made. Found: adopted (or undone if a newer operation booked the same
    thing). Not found: the caller decides (`by_retry`), or the reconciler checks again later until `settle_by`."""
    store, now = runtime.store, now_utc()
    if not op.command:  # it died before anything was sent for an appointment: nothing to find
        await ops.settle(store, op.id, ops.ABSENT, now)
        return None
    command = _COMMAND.decode(op.command)
    found = await adapter.find_booking(command)
    if found is not None and op.superseded_by is not None:
        newer = await ops.get(store, op.superseded_by)
        if newer is not None and newer.appointment_id == found.id:
            found = None  # that is the newer operation's booking, not a late arrival of this one
        else:
            await _undo(runtime, adapter, location, op, found, now)
            return None
    if found is not None and differences(_asked(command), found):
        # It landed, but not as asked (another zone, another length): verified writes apply to late ones too.
        await _undo(runtime, adapter, location, op, found, now, note=MISMATCH_NOTE)
        return None
    if found is not None:
        adopted = False

        def adopt(conn: Connection) -> None:
            nonlocal adopted
            adopted = ops.settle_in(conn, op.id, ops.ADOPTED, now, appointment_id=found.id)
            if adopted:
                if op.link_source is not None and op.link_external_id is not None:
                    link = ExternalLink(source=op.link_source, external_id=op.link_external_id)
                    _link_write(runtime, location, link, found)(conn)
                job(location, found, EventType.APPOINTMENT_BOOKED)(conn)

        await unit.commit(store, [adopt])
        if adopted:
            log.info("a booking whose answer was lost was found and adopted", extra={"operation_id": op.id})
        return found
    if by_retry:
        return None
    if now >= op.settle_by:
        await ops.settle(store, op.id, ops.ABSENT, now)
    else:
        interval = min(MAX_INTERVAL, FIRST_CHECK * (2 ** min(op.checks, 10)))
        await ops.check_later(store, op.id, op.owner or "", now, min(op.settle_by, now + interval))
    return None


def _asked(command: BookCommand) -> Asked:
    return Asked(
        start=command.start, end=command.end, practitioner_id=command.practitioner_id, patient_id=command.patient_id
    )


async def _undo(
    runtime: Runtime,
    adapter: AnyAdapter,
    location: LocationRecord,
    op: OperationRecord,
    late: Appointment,
    now: datetime,
    note: str = UNDO_NOTE,
) -> None:
    try:
        cancelled = await adapter.cancel(CancelCommand(appointment_id=late.id, reason=CancelReason.OTHER, note=note))
    except AdapterError as exc:
        log.warning("could not cancel a late duplicate", extra={"operation_id": op.id, "error": type(exc).__name__})
        await ops.check_later(runtime.store, op.id, op.owner or "", now, now + FIRST_CHECK)
        return

    def undone(conn: Connection) -> None:
        if ops.settle_in(conn, op.id, ops.UNDONE, now, appointment_id=late.id):
            job(location, cancelled, EventType.APPOINTMENT_CANCELLED)(conn)

    await unit.commit(runtime.store, [undone])
    log.warning("a late duplicate booking arrived and was cancelled", extra={"operation_id": op.id})


async def find_linked(
    runtime: Runtime, adapter: AnyAdapter, location: LocationRecord, link: ExternalLink
) -> str | None:
    """The EMR appointment for an external id whose booking is still being settled (a GoHighLevel cancel that
    arrives after a crash mid-booking): settle it now and link it."""
    now = now_utc()
    for op in await ops.open_with_link(runtime.store, location.id, link.source, link.external_id):
        if op.state == ops.PENDING and op.lease_until is not None and op.lease_until > now:
            continue  # still being booked by a live request
        found = await settle(runtime, adapter, location, op, by_retry=True)
        if found is not None:
            return found.id
    return None


async def reconcile_tick(runtime: Runtime, worker_id: str, limit: int = 20) -> int:
    """The worker's share: settle every operation nobody is working on. Returns how many it looked at."""
    now = now_utc()
    claimed = await ops.claim_due(runtime.store, worker_id, now, lease_seconds=120.0, limit=limit)
    for op in claimed:
        location = await runtime.store.get_location(op.location_id)
        if location is None:
            continue
        try:
            adapter = await runtime.adapters.get(location)
            await settle(runtime, adapter, location, op)
        except Exception as exc:  # one EMR's trouble must not stop the others; the operation is checked again
            log.warning("reconciling an operation failed", extra={"operation_id": op.id, "error": type(exc).__name__})
            await ops.check_later(runtime.store, op.id, worker_id, now, now + FIRST_CHECK)
    return len(claimed)

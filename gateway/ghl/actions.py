"""Book, reschedule and cancel for a GHL appointment id, shared by the workflow routes and marketplace events.
The GHL id is linked to the EMR appointment at booking, so later calls that carry only the GHL id act on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import State

from gateway.errors import NotFoundError, ValidationFailed
from gateway.ghl.idempotency import book_key, cancel_key, reschedule_prefix, run_ghl
from gateway.resolver import resolve_practitioner
from gateway.usecases import appointments, operations
from gateway.usecases.appointments import Booking, Move
from gateway.usecases.operations import ExternalLink
from gateway.usecases.scope import LocationScope
from schemas.appointments import AppointmentStatus, CancelReason
from schemas.problems import FieldError
from schemas.refs import PatientRef, PractitionerRef, ServiceRef

SOURCE = "ghl"  # appointment_links.source
NOTES_MAX = 4000


class Intent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a GHL call asks for: its idempotency fingerprint (so the same change via another path is the same call)."""

    action: str
    ghl_id: str
    start: datetime | None = None
    end: datetime | None = None
    practitioner: PractitionerRef | None = None
    service: ServiceRef | None = None
    patient: PatientRef | None = None


class BookRequest(msgspec.Struct, kw_only=True):
    ghl_id: str
    practitioner: PractitionerRef
    service: ServiceRef
    patient: PatientRef
    start: datetime
    end: datetime | None
    time_zone: str
    notes: str | None = None


def require(value: str | None, field: str, hint: str = "") -> str:
    if value is None or not value.strip():
        raise ValidationFailed(f"{field} is required{hint}", errors=[FieldError(field=field, message="required")])
    return value.strip()


async def linked_emr_id(scope: LocationScope, ghl_id: str) -> str:
    emr_id = await scope.runtime.store.find_link(scope.location_id, SOURCE, ghl_id)
    if emr_id is None:
        # A booking for this id whose answer was lost (or whose process crashed) is settled now, then linked.
        link = ExternalLink(source=SOURCE, external_id=ghl_id)
        emr_id = await operations.find_linked(scope.runtime, scope.adapter, scope.principal.location, link)
    if emr_id is None:
        raise NotFoundError(
            f"no EMR appointment is linked to GHL appointment {ghl_id} at this location "
            "(it was not booked through the gateway's GHL routes)"
        )
    return emr_id


async def book(request: Request[Any, Any, State], scope: LocationScope, req: BookRequest) -> Response[Any]:
    store = scope.runtime.store

    async def work() -> Response[Any]:
        existing = await store.find_link(scope.location_id, SOURCE, req.ghl_id)
        if existing is not None:
            current = await scope.get_appointment(existing)
            if current.status != AppointmentStatus.CANCELLED:
                return Response(current, status_code=200)  # booked before (beyond the replay window): never twice
        booking = Booking(
            practitioner=req.practitioner,
            service=req.service,
            patient=req.patient,
            start=req.start,
            end=req.end,
            time_zone=req.time_zone,
            notes=(req.notes or None) and req.notes[:NOTES_MAX],
            end_is_hint=True,
            link=ExternalLink(source=SOURCE, external_id=req.ghl_id),
        )
        appointment = await appointments.book(scope, booking)  # links the GHL id once the booking exists
        return Response(appointment, status_code=201)

    intent = Intent(
        action="book",
        ghl_id=req.ghl_id,
        start=req.start,
        end=req.end,
        practitioner=req.practitioner,
        service=req.service,
        patient=req.patient,
    )
    return await run_ghl(
        request,
        scope.runtime,
        scope.principal.location,
        action="book",
        key=book_key(req.ghl_id),
        intent=intent,
        work=work,
    )


async def reschedule(
    request: Request[Any, Any, State],
    scope: LocationScope,
    ghl_id: str,
    start: datetime,
    end: datetime | None,
    practitioner: PractitionerRef | None = None,
) -> Response[Any]:
    if end is not None and end <= start:
        end = None  # GHL sometimes sends endTime == startTime: keep the appointment's length instead
    emr_id = await linked_emr_id(scope, ghl_id)

    async def work() -> Response[Any]:
        practitioner_id = None
        if practitioner is not None:
            practitioner_id = resolve_practitioner(await scope.catalog(), practitioner, "customData").id
        current = await scope.get_appointment(emr_id)
        unchanged = current.start == start and (end is None or current.end == end)
        if unchanged and practitioner_id in (None, current.practitioner_id):
            return Response(current, status_code=200)
        move = Move(
            appointment_id=emr_id,
            start=start,
            end=end,
            practitioner=PractitionerRef(id=practitioner_id) if practitioner_id else None,
            end_is_hint=True,
        )
        # An EMR that reschedules by rebooking gives a new id: the alias it records moves the GHL link along.
        return Response(await appointments.reschedule(scope, move), status_code=200)

    stamp = f"{start.isoformat()}/{end.isoformat() if end else ''}"
    key = reschedule_prefix(ghl_id) + stamp
    intent = Intent(action="reschedule", ghl_id=ghl_id, start=start, end=end)
    return await run_ghl(
        request,
        scope.runtime,
        scope.principal.location,
        action="reschedule",
        key=key,
        intent=intent,
        work=work,
        supersedes=reschedule_prefix(ghl_id),
    )


def cancel_reason(value: object) -> CancelReason:
    try:
        return CancelReason(str(value).strip().lower())
    except ValueError:
        return CancelReason.OTHER


async def cancel(
    request: Request[Any, Any, State], scope: LocationScope, ghl_id: str, reason: CancelReason
) -> Response[Any]:
    emr_id = await linked_emr_id(scope, ghl_id)

    async def work() -> Response[Any]:
        current = await scope.get_appointment(emr_id)
        if current.status == AppointmentStatus.CANCELLED:
            return Response(current, status_code=200)
        return Response(await appointments.cancel(scope, emr_id, reason), status_code=200)

    intent = Intent(action="cancel", ghl_id=ghl_id)
    return await run_ghl(
        request,
        scope.runtime,
        scope.principal.location,
        action="cancel",
        key=cancel_key(ghl_id),
        intent=intent,
        work=work,
    )

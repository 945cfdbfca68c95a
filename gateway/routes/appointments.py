"""/v1/appointments: book, get, reschedule, cancel, list."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from adapters.base import Capability
from gateway.auth import runtime_of
from gateway.errors import ValidationFailed
from gateway.idempotency import run_idempotent
from gateway.resolver import lookup_or_create_patient, resolve_practitioner, resolve_service
from gateway.routes.context import LocationScope, scope_for
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal
from gateway.sync.immediate import notify_gateway_write
from gateway.times import parse_bound, to_instant, zone
from schemas.appointments import (
    Appointment,
    AppointmentList,
    BookAppointment,
    CancelAppointment,
    RescheduleAppointment,
)
from schemas.commands import AppointmentQuery, BookCommand, CancelCommand, RescheduleCommand
from schemas.problems import FieldError
from schemas.webhooks import EventType

IdemHeader = HeaderParameter(
    name="Idempotency-Key",
    required=False,
    description="Makes the write safe to retry: the same key and body replays the first outcome for 24 h.",
)


async def book_in(scope: LocationScope, data: BookAppointment, *, end_is_hint: bool = False) -> Appointment:
    """Resolve every reference once, then hand the adapter ids and instants only.

    `end_is_hint`: the end came from a calendar slot (GoHighLevel, ClinicSync), not from a caller choosing a length;
    an EMR that fixes the length by service (no CUSTOM_DURATION) then books the service's length instead of refusing.
    """
    tz = data.time_zone or scope.time_zone
    zone(tz)
    start = to_instant(data.start, tz, field="start")
    end = to_instant(data.end, tz, field="end") if data.end else None
    if end is not None and end <= start:
        raise ValidationFailed("end must be after start", errors=[FieldError(field="end", message="not after start")])
    catalog = await scope.catalog()
    practitioner = resolve_practitioner(catalog, data.practitioner)
    service = resolve_service(catalog, data.service)
    if end is not None and not scope.adapter.supports(Capability.CUSTOM_DURATION):
        if end - start != timedelta(minutes=service.duration_minutes) and not end_is_hint:
            raise ValidationFailed(
                f"{scope.adapter.display_name} sets an appointment's length from its service "
                f"({service.duration_minutes} min): omit end",
                errors=[FieldError(field="end", message="this EMR books the service's length")],
            )
        end = None  # the EMR derives it; the answer carries the real end
    patient, _ = await lookup_or_create_patient(scope.adapter, data.patient, scope.time_zone)
    command = BookCommand(
        patient_id=patient.id,
        practitioner_id=practitioner.id,
        service_id=service.id,
        start=start,
        end=end,
        notes=data.notes,
    )
    booked = await scope.adapter.book(command)
    await notify_gateway_write(scope.runtime, scope.principal.location, booked, EventType.APPOINTMENT_BOOKED)
    return booked


BOUND = "RFC 3339, or YYYY-MM-DD (the location's local day)"


class AppointmentsController(Controller):
    path = "/v1/appointments"
    tags = ["appointments"]
    security = API_KEY

    @post("/", responses=PROBLEMS, status_code=201, summary="Book an appointment")
    async def book(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        data: JSONBody[BookAppointment],
        idempotency_key: Annotated[str | None, IdemHeader] = None,
    ) -> Response[Appointment]:
        runtime = runtime_of(request.app.state)
        scope = await scope_for(runtime, principal)

        async def action() -> Response[Any]:
            return Response(await book_in(scope, data), status_code=201)

        return cast(Response[Appointment], await run_idempotent(request, principal, runtime, action))

    @get("/{appointment_id:str}", responses=PROBLEMS, summary="Get an appointment")
    async def get_one(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal], appointment_id: FromPath[str]
    ) -> Appointment:
        scope = await scope_for(runtime_of(request.app.state), principal)
        return await scope.get_appointment(appointment_id)

    @patch("/{appointment_id:str}", responses=PROBLEMS, summary="Reschedule an appointment or change its notes")
    async def reschedule(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        appointment_id: FromPath[str],
        data: JSONBody[RescheduleAppointment],
        idempotency_key: Annotated[str | None, IdemHeader] = None,
    ) -> Response[Appointment]:
        runtime = runtime_of(request.app.state)
        scope = await scope_for(runtime, principal)
        if data.start is None and data.end is None and data.notes is None and data.practitioner is None:
            raise ValidationFailed("nothing to change: give start, end, practitioner or notes")

        async def action() -> Response[Any]:
            tz = data.time_zone or scope.time_zone
            start = to_instant(data.start, tz, field="start") if data.start else None
            end = to_instant(data.end, tz, field="end") if data.end else None
            if start and end and end <= start:
                raise ValidationFailed(
                    "end must be after start", errors=[FieldError(field="end", message="not after start")]
                )
            practitioner_id = None
            if data.practitioner is not None:
                practitioner_id = resolve_practitioner(await scope.catalog(), data.practitioner).id
            command = RescheduleCommand(
                appointment_id=appointment_id, start=start, end=end, practitioner_id=practitioner_id, notes=data.notes
            )
            moved = await scope.reschedule(command)
            await notify_gateway_write(runtime, principal.location, moved, EventType.APPOINTMENT_RESCHEDULED)
            return Response(moved, status_code=200)

        return cast(Response[Appointment], await run_idempotent(request, principal, runtime, action))

    @post("/{appointment_id:str}/cancel", responses=PROBLEMS, status_code=200, summary="Cancel an appointment")
    async def cancel(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        appointment_id: FromPath[str],
        data: JSONBody[CancelAppointment],
        idempotency_key: Annotated[str | None, IdemHeader] = None,
    ) -> Response[Appointment]:
        runtime = runtime_of(request.app.state)
        scope = await scope_for(runtime, principal)

        async def action() -> Response[Any]:
            command = CancelCommand(appointment_id=appointment_id, reason=data.reason, note=data.note)
            cancelled = await scope.cancel(command)
            await notify_gateway_write(runtime, principal.location, cancelled, EventType.APPOINTMENT_CANCELLED)
            return Response(cancelled, status_code=200)

        return cast(Response[Appointment], await run_idempotent(request, principal, runtime, action))

    @get("/", responses=PROBLEMS, summary="List a patient's appointments")
    async def list_for_patient(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        patient_id: FromQuery[str],
        from_: Annotated[str | None, QueryParameter(name="from", description=BOUND)] = None,
        to: Annotated[str | None, QueryParameter(name="to", description=BOUND)] = None,
    ) -> AppointmentList:
        scope = await scope_for(runtime_of(request.app.state), principal)
        query = AppointmentQuery(
            patient_id=patient_id,
            start_from=parse_bound(from_, scope.time_zone, field="from", end_of_day=False) if from_ else None,
            start_to=parse_bound(to, scope.time_zone, field="to", end_of_day=True) if to else None,
        )
        items = await scope.adapter.list_appointments(query)
        return AppointmentList(items=sorted(items, key=lambda a: a.start))

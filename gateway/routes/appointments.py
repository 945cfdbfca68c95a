"""/v1/appointments: book, get, reschedule, cancel, list."""

from __future__ import annotations

from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from gateway.auth import runtime_of
from gateway.idempotency import run_idempotent
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal
from gateway.times import parse_bound, read_date_time
from gateway.usecases import appointments
from gateway.usecases.appointments import Booking, Move
from gateway.usecases.scope import scope_for
from schemas.appointments import (
    Appointment,
    AppointmentList,
    BookAppointment,
    CancelAppointment,
    RescheduleAppointment,
)

IdemHeader = HeaderParameter(
    name="Idempotency-Key",
    required=False,
    description="Makes the write safe to retry: the same key and body replays the first outcome for 24 h.",
)


def booking_of(data: BookAppointment) -> Booking:
    return Booking(
        practitioner=data.practitioner,
        service=data.service,
        patient=data.patient,
        start=read_date_time(data.start, field="start"),
        end=read_date_time(data.end, field="end") if data.end is not None else None,
        time_zone=data.time_zone,
        notes=data.notes,
    )


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
            return Response(await appointments.book(scope, booking_of(data)), status_code=201)

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
        move = Move(
            appointment_id=appointment_id,
            start=read_date_time(data.start, field="start") if data.start is not None else None,
            end=read_date_time(data.end, field="end") if data.end is not None else None,
            time_zone=data.time_zone,
            practitioner=data.practitioner,
            notes=data.notes,
        )

        async def action() -> Response[Any]:
            return Response(await appointments.reschedule(scope, move), status_code=200)

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
            cancelled = await appointments.cancel(scope, appointment_id, data.reason, data.note)
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
        start_from = parse_bound(from_, scope.time_zone, field="from", end_of_day=False) if from_ else None
        start_to = parse_bound(to, scope.time_zone, field="to", end_of_day=True) if to else None
        return AppointmentList(items=await appointments.list_for_patient(scope, patient_id, start_from, start_to))

"""/v1/appointments: book, get, reschedule, cancel, list."""

from __future__ import annotations

from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, JSONBody, QueryParameter

from gateway.apidoc import Link, Rule, documented
from gateway.auth import runtime_of
from gateway.idempotency import HEADER, MAX_KEY_LENGTH, run_idempotent
from gateway.routes.docs import API_KEY, PROBLEMS, PathId
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
from schemas.common import BOUND_PATTERN

IdemHeader = HeaderParameter(
    name=HEADER,
    required=False,
    min_length=1,
    max_length=MAX_KEY_LENGTH,
    description="Makes the write safe to retry: the same key and body replays the first outcome for 48 h.",
)
IDEMPOTENCY_RULE = Rule(HEADER, "used before with another body: `422 idempotency_mismatch`")

# Operation ids are spelled out where links name them (they are what Litestar derives from the path and handler).
BOOK = "V1AppointmentsBook"
GET_ONE = "V1AppointmentsAppointmentIdGetOne"
RESCHEDULE = "V1AppointmentsAppointmentIdReschedule"
CANCEL = "V1AppointmentsAppointmentIdCancelCancel"
LIST_FOR_PATIENT = "V1AppointmentsListForPatient"


def _follow(status: int, *names: str) -> tuple[Link, ...]:
    """From an answer carrying an appointment to what can be done with it next."""
    ident = {"path.appointment_id": "$response.body#/id"}
    links = {
        "get": Link("get", status, GET_ONE, ident, description="Read the appointment"),
        "reschedule": Link("reschedule", status, RESCHEDULE, ident, description="Move it, or change its notes"),
        "cancel": Link("cancel", status, CANCEL, ident, description="Cancel it"),
        "patient_appointments": Link(
            "patient_appointments",
            status,
            LIST_FOR_PATIENT,
            {"query.patient_id": "$response.body#/patient_id"},
            description="The patient's appointments",
        ),
    }
    return tuple(links[name] for name in names)


START_RULE = Rule(
    "start",
    "at most EGW_BOOKING_MAX_PAST_SECONDS (1 day) in the past and EGW_BOOKING_MAX_AHEAD_DAYS (730) ahead; a wall "
    "time without an offset must exist in the zone it is read in (not skipped by a clock change)",
)
END_RULE = Rule(
    "end",
    "after start, the length between EGW_APPOINTMENT_MIN_MINUTES (5) and EGW_APPOINTMENT_MAX_MINUTES (720) minutes; "
    "where the EMR sets the length from the service (Nookal) it must be the service's length; a wall time must exist",
)
ZONE_RULE = Rule("time_zone", "a zone in the gateway's IANA time zone database")
PRACTITIONER_RULE = Rule(
    "practitioner", "names exactly one practitioner of this location's catalog (else `422 unknown_practitioner`)"
)
BOOKING_RULES = (
    START_RULE,
    END_RULE,
    ZONE_RULE,
    PRACTITIONER_RULE,
    Rule(
        "service",
        "names exactly one service of this location's catalog (else `422 unknown_service`), whose length is within "
        "the bounds of `end` when `end` is omitted",
    ),
    Rule(
        "patient",
        "an `id` the EMR knows; or an `email` or a `phone` (a possible number in the location's country) to look the "
        "patient up (where the EMR cannot search by phone, with `first_name` and `last_name`), and `first_name` and "
        "`last_name` to create them when nobody matches",
    ),
    IDEMPOTENCY_RULE,
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
BOUND_RULE = "a wall time (or the start or end of a day) must exist in the location's zone"


class AppointmentsController(Controller):
    path = "/v1/appointments"
    tags = ["appointments"]
    security = API_KEY

    @post(
        "/",
        responses=PROBLEMS,
        status_code=201,
        summary="Book an appointment",
        operation_id=BOOK,
        operation_class=documented(
            rules=BOOKING_RULES, links=_follow(201, "get", "reschedule", "cancel", "patient_appointments")
        ),
    )
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

    @get(
        "/{appointment_id:str}",
        responses=PROBLEMS,
        summary="Get an appointment",
        operation_id=GET_ONE,
        operation_class=documented(links=_follow(200, "reschedule", "cancel")),
    )
    async def get_one(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal], appointment_id: PathId
    ) -> Appointment:
        scope = await scope_for(runtime_of(request.app.state), principal)
        return await scope.get_appointment(appointment_id)

    @patch(
        "/{appointment_id:str}",
        responses=PROBLEMS,
        summary="Reschedule an appointment or change its notes",
        operation_id=RESCHEDULE,
        operation_class=documented(
            rules=(START_RULE, END_RULE, ZONE_RULE, PRACTITIONER_RULE, IDEMPOTENCY_RULE),
            links=_follow(200, "get", "cancel"),
        ),
    )
    async def reschedule(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        appointment_id: PathId,
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

    @post(
        "/{appointment_id:str}/cancel",
        responses=PROBLEMS,
        status_code=200,
        summary="Cancel an appointment",
        operation_id=CANCEL,
        operation_class=documented(rules=(IDEMPOTENCY_RULE,), links=_follow(200, "get")),
    )
    async def cancel(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        appointment_id: PathId,
        data: JSONBody[CancelAppointment],
        idempotency_key: Annotated[str | None, IdemHeader] = None,
    ) -> Response[Appointment]:
        runtime = runtime_of(request.app.state)
        scope = await scope_for(runtime, principal)

        async def action() -> Response[Any]:
            cancelled = await appointments.cancel(scope, appointment_id, data.reason, data.note)
            return Response(cancelled, status_code=200)

        return cast(Response[Appointment], await run_idempotent(request, principal, runtime, action))

    @get(
        "/",
        responses=PROBLEMS,
        summary="List a patient's appointments",
        operation_id=LIST_FOR_PATIENT,
        operation_class=documented(rules=(Rule("from", BOUND_RULE), Rule("to", BOUND_RULE))),
    )
    async def list_for_patient(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        patient_id: Annotated[str, QueryParameter(name="patient_id", min_length=1, max_length=255)],
        from_: Annotated[str | None, QueryParameter(name="from", description=BOUND, pattern=BOUND_PATTERN)] = None,
        to: Annotated[str | None, QueryParameter(name="to", description=BOUND, pattern=BOUND_PATTERN)] = None,
    ) -> AppointmentList:
        scope = await scope_for(runtime_of(request.app.state), principal)
        start_from = parse_bound(from_, scope.time_zone, field="from", end_of_day=False) if from_ else None
        start_to = parse_bound(to, scope.time_zone, field="to", end_of_day=True) if to else None
        return AppointmentList(items=await appointments.list_for_patient(scope, patient_id, start_from, start_to))

"""GoHighLevel entry points: workflow webhook actions (`/ghl/v1/appointments/…`, key in `x-api-key` or a secret path
token) and marketplace-app webhooks (`/ghl/v1/marketplace/webhooks`, signed by GHL)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody

from gateway.apidoc import Rule, documented
from gateway.auth import runtime_of
from gateway.errors import Unauthorized, ValidationFailed
from gateway.ghl import actions, workflow
from gateway.ghl.auth import token_principal
from gateway.ghl.payloads import MarketplaceEvent, WorkflowPayload
from gateway.ghl.references import practitioner_ref
from gateway.ghl.signatures import ED25519_HEADER, RSA_HEADER, verify
from gateway.ghl.store import anchor_key, location_for_ghl
from gateway.ghl.times import parse_ghl_time
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal, Runtime
from gateway.storage import ghl_destination as ghl_db
from gateway.storage.records import LocationRecord
from gateway.usecases.scope import LocationScope, scope_for
from schemas.appointments import Appointment
from schemas.problems import FieldError

Req = Request[Any, Any, State]


class Ignored(msgspec.Struct, kw_only=True):
    """A marketplace event the gateway acknowledges without acting on it (so GHL does not retry it)."""

    ignored: bool = True
    type: str | None
    reason: str


def _same_ghl_location(location: LocationRecord, body: WorkflowPayload) -> None:
    """A location linked to a GHL location refuses bodies from another sub-account (a key pasted in the wrong one)."""
    sent = body.location.id if body.location else None
    if location.ghl_location_id and sent and sent != location.ghl_location_id:
        raise ValidationFailed(
            f"this location is linked to GHL location {location.ghl_location_id}, but the body comes from {sent}",
            errors=[FieldError(field="location.id", message="another GHL location")],
        )


async def _echo(runtime: Runtime, location_id: str, ghl_id: str | None, kind: str | None) -> Response[Any] | None:
    """Loop prevention: a GHL appointment the gateway itself mirrored from the EMR never comes back in as a booking,
    a move or a cancellation (the EMR is its source of truth)."""
    if not ghl_id:
        return None
    mirrored = await ghl_db.mirrored_appointment(runtime.store, location_id, ghl_id)
    if mirrored is None:
        return None
    reason = f"GHL appointment {ghl_id} mirrors EMR appointment {mirrored}, written by the gateway; nothing done"
    return Response(Ignored(type=kind, reason=reason), status_code=200)


async def _workflow(request: Req, principal: Principal, action: str, body: WorkflowPayload) -> Response[Any]:
    runtime = runtime_of(request.app.state)
    _same_ghl_location(principal.location, body)
    echo = await _echo(runtime, principal.location.id, workflow.calendar_of(body).appointment_id, f"workflow.{action}")
    if echo is not None:
        return echo
    scope = await scope_for(runtime, principal)
    if action == "book":
        return await actions.book(request, scope, workflow.book_request(body, scope.time_zone))
    ghl_id = workflow.ghl_id_of(body)
    if action == "reschedule":
        tz = workflow.time_zone_of(body, scope.time_zone)
        start, end = workflow.times_of(body, tz)
        return await actions.reschedule(request, scope, ghl_id, start, end, practitioner_ref(body.custom))
    custom = body.custom
    reason = actions.cancel_reason(custom.get("cancel_reason") or custom.get("reason") or "other")
    return await actions.cancel(request, scope, ghl_id, reason)


# What a 422 from these routes can name, beyond the body's schema (the booking's own checks name its fields).
WORKFLOW_RULES = (
    Rule(
        "calendar",
        "`calendar.appointmentId` identifies the GHL appointment (required to reschedule or cancel); "
        "`calendar.startTime` and `calendar.endTime` are wall times in `calendar.selectedTimezone` (an IANA zone), "
        "the start not in a clock-change gap and the end after it",
    ),
    Rule("customData", "the practitioner and service named there must match the location's catalog"),
    Rule("location.id", "a location linked to a GHL sub-account takes bodies from that sub-account only"),
    Rule(
        "patient",
        "the contact's e-mail must be an address, its phone a number possible in the location's country and its "
        "names free of control characters (named as the booking's `patient.*` fields)",
    ),
    Rule("practitioner", "resolved from `customData` against the catalog"),
    Rule("service", "resolved from `customData` against the catalog"),
    Rule("start", "the booking's start: not in the past, not in a clock-change gap"),
    Rule("end", "after the start, within the service's length bounds"),
)
DOCUMENTED = documented(rules=WORKFLOW_RULES)

BOOK = "Book from a GHL workflow webhook (idempotent per GHL appointmentId)"
RESCHEDULE = "Reschedule the EMR appointment linked to calendar.appointmentId"
CANCEL = "Cancel the EMR appointment linked to calendar.appointmentId"


class GhlWorkflowController(Controller):
    """The key in `x-api-key` (GHL's Custom Webhook action can set headers)."""

    path = "/ghl/v1/appointments"
    tags = ["gohighlevel"]
    security = API_KEY

    @post("/book", responses=PROBLEMS, status_code=201, summary=BOOK, operation_class=DOCUMENTED)
    async def book(
        self, request: Req, principal: NamedDependency[Principal], data: JSONBody[WorkflowPayload]
    ) -> Response[Appointment]:
        return await _workflow(request, principal, "book", data)

    @post("/reschedule", responses=PROBLEMS, status_code=200, summary=RESCHEDULE, operation_class=DOCUMENTED)
    async def reschedule(
        self, request: Req, principal: NamedDependency[Principal], data: JSONBody[WorkflowPayload]
    ) -> Response[Appointment]:
        return await _workflow(request, principal, "reschedule", data)

    @post("/cancel", responses=PROBLEMS, status_code=200, summary=CANCEL, operation_class=DOCUMENTED)
    async def cancel(
        self, request: Req, principal: NamedDependency[Principal], data: JSONBody[WorkflowPayload]
    ) -> Response[Appointment]:
        return await _workflow(request, principal, "cancel", data)


class GhlTokenWorkflowController(Controller):
    """The same routes for GHL's plain Webhook action, which cannot set headers: a secret token in the path."""

    path = "/ghl/v1/{token:str}/appointments"
    tags = ["gohighlevel"]

    @post("/book", responses=PROBLEMS, status_code=201, summary=BOOK, operation_class=DOCUMENTED)
    async def book(self, request: Req, token: FromPath[str], data: JSONBody[WorkflowPayload]) -> Response[Appointment]:
        return await _workflow(request, await token_principal(request, token), "book", data)

    @post("/reschedule", responses=PROBLEMS, status_code=200, summary=RESCHEDULE, operation_class=DOCUMENTED)
    async def reschedule(
        self, request: Req, token: FromPath[str], data: JSONBody[WorkflowPayload]
    ) -> Response[Appointment]:
        return await _workflow(request, await token_principal(request, token), "reschedule", data)

    @post("/cancel", responses=PROBLEMS, status_code=200, summary=CANCEL, operation_class=DOCUMENTED)
    async def cancel(
        self, request: Req, token: FromPath[str], data: JSONBody[WorkflowPayload]
    ) -> Response[Appointment]:
        return await _workflow(request, await token_principal(request, token), "cancel", data)


async def _marketplace(request: Req, runtime: Runtime, event: MarketplaceEvent) -> Response[Any]:
    def ignored(reason: str) -> Response[Any]:
        return Response(Ignored(type=event.type, reason=reason), status_code=200)

    if event.type not in ("AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"):
        return ignored("not an appointment event")
    location = await location_for_ghl(runtime.store, event.location_id or "") if event.location_id else None
    if location is None:
        return ignored(f"no gateway location is linked to GHL location {event.location_id}")
    appt = event.appointment
    if appt is None or not appt.id:
        return ignored("the event carries no appointment id")
    request.scope["egw_location_id"] = location.id  # type: ignore[typeddict-unknown-key]
    request.scope["egw_emr"] = location.emr  # type: ignore[typeddict-unknown-key]
    echo = await _echo(runtime, location.id, appt.id, event.type)
    if echo is not None:
        return echo
    scope: LocationScope = await scope_for(
        runtime, Principal(key=await anchor_key(runtime.store, location.id), location=location)
    )
    linked = await runtime.store.find_link(location.id, actions.SOURCE, appt.id)
    if event.type == "AppointmentCreate":
        return ignored(
            "already booked through the workflow action"
            if linked
            else "bookings come from the workflow action (this event has no patient details); nothing booked"
        )
    if linked is None:
        return ignored(f"GHL appointment {appt.id} is not linked to an EMR appointment")
    status = (appt.appointment_status or "").lower()
    if event.type == "AppointmentDelete" or status == "cancelled":
        return await actions.cancel(request, scope, appt.id, actions.cancel_reason("other"))
    if status in ("noshow", "showed", "invalid"):
        return ignored(f"appointmentStatus {status} is not synced to the EMR")
    if not appt.start_time:
        return ignored("the event carries no startTime")
    start = parse_ghl_time(appt.start_time, location.time_zone, field="appointment.startTime")
    end = parse_ghl_time(appt.end_time, location.time_zone, field="appointment.endTime") if appt.end_time else None
    return await actions.reschedule(request, scope, appt.id, start, end)


GhlSignatureHeader = HeaderParameter(
    name=ED25519_HEADER,
    required=False,
    description="GoHighLevel's Ed25519 signature of the raw body, base64; without a valid one (or a legacy one): 401",
)
LegacySignatureHeader = HeaderParameter(
    name=RSA_HEADER, required=False, description="the legacy RSA-SHA256 signature, base64 (GHL retired it 2026-07-01)"
)


class GhlMarketplaceController(Controller):
    path = "/ghl/v1/marketplace"
    tags = ["gohighlevel"]

    @post(
        "/webhooks",
        responses=PROBLEMS,
        status_code=200,
        summary="GHL marketplace-app webhook (signed by GHL)",
    )
    async def webhooks(
        self,
        request: Req,
        data: JSONBody[MarketplaceEvent],
        ghl_signature: Annotated[str | None, GhlSignatureHeader] = None,
        legacy_signature: Annotated[str | None, LegacySignatureHeader] = None,
    ) -> Response[Any]:
        """AppointmentUpdate reschedules (or cancels, status `cancelled`) and AppointmentDelete cancels the linked
        EMR appointment; AppointmentCreate and other events are acknowledged and ignored. The signature covers the
        raw body (read again here, as sent), so nothing is acted on before it verifies."""
        runtime = runtime_of(request.app.state)
        raw = await request.body()
        why = verify(
            raw,
            request.headers.get(ED25519_HEADER),
            request.headers.get(RSA_HEADER),
            ed25519_key=runtime.config.ghl_ed25519_public_key,
            rsa_key=runtime.config.ghl_rsa_public_key,
        )
        if why is not None:
            raise Unauthorized(why)
        return await _marketplace(request, runtime, data)

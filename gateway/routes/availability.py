"""/v1/availability: open slots in a range, and the next one."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from gateway.apidoc import Link, QueryGroup, Rule, documented
from gateway.auth import runtime_of
from gateway.errors import ValidationFailed
from gateway.resolver import resolve_practitioner, resolve_service
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal
from gateway.times import now_utc, parse_bound
from gateway.usecases.scope import LocationScope, scope_for
from schemas.availability import Slot, SlotList
from schemas.commands import AvailabilityQuery
from schemas.common import BOUND_PATTERN, EMAIL_PATTERN, NAME_PATTERN, Out
from schemas.problems import FieldError
from schemas.refs import PractitionerRef, ServiceRef

MAX_RANGE = timedelta(days=62)
DEFAULT_RANGE = timedelta(days=7)
NEXT_HORIZON = timedelta(days=28)


class NextSlot(Out):
    slot: Slot | None


# The query parameters, declared once for both routes: Litestar checks each value, the groups relate them.
PRACTITIONER = QueryGroup(
    "practitioner", ("practitioner_id", "practitioner_email", "practitioner_name"), description="Who is booked"
)
SERVICE = QueryGroup("service", ("service_id", "service_name", "service_code"), description="For what")
BOUND = "RFC 3339, or YYYY-MM-DD (the location's local day)"
Ident = Annotated[str | None, QueryParameter(min_length=1, max_length=255)]
EmailQ = Annotated[str | None, QueryParameter(pattern=EMAIL_PATTERN, max_length=254)]
NameQ = Annotated[str | None, QueryParameter(pattern=NAME_PATTERN, max_length=255)]
Bound = Annotated[str | None, QueryParameter(pattern=BOUND_PATTERN, description=BOUND)]
RULES = (
    Rule("practitioner", "names exactly one practitioner of this location's catalog (else `422 unknown_practitioner`)"),
    Rule("service", "names exactly one service of this location's catalog (else `422 unknown_service`)"),
    Rule("from", "a wall time (or the start of a day) must exist in the location's zone"),
    Rule(
        "to",
        "after `from` and after now, at most 62 days after `from` (or now); a wall time (or the end of a day) must "
        "exist in the location's zone",
    ),
)
SLOTS = "V1AvailabilitySlots"
NEXT = "V1AvailabilityNextNextSlot"
BOOK = "V1AppointmentsBook"  # gateway.routes.appointments.BOOK
BOOK_SLOT = Link(
    "book",
    200,
    BOOK,
    request_body={
        "practitioner": {"id": "$response.body#/slot/practitioner_id"},
        "service": {"id": "$response.body#/slot/service_id"},
        "start": "$response.body#/slot/start",
        "end": "$response.body#/slot/end",
        "time_zone": "$response.body#/slot/time_zone",
    },
    description="Book this slot (add the patient)",
)


class _Refs(msgspec.Struct, kw_only=True):
    practitioner_id: str | None = None
    practitioner_email: str | None = None
    practitioner_name: str | None = None
    service_id: str | None = None
    service_name: str | None = None
    service_code: str | None = None


async def _query(
    scope: LocationScope, refs: _Refs, from_: str | None, to: str | None, horizon: timedelta
) -> AvailabilityQuery:
    catalog = await scope.catalog()
    practitioner = resolve_practitioner(
        catalog, PractitionerRef(id=refs.practitioner_id, email=refs.practitioner_email, name=refs.practitioner_name)
    )
    service = resolve_service(catalog, ServiceRef(id=refs.service_id, name=refs.service_name, code=refs.service_code))
    now = now_utc()
    start = parse_bound(from_, scope.time_zone, field="from", end_of_day=False) if from_ else now
    end = parse_bound(to, scope.time_zone, field="to", end_of_day=True) if to else start + horizon
    start = max(start, now)
    if end <= start:
        raise ValidationFailed(
            "to must be after from (and in the future)", errors=[FieldError(field="to", message="empty range")]
        )
    if end - start > MAX_RANGE:
        raise ValidationFailed(
            "the range may span at most 62 days", errors=[FieldError(field="to", message="range too long")]
        )
    return AvailabilityQuery(practitioner_id=practitioner.id, service_id=service.id, start_from=start, start_to=end)


class AvailabilityController(Controller):
    path = "/v1/availability"
    tags = ["availability"]
    security = API_KEY

    @get(
        "/",
        responses=PROBLEMS,
        summary="Open slots for a practitioner and service in a range (default: the next 7 days)",
        operation_id=SLOTS,
        operation_class=documented(groups=(PRACTITIONER, SERVICE), rules=RULES),
    )
    async def slots(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        practitioner_id: Ident = None,
        practitioner_email: EmailQ = None,
        practitioner_name: NameQ = None,
        service_id: Ident = None,
        service_name: Ident = None,
        service_code: Ident = None,
        from_: Annotated[str | None, QueryParameter(name="from", pattern=BOUND_PATTERN, description=BOUND)] = None,
        to: Bound = None,
    ) -> SlotList:
        scope = await scope_for(runtime_of(request.app.state), principal)
        refs = _Refs(
            practitioner_id=practitioner_id,
            practitioner_email=practitioner_email,
            practitioner_name=practitioner_name,
            service_id=service_id,
            service_name=service_name,
            service_code=service_code,
        )
        query = await _query(scope, refs, from_, to, DEFAULT_RANGE)
        slots = await scope.adapter.availability(query)
        return SlotList(items=sorted(slots, key=lambda s: s.start))

    @get(
        "/next",
        responses=PROBLEMS,
        summary="The earliest open slot (within 28 days unless `to` says otherwise)",
        operation_id=NEXT,
        operation_class=documented(groups=(PRACTITIONER, SERVICE), rules=RULES, links=(BOOK_SLOT,)),
    )
    async def next_slot(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        practitioner_id: Ident = None,
        practitioner_email: EmailQ = None,
        practitioner_name: NameQ = None,
        service_id: Ident = None,
        service_name: Ident = None,
        service_code: Ident = None,
        from_: Annotated[str | None, QueryParameter(name="from", pattern=BOUND_PATTERN, description=BOUND)] = None,
        to: Bound = None,
    ) -> NextSlot:
        scope = await scope_for(runtime_of(request.app.state), principal)
        refs = _Refs(
            practitioner_id=practitioner_id,
            practitioner_email=practitioner_email,
            practitioner_name=practitioner_name,
            service_id=service_id,
            service_name=service_name,
            service_code=service_code,
        )
        query = await _query(scope, refs, from_, to, NEXT_HORIZON)
        return NextSlot(slot=await scope.adapter.next_available(query))

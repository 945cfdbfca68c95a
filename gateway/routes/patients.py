"""/v1/patients: search, and lookup-or-create."""

from __future__ import annotations

from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, QueryParameter

from adapters.base import Capability
from gateway.apidoc import Link, QueryGroup, Rule, documented
from gateway.auth import runtime_of
from gateway.errors import ValidationFailed
from gateway.idempotency import run_idempotent
from gateway.phones import to_e164
from gateway.resolver import lookup_or_create_patient
from gateway.routes.appointments import IDEMPOTENCY_RULE, LIST_FOR_PATIENT, IdemHeader
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal
from gateway.usecases.scope import scope_for
from schemas.common import EMAIL_PATTERN, NAME_PATTERN, PHONE_PATTERN
from schemas.patients import CreatePatient, PatientList, PatientQuery, PatientResult
from schemas.problems import FieldError
from schemas.refs import PatientRef


def split_name(name: str) -> tuple[str | None, str]:
    parts = name.split()
    if len(parts) == 1:
        return None, parts[0]
    return " ".join(parts[:-1]), parts[-1]


FILTERS = QueryGroup("filters", ("email", "phone", "name"), exactly_one=False, description="Who to look for")
PHONE_RULE = "a possible number in the location's country (libphonenumber)"
PATIENT_APPOINTMENTS = Link(
    "appointments",
    200,
    LIST_FOR_PATIENT,
    {"query.patient_id": "$response.body#/patient/id"},
    description="The patient's appointments",
)


class PatientsController(Controller):
    path = "/v1/patients"
    tags = ["patients"]
    security = API_KEY

    @get(
        "/",
        responses=PROBLEMS,
        summary="Find patients by email, phone or name",
        operation_class=documented(
            groups=(FILTERS,),
            rules=(Rule("phone", f"{PHONE_RULE}; where the EMR cannot search by phone alone, with name or email"),),
        ),
    )
    async def search(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        email: Annotated[str | None, QueryParameter(pattern=EMAIL_PATTERN, max_length=254)] = None,
        phone: Annotated[str | None, QueryParameter(pattern=PHONE_PATTERN, max_length=32)] = None,
        name: Annotated[
            str | None,
            QueryParameter(pattern=NAME_PATTERN, max_length=255, description="'First Last' or a last name"),
        ] = None,
    ) -> PatientList:
        scope = await scope_for(runtime_of(request.app.state), principal)
        if not (email or phone or (name and name.strip())):
            raise ValidationFailed(
                "give email, phone or name", errors=[FieldError(field="email", message="one filter is required")]
            )
        first, last = split_name(name) if name and name.strip() else (None, None)
        if phone and not (email or last) and not scope.adapter.supports(Capability.FIND_PATIENT_BY_PHONE):
            raise ValidationFailed(
                f"{scope.adapter.display_name} cannot look patients up by phone alone; add name or email",
                errors=[FieldError(field="phone", message="phone-only search not supported by this EMR")],
            )
        e164 = to_e164(phone, scope.time_zone) if phone else None
        query = PatientQuery(email=email, phone=e164, first_name=first, last_name=last)
        return PatientList(items=await scope.adapter.find_patients(query))

    @post(
        "/",
        responses={**PROBLEMS, 201: ResponseSpec(PatientResult, description="Created: nobody matched")},
        status_code=200,
        summary="Look a patient up; create them if absent (201)",
        operation_class=documented(
            rules=(
                Rule("patient.phone", f"`phone` is {PHONE_RULE}"),
                IDEMPOTENCY_RULE,
            ),
            links=(PATIENT_APPOINTMENTS, PATIENT_APPOINTMENTS.at(201)),
        ),
    )
    async def lookup_or_create(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        data: JSONBody[CreatePatient],
        idempotency_key: Annotated[str | None, IdemHeader] = None,
    ) -> Response[PatientResult]:
        runtime = runtime_of(request.app.state)
        scope = await scope_for(runtime, principal)

        async def action() -> Response[Any]:
            ref = PatientRef(
                email=data.email,
                phone=data.phone,
                first_name=data.first_name,
                last_name=data.last_name,
                date_of_birth=data.date_of_birth,
            )
            patient, created = await lookup_or_create_patient(scope.adapter, ref, scope.time_zone)
            return Response(PatientResult(patient=patient, created=created), status_code=201 if created else 200)

        return cast(Response[PatientResult], await run_idempotent(request, principal, runtime, action))

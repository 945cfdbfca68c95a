"""/v1/patients: search, and lookup-or-create."""

from __future__ import annotations

from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from gateway.auth import runtime_of
from gateway.errors import ValidationFailed
from gateway.idempotency import run_idempotent
from gateway.phones import to_e164
from gateway.resolver import lookup_or_create_patient
from gateway.routes.appointments import IdemHeader
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal
from gateway.usecases.scope import scope_for
from schemas.patients import CreatePatient, PatientList, PatientQuery, PatientResult
from schemas.problems import FieldError
from schemas.refs import PatientRef


def split_name(name: str) -> tuple[str | None, str]:
    parts = name.split()
    if len(parts) == 1:
        return None, parts[0]
    return " ".join(parts[:-1]), parts[-1]


class PatientsController(Controller):
    path = "/v1/patients"
    tags = ["patients"]
    security = API_KEY

    @get("/", responses=PROBLEMS, summary="Find patients by email, phone or name")
    async def search(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        email: Annotated[str | None, QueryParameter(name="email", required=False)] = None,
        phone: Annotated[str | None, QueryParameter(name="phone", required=False)] = None,
        name: Annotated[
            str | None, QueryParameter(name="name", required=False, description="'First Last' or a last name")
        ] = None,
    ) -> PatientList:
        scope = await scope_for(runtime_of(request.app.state), principal)
        if not (email or phone or (name and name.strip())):
            raise ValidationFailed(
                "give email, phone or name", errors=[FieldError(field="email", message="one filter is required")]
            )
        first, last = split_name(name) if name and name.strip() else (None, None)
        e164 = to_e164(phone, scope.time_zone) if phone else None
        query = PatientQuery(email=email, phone=e164, first_name=first, last_name=last)
        return PatientList(items=await scope.adapter.find_patients(query))

    @post("/", responses=PROBLEMS, status_code=200, summary="Look a patient up; create them if absent (201)")
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

"""/v1/practitioners, /v1/services, /v1/locations: the cached catalog."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency

from gateway.auth import runtime_of
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal
from gateway.usecases.scope import scope_for
from schemas.catalog import LocationList, PractitionerList, ServiceList


class CatalogController(Controller):
    path = "/v1"
    tags = ["catalog"]
    security = API_KEY

    @get("/practitioners", responses=PROBLEMS, summary="Practitioners at this location")
    async def practitioners(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal]
    ) -> PractitionerList:
        scope = await scope_for(runtime_of(request.app.state), principal)
        return PractitionerList(items=(await scope.catalog()).practitioners)

    @get("/services", responses=PROBLEMS, summary="Bookable services (appointment types)")
    async def services(self, request: Request[Any, Any, State], principal: NamedDependency[Principal]) -> ServiceList:
        scope = await scope_for(runtime_of(request.app.state), principal)
        return ServiceList(items=(await scope.catalog()).services)

    @get("/locations", responses=PROBLEMS, summary="The EMR location this API key reaches")
    async def locations(self, request: Request[Any, Any, State], principal: NamedDependency[Principal]) -> LocationList:
        scope = await scope_for(runtime_of(request.app.state), principal)
        return LocationList(items=(await scope.catalog()).locations)

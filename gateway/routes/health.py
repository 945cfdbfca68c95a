"""/healthz (process up), /readyz (storage reachable), /metrics (Prometheus), /v1/health (one location's EMR)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from gateway.auth import runtime_of
from gateway.location_health import check_location
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal
from schemas.health import Health, LocationHealth

log = logging.getLogger("emr_gateway.health")


@get("/healthz", summary="The process is up", tags=["health"])
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    summary="Storage is reachable",
    tags=["health"],
    responses={503: ResponseSpec(Health, description="Storage unreachable")},
)
async def readyz(request: Request[Any, Any, State]) -> Response[Health]:
    try:
        await runtime_of(request.app.state).store.ping()
    except Exception as exc:
        log.warning("storage not ready: %s", type(exc).__name__)
        return Response(Health(status="storage unreachable"), status_code=503)
    return Response(Health(status="ok"))


@get("/metrics", summary="Prometheus metrics", tags=["health"], media_type="text/plain; version=0.0.4")
async def metrics(request: Request[Any, Any, State]) -> bytes:
    return runtime_of(request.app.state).metrics.render()


@get(
    "/v1/health",
    summary="This location's EMR connection: ok, or why not (e.g. an expired EMR session)",
    tags=["health"],
    responses=PROBLEMS,
    security=API_KEY,
)
async def location_health(
    request: Request[Any, Any, State],
    principal: NamedDependency[Principal],
    fresh: Annotated[
        bool, QueryParameter(name="fresh", description="check the EMR now instead of using the last 30 s")
    ] = False,
) -> LocationHealth:
    return await check_location(runtime_of(request.app.state), principal.location, fresh=fresh)

"""/healthz (process up), /readyz (storage reachable), /metrics (Prometheus)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from gateway.auth import runtime_of
from schemas.health import Health

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

"""The app factory: explicit registration of every route, handler and dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from gateway.access_log import access_log_middleware
from gateway.auth import provide_principal
from gateway.config import GatewayConfig
from gateway.crypto import Keyring
from gateway.logging_setup import quiet_http_clients
from gateway.metrics import Metrics
from gateway.problems import EXCEPTION_HANDLERS
from gateway.routes.appointments import AppointmentsController
from gateway.routes.availability import AvailabilityController
from gateway.routes.catalog import CatalogController
from gateway.routes.health import healthz, metrics, readyz
from gateway.routes.patients import PatientsController
from gateway.runtime import Runtime
from gateway.storage.store import Store

VERSION = "0.1.0"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="EMR Gateway",
        version=VERSION,
        description=(
            "One API to book, reschedule and cancel appointments in Cliniko (more EMRs to come). "
            "Errors are RFC 9457 problem+json with a stable `code`."
        ),
        path="/schema",
        render_plugins=[SwaggerRenderPlugin()],
        components=Components(
            security_schemes={"apiKey": SecurityScheme(type="apiKey", name="x-api-key", security_scheme_in="header")}
        ),
    )


def create_app(
    config: GatewayConfig,
    keyring: Keyring,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Litestar:
    quiet_http_clients()
    metrics_ = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = await Store.open(config.database_url, keyring)
        timeout = httpx.Timeout(config.emr_timeout_seconds, connect=config.emr_connect_timeout_seconds)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            timeout=timeout, limits=limits, transport=transport, follow_redirects=False
        ) as http:
            app.state.runtime = Runtime(config, store, http, metrics_)
            try:
                yield
            finally:
                await store.close()

    api_routes = [AppointmentsController, AvailabilityController, CatalogController, PatientsController]
    return Litestar(
        route_handlers=[*api_routes, healthz, readyz, metrics],
        dependencies={"principal": Provide(provide_principal)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        middleware=[access_log_middleware(metrics_)],  # type: ignore[list-item]
        openapi_config=openapi_config(),
        request_max_body_size=config.max_body_bytes,
        logging_config=None,
        debug=False,
    )

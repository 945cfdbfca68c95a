"""The app factory: explicit registration of every route, handler and dependency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from adapters.transport import EMRTransport
from gateway.access_log import access_log_middleware
from gateway.apidoc import ModelSchemaPlugin, allow_header
from gateway.auth import provide_principal
from gateway.body_guard import body_guard
from gateway.config import GatewayConfig
from gateway.console.templating import template_config
from gateway.crypto import Keyring
from gateway.heap import freeze_start_up_heap
from gateway.logging_setup import quiet_http_clients
from gateway.metrics import Metrics
from gateway.problems import EXCEPTION_HANDLERS, after_exception
from gateway.routes.appointments import AppointmentsController
from gateway.routes.availability import AvailabilityController
from gateway.routes.catalog import CatalogController
from gateway.routes.clinicsync import clinicsync_handlers
from gateway.routes.console import console_handlers
from gateway.routes.ghl import GhlMarketplaceController, GhlTokenWorkflowController, GhlWorkflowController
from gateway.routes.ghl_destination import GhlSyncLogController
from gateway.routes.halaxy_webhooks import HalaxyWebhooksController
from gateway.routes.health import healthz, location_health, metrics, readyz
from gateway.routes.patients import PatientsController
from gateway.routes.practicebetter_webhooks import PracticeBetterWebhooksController
from gateway.routes.voice import voice_handlers
from gateway.routes.webhooks import WebhooksController
from gateway.runtime import Runtime
from gateway.storage.store import Store
from gateway.worker import Worker

VERSION = "0.1.0"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="EMR Gateway",
        version=VERSION,
        description=(
            "One API to book, reschedule and cancel appointments in Cliniko, Jane, Nookal, SimplePractice, "
            "Practice Better, Halaxy and FHIR R4 scheduling servers. "
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
    worker: bool = False,
    freeze_heap: bool = False,
) -> Litestar:
    """`worker=True` also runs the background worker (webhook delivery, change detection) in this process;
    `freeze_heap=True` (serve) takes start-up's objects out of the collector's full passes (`gateway.heap`)."""
    quiet_http_clients()
    metrics_ = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = await Store.open(config.database_url, keyring)
        timeout = httpx.Timeout(config.emr_timeout_seconds, connect=config.emr_connect_timeout_seconds)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            timeout=timeout, limits=limits, transport=transport or EMRTransport(limits), follow_redirects=False
        ) as http:
            app.state.runtime = Runtime(config, store, http, metrics_)
            stop = asyncio.Event()
            background = asyncio.create_task(Worker(store, http, config).run(stop)) if worker else None
            if freeze_heap:
                freeze_start_up_heap()
            try:
                yield
            finally:
                stop.set()
                if background is not None:
                    await background
                await store.close()

    api_routes = [AppointmentsController, AvailabilityController, CatalogController, PatientsController]
    api_routes.append(WebhooksController)
    api_routes += [GhlWorkflowController, GhlTokenWorkflowController, GhlMarketplaceController]
    api_routes.append(PracticeBetterWebhooksController)
    api_routes.append(HalaxyWebhooksController)
    api_routes.append(GhlSyncLogController)
    return Litestar(
        route_handlers=[
            *api_routes,
            *clinicsync_handlers(),
            *voice_handlers(),
            healthz,
            readyz,
            metrics,
            location_health,
            *console_handlers(),
        ],
        dependencies={"principal": Provide(provide_principal)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        after_exception=[after_exception],
        lifespan=[lifespan],
        middleware=[
            access_log_middleware(metrics_),  # type: ignore[list-item]
            body_guard(config.max_body_bytes, config.max_json_depth, config.body_read_timeout_seconds),  # type: ignore[list-item]
        ],
        openapi_config=openapi_config(),
        template_config=template_config(),
        plugins=[ModelSchemaPlugin()],
        before_send=[allow_header],
        request_max_body_size=config.max_body_bytes,
        logging_config=None,
        debug=False,
    )

"""ClinicSync Pro-compatible routes (drop-in migration: change the host, add an x-api-key or, for the URLs ClinicSync
gives GoHighLevel users, a GHL path token), built from the table."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from gateway.auth import runtime_of
from gateway.compat.actions import execute
from gateway.compat.bodies import Tolerant
from gateway.compat.ghl_urls import GHL_PREFIX, token_routes
from gateway.compat.table import CLINICSYNC_ROUTES, CompatRoute
from gateway.errors import BadRequest, ValidationFailed
from gateway.ghl.auth import token_principal
from gateway.idempotency import run_idempotent
from gateway.runtime import Principal
from gateway.usecases.scope import scope_for
from schemas.problems import FieldError

# Kept out of the OpenAPI document: these shapes are ClinicSync's, documented in docs/clinicsync.md; /v1 is ours.
IN_SCHEMA = False


def _field(error: msgspec.ValidationError) -> str:
    text = str(error)
    return text.split("at `$.", 1)[1].rstrip("`") if "at `$." in text else "body"


def decode(route: CompatRoute, request: Request[Any, Any, State], raw: bytes) -> Tolerant:
    """JSON body for POST routes, the query string for the voice GET routes; unknown fields are ignored."""
    try:
        if route.method == "GET":
            query = {k: v for k, v in request.query_params.items()}
            return msgspec.convert(query, route.body, strict=False)
        return msgspec.json.decode(raw.strip() or b"{}", type=route.body)
    except msgspec.ValidationError as exc:
        field = _field(exc)
        raise ValidationFailed(
            str(exc), errors=[FieldError(field=field, message=str(exc).split(" - at ")[0])]
        ) from None
    except msgspec.DecodeError:
        raise BadRequest("the body is not valid JSON") from None


async def answer(route: CompatRoute, request: Request[Any, Any, State], principal: Principal) -> Response[Any]:
    """One path for both ways in: the x-api-key route and its GHL path-token twin differ only in the principal."""
    runtime = runtime_of(request.app.state)
    body = decode(route, request, await request.body() if route.method == "POST" else b"")
    intent = route.translate(body)
    scope = await scope_for(runtime, principal)

    async def action() -> Response[Any]:
        return Response(route.shape(await execute(scope, intent)), status_code=200)

    if route.writes:
        return await run_idempotent(request, principal, runtime, action)
    return await action()


def _summary(route: CompatRoute) -> str:
    return f"{route.summary} ({route.documented_for}; ClinicSync-compatible)"


def compat_handler(route: CompatRoute) -> HTTPRouteHandler:
    async def handle(request: Request[Any, Any, State], principal: NamedDependency[Principal]) -> Response[Any]:
        return await answer(route, request, principal)

    decorator = post if route.method == "POST" else get
    return decorator(
        route.path, status_code=200, summary=_summary(route), include_in_schema=IN_SCHEMA, tags=["clinicsync"]
    )(handle)


def token_handler(route: CompatRoute, token_path: str) -> HTTPRouteHandler:
    """The route under the location's GHL path token: ClinicSync's GHL URLs take no headers."""

    async def handle(request: Request[Any, Any, State], token: FromPath[str]) -> Response[Any]:
        return await answer(route, request, await token_principal(request, token))

    return post(
        GHL_PREFIX.replace("{token}", "{token:str}") + token_path,
        status_code=200,
        summary=_summary(route) + " (GHL path token)",
        include_in_schema=IN_SCHEMA,
        tags=["clinicsync"],
    )(handle)


def clinicsync_handlers() -> list[HTTPRouteHandler]:
    """Every table route with x-api-key, and the ones ClinicSync gives GHL users also under a GHL path token."""
    by_path = {route.path: route for route in CLINICSYNC_ROUTES}
    headers = [compat_handler(route) for route in CLINICSYNC_ROUTES]
    return headers + [token_handler(by_path[path], token_path) for token_path, path in token_routes().items()]

"""`x-api-key` authentication and per-key rate limiting, as a route dependency."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from gateway.apikeys import hash_secret
from gateway.errors import TooManyRequests, Unauthorized
from gateway.runtime import Principal, Runtime

API_KEY_HEADER = "x-api-key"


def runtime_of(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


async def authenticate(request: Request[object, object, State], secret: str | None) -> Principal:
    runtime = runtime_of(request.app.state)
    if not secret:
        raise Unauthorized("send the location's API key in the x-api-key header")
    found = await runtime.keys.get(hash_secret(secret), lambda: runtime.store.authenticate_at(secret))
    if found is None:  # unknown, revoked, or its location deleted (keys go with their location)
        raise Unauthorized("the API key is unknown or revoked")
    key, location = found
    wait = await runtime.limiter.take(key.id)
    if wait is not None:
        raise TooManyRequests("too many requests for this API key", retry_after=wait)
    request.scope["egw_location_id"] = location.id  # type: ignore[typeddict-unknown-key]
    request.scope["egw_emr"] = location.emr  # type: ignore[typeddict-unknown-key]
    return Principal(key=key, location=location)


async def provide_principal(request: Request[object, object, State]) -> Principal:
    return await authenticate(request, request.headers.get(API_KEY_HEADER))

"""A GHL secret path token (`/ghl/v1/{token}/…`, also ClinicSync's GHL URLs) as a caller's principal: GHL's
plain webhook action cannot set headers, so the token stands in for the location's API key."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from gateway.apikeys import hash_secret
from gateway.auth import runtime_of
from gateway.errors import TooManyRequests, Unauthorized
from gateway.ghl.store import anchor_key, authenticate_token
from gateway.runtime import Principal
from gateway.storage.records import ApiKeyRecord, LocationRecord


async def token_principal(request: Request[Any, Any, State], token: str) -> Principal:
    # Problem bodies name the request path (`instance`); GHL shows them in workflow logs: show the template instead.
    request.scope["path"] = request.scope["path"].replace(token, "{token}")
    runtime = runtime_of(request.app.state)

    async def load() -> tuple[ApiKeyRecord, LocationRecord, str] | None:
        record = await authenticate_token(runtime.store, token)
        if record is None:
            return None
        location = await runtime.store.get_location(record.location_id)
        if location is None:
            return None
        return await anchor_key(runtime.store, location.id), location, record.id

    found = await runtime.tokens.get(hash_secret(token), load)
    if found is None:
        raise Unauthorized("the GHL path token is unknown or revoked (see `emr-gateway ghl-tokens list`)")
    anchor, location, token_id = found
    wait = await runtime.limiter.take(token_id)
    if wait is not None:
        raise TooManyRequests("too many requests for this GHL token", retry_after=wait)
    request.scope["egw_location_id"] = location.id  # type: ignore[typeddict-unknown-key]
    request.scope["egw_emr"] = location.emr  # type: ignore[typeddict-unknown-key]
    return Principal(key=anchor, location=location)

"""GHL's retries made harmless: every GHL call runs through gateway.idempotency.run_idempotent, keyed by
(GHL appointmentId, action), owned by the location's anchor (not the caller's key or token), on one fixed route,
and fingerprinted by what the call asks for rather than by its raw body. So a retry through the header, the path
token or a marketplace event for the same change replays the first outcome, and no token ever reaches the records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.types import HTTPDisconnectEvent, HTTPRequestEvent

from gateway.ghl.store import anchor_key, forget_superseded
from gateway.idempotency import run_idempotent
from gateway.runtime import Principal, Runtime
from gateway.storage.records import LocationRecord

ROUTE = "/ghl/v1/appointments"


def book_key(ghl_id: str) -> str:
    return f"ghl:{ghl_id}:book"


def cancel_key(ghl_id: str) -> str:
    return f"ghl:{ghl_id}:cancel"


def reschedule_prefix(ghl_id: str) -> str:
    return f"ghl:{ghl_id}:reschedule:"


def _view(request: Request[Any, Any, State], action: str, intent: bytes) -> Request[Any, Any, State]:
    """The same request as run_idempotent should see it: a fixed route and path (no token), the intent as body."""
    path = f"{ROUTE}/{action}"
    scope: dict[str, Any] = {**request.scope, "path_template": ROUTE, "path": path, "raw_path": path.encode()}
    scope["state"] = {}  # a fresh connection state, so the body below is the one read
    sent = False

    async def receive() -> HTTPRequestEvent | HTTPDisconnectEvent:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": intent, "more_body": False}

    return Request(scope, receive)  # type: ignore[arg-type]


async def run_ghl(
    request: Request[Any, Any, State],
    runtime: Runtime,
    location: LocationRecord,
    *,
    action: str,
    key: str,
    intent: msgspec.Struct,
    work: Callable[[], Awaitable[Response[Any]]],
    supersedes: str | None = None,
) -> Response[Any]:
    """`supersedes`: a key prefix whose other records stop replaying once this one succeeds."""
    anchor = await anchor_key(runtime.store, location.id)
    body = msgspec.json.encode(intent, order="sorted")
    response = await run_idempotent(
        _view(request, action, body),
        Principal(key=anchor, location=location),
        runtime,
        work,
        key=key,
        key_field="calendar.appointmentId",
    )
    if supersedes is not None and (response.status_code or 200) < 300:
        await forget_superseded(runtime.store, anchor.id, supersedes, keep=key)
    return response

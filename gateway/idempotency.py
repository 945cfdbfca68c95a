"""Idempotency-Key (IETF draft semantics) around a write: replay, mismatch (422), in flight (409)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import State

from adapters import errors as ae
from gateway.errors import BadRequest, GatewayError, IdempotencyInFlight, IdempotencyMismatch
from gateway.problems import from_adapter_error, problem_response
from gateway.runtime import Principal, Runtime
from gateway.storage.records import IdemInFlight, IdemMismatch, IdempotencyScope, IdemReplay
from gateway.times import now_utc
from gateway.usecases import unit
from gateway.webhooks import wakeup
from schemas.problems import FieldError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255

# Outcomes that say nothing was written: the record is dropped so the caller may retry with the same key.
_TRANSIENT = (ae.Unavailable, ae.Timeout, ae.RateLimited, ae.AuthFailed)


def fingerprint(body: bytes) -> str:
    """Canonical encoding: the same JSON with other key order or spacing is the same request."""
    if not body.strip():
        return hashlib.sha256(b"").hexdigest()
    try:
        canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    except msgspec.DecodeError:
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


async def run_idempotent(
    request: Request[object, object, State],
    principal: Principal,
    runtime: Runtime,
    action: Callable[[], Awaitable[Response[Any]]],
    *,
    key: str | None = None,
    key_field: str | None = None,
) -> Response[Any]:
    """`key`: a natural key (GHL's appointment id) instead of the header; `key_field` names where it came from, so
    a mismatch's 422 names that field."""
    from_header = key is None
    key = key if key is not None else request.headers.get(HEADER)
    if key is None:
        return await action()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters")
    route = str(request.scope.get("path_template") or request.url.path)
    if "{" in route:  # the template plus the concrete path: one key may not hop between appointments
        route = f"{route} {request.url.path}"
    scope = IdempotencyScope(api_key_id=principal.key.id, method=request.method, route=route, key=key)
    begun = await runtime.store.idem_begin(
        scope,
        fingerprint(await request.body()),
        now=now_utc(),
        lock_seconds=runtime.config.idempotency_lock_seconds,
        ttl_seconds=runtime.config.idempotency_ttl_seconds,
    )
    if isinstance(begun, IdemReplay):
        runtime.metrics.idempotent_replays.inc()
        return Response(
            content=begun.body,
            status_code=begun.status_code,
            media_type=begun.content_type,
            headers={"Idempotent-Replayed": "true"},
        )
    if isinstance(begun, IdemInFlight):
        raise IdempotencyInFlight("a request with this Idempotency-Key is still being processed; retry later")
    if isinstance(begun, IdemMismatch):
        raise IdempotencyMismatch(
            "this Idempotency-Key was used with a different request body",
            errors=[
                FieldError(field=HEADER if from_header else (key_field or HEADER), message="used with another body")
            ],
        )
    # What the write records after the EMR answered (its operation, links, the snapshot job) commits together with
    # the outcome below, in one transaction (`gateway.usecases.unit`).
    with unit.collecting() as deferred:
        try:
            response = await action()
        except ae.OutcomeUnknown:
            # Keep the lock: a retry within it gets 409; after it, the operation's reconciler has the answer.
            await unit.flush(runtime.store, deferred)
            raise
        except _TRANSIENT:
            await unit.flush(runtime.store, deferred)
            await runtime.store.idem_release(scope)
            raise
        except ae.AdapterError as exc:
            # The EMR's rejection is the outcome: it replays like a success would.
            response = problem_response(from_adapter_error(exc, request))
        except GatewayError:
            await unit.flush(runtime.store, deferred)
            await runtime.store.idem_release(scope)
            raise
        except BaseException:
            await unit.flush(runtime.store, deferred)
            await runtime.store.idem_release(scope)
            raise
    content = response.content
    body = content if isinstance(content, bytes) else msgspec.json.encode(content)
    await runtime.store.idem_complete(
        scope,
        status_code=response.status_code or 200,
        content_type=str(response.media_type or "application/json"),
        body=body,
        now=now_utc(),
        also=deferred,
    )
    if deferred:
        wakeup.gateway_writes.notify()
    return response

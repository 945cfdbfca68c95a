"""/console: the operator console's pages and forms (server-rendered, no JavaScript). Thin: each handler reads the
form, calls the same use case the API or CLI calls, and renders a template; security lives in
`gateway.console.security`, the pages' data in `gateway.console.views`.

Not part of the API: excluded from the OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import httpx
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import CacheControlHeader, State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router

from adapters.errors import AdapterError
from gateway.console import views
from gateway.console.security import (
    CSRF_FIELD,
    EXCEPTION_HANDLERS,
    PREFIX,
    PUBLIC,
    SESSION_COOKIE,
    SIGN_IN,
    SIGN_IN_COOKIE,
    console_guard,
    current_session,
    expired_cookie,
    provide_session,
    runtime,
    safe_next,
    security_headers,
    session_cookie,
    sign_in_token,
)
from gateway.console.templating import STATIC
from gateway.errors import ValidationFailed
from gateway.location_health import check_location
from gateway.runtime import Runtime
from gateway.storage.errors import UnknownLocation
from gateway.storage.records import LocationRecord
from gateway.times import read_date_time, to_instant
from gateway.usecases import keys as key_usecases
from gateway.usecases import operators, trace
from gateway.usecases import webhooks as hooks
from gateway.usecases.locations import EMRUnreachable, sync_now, verify_location
from gateway.usecases.operators import SessionRecord, SignedIn
from schemas.verify import VerifyReport

Req = Request[Any, Any, State]
Session = NamedDependency[SessionRecord]  # the signed-in operator's (the guard requires one)
PathId = FromPath[str]


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """What an action did, shown at the top of the page it renders (a new secret only here, only now)."""

    kind: str
    ok: bool
    title: str
    lines: list[str] = msgspec.field(default_factory=list)
    secret: str | None = None
    shown_once_label: str | None = None
    report: VerifyReport | None = None


def _actor(session: SessionRecord) -> str:
    return f"console:{session.operator.email}"[:100]


def _page(name: str, session: SessionRecord | None, status: int = 200, **context: Any) -> Template:
    return Template(
        template_name=name,
        context={"session": session, "csrf": session.csrf_token if session else "", "result": None, **context},
        status_code=status,
    )


async def _location(rt: Runtime, location_id: str) -> LocationRecord:
    location = await rt.store.get_location(location_id)
    if location is None:
        raise NotFoundException()
    return location


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str) and key != CSRF_FIELD}


# -- sign-in ----------------------------------------------------------------------------------------------------------


def _sign_in_page(
    request: Req, *, status: int = 200, error: str | None = None, email: str = "", target: str = ""
) -> Template:
    token, cookie = sign_in_token(request)
    page = Template(
        template_name="sign_in.html",
        context={
            "session": None,
            "csrf": token,
            "result": None,
            "error": error,
            "email": email,
            "next": safe_next(target),
            "title": "Sign in",
        },
        status_code=status,
    )
    if cookie is not None:
        page.cookies.append(cookie)
    return page


@get("/sign-in", opt={PUBLIC: True}, name="console:sign-in")
async def sign_in_form(
    request: Req, next_: Annotated[str | None, QueryParameter(name="next", required=False)] = None
) -> Response[Any]:
    if await current_session(request) is not None:
        return Redirect(safe_next(next_), status_code=303)
    return _sign_in_page(request, target=next_ or "")


@post("/sign-in", opt={PUBLIC: True}, status_code=200)
async def sign_in(request: Req) -> Response[Any]:
    form = await _form(request)
    email, target = form.get("email", "")[:254], form.get("next", "")
    outcome = await operators.sign_in(runtime(request).store, email, form.get("password", ""))
    if isinstance(outcome, SignedIn):
        redirect = Redirect(safe_next(target), status_code=303)
        redirect.cookies.append(session_cookie(request, outcome.token))
        redirect.cookies.append(expired_cookie(request, SIGN_IN_COOKIE))
        return redirect
    if outcome.locked_until is not None:
        minutes = max(1, round((outcome.locked_until - datetime.now(outcome.locked_until.tzinfo)).total_seconds() / 60))
        error = (
            f"Too many failed sign-ins for this e-mail: it is locked for about {minutes} more minute(s). "
            "Try again later."
        )
        return _sign_in_page(request, status=429, error=error, email=email, target=target)
    error = "The e-mail or the password is wrong."
    return _sign_in_page(request, status=401, error=error, email=email, target=target)


@post("/sign-out", status_code=303)
async def sign_out(request: Req) -> Response[Any]:
    await operators.sign_out(runtime(request).store, request.cookies.get(SESSION_COOKIE))
    redirect = Redirect(SIGN_IN, status_code=303)
    redirect.cookies.append(expired_cookie(request, SESSION_COOKIE))
    return redirect


# -- overview and a location ------------------------------------------------------------------------------------------


@get("/", name="console:overview")
async def overview(request: Req, console_session: Session) -> Template:
    rows = await views.overview(runtime(request))
    return _page("overview.html", console_session, rows=rows, title="Overview", nav="overview")


async def _location_page(
    request: Req, session: SessionRecord, location: LocationRecord, result: Result | None = None, status: int = 200
) -> Template:
    page = await views.location_page(runtime(request), location)
    template = _page(
        "location.html", session, status, page=page, title=location.name, nav="overview", states=views.DELIVERY_STATES
    )
    template.context["result"] = result
    return template


@get("/locations/{location_id:str}", name="console:location")
async def location(request: Req, console_session: Session, location_id: PathId) -> Template:
    found = await _location(runtime(request), location_id)
    return await _location_page(request, console_session, found)


@post("/locations/{location_id:str}/sync", status_code=200)
async def sync(request: Req, console_session: Session, location_id: PathId) -> Template:
    rt = runtime(request)
    found = await _location(rt, location_id)
    try:
        done = await sync_now(rt.store, rt.config, found, actor=_actor(console_session))
    except AdapterError as exc:
        result = Result(kind="sync", ok=False, title="The sync failed", lines=[f"{type(exc).__name__}: {exc.message}"])
        return await _location_page(request, console_session, found, result, 502)
    except httpx.HTTPError as exc:
        result = Result(
            kind="sync", ok=False, title="The sync failed", lines=[f"cannot reach the EMR ({type(exc).__name__})"]
        )
        return await _location_page(request, console_session, found, result, 502)
    result = Result(
        kind="sync",
        ok=True,
        title="Synced now",
        lines=[
            f"{done.patients} patient(s) and {done.appointments} appointment(s) read from the change feed",
            f"{done.appointments_changed} appointment(s) and {done.patients_changed} patient(s) changed",
            f"{done.events} event(s) emitted, {done.requests} EMR request(s), {done.seconds:.1f} s",
        ],
    )
    return await _location_page(request, console_session, found, result)


@post("/locations/{location_id:str}/verify", status_code=200)
async def verify(request: Req, console_session: Session, location_id: PathId) -> Template:
    rt = runtime(request)
    found = await _location(rt, location_id)
    try:
        report = await verify_location(
            rt.store, found, http=rt.http, pacing=rt.adapters.pacing, actor=_actor(console_session)
        )
    except EMRUnreachable as exc:
        result = Result(
            kind="verify", ok=False, title="Verification failed", lines=[f"cannot reach the EMR ({exc.reason})"]
        )
        return await _location_page(request, console_session, found, result, 502)
    # The stored credentials were just proven (or not): the health light shows it now, not in up to 30 s.
    rt.adapters.forget(found.id)
    await check_location(rt, found, fresh=True)
    title = "The connection works" if report.ok else "Verification failed"
    result = Result(kind="verify", ok=report.ok, title=title, report=report)
    return await _location_page(request, console_session, found, result)


@post("/locations/{location_id:str}/keys", status_code=200)
async def issue_key(request: Req, console_session: Session, location_id: PathId) -> Template:
    rt = runtime(request)
    found = await _location(rt, location_id)
    form = await _form(request)
    try:
        issued = await key_usecases.issue_key(
            rt.store, found.id, test=form.get("test") == "on", actor=_actor(console_session)
        )
    except UnknownLocation:
        raise NotFoundException() from None
    result = Result(
        kind="key",
        ok=True,
        title=f"API key {issued.record.prefix}… issued",
        lines=["Copy it now: it is shown only this once and cannot be shown again."],
        secret=issued.secret,
        shown_once_label="New API key",
    )
    return await _location_page(request, console_session, found, result)


@post("/locations/{location_id:str}/keys/revoke", status_code=200)
async def revoke_key(request: Req, console_session: Session, location_id: PathId) -> Template:
    rt = runtime(request)
    found = await _location(rt, location_id)
    prefix = (await _form(request)).get("prefix", "")
    revoked = await key_usecases.revoke_key(rt.store, prefix, actor=_actor(console_session), location_id=found.id)
    if not revoked:
        result = Result(
            kind="revoke", ok=False, title="Nothing revoked", lines=["No active key with that prefix here."]
        )
        return await _location_page(request, console_session, found, result, 404)
    seconds = rt.config.auth_cache_seconds
    result = Result(
        kind="revoke",
        ok=True,
        title=f"API key {prefix}… revoked",
        lines=[f"Every replica refuses it within {seconds:g} s."],
    )
    return await _location_page(request, console_session, found, result)


# -- webhooks: an endpoint's delivery log and its actions (gateway.usecases.webhooks, as /v1/webhooks uses them) ----


async def _endpoint_page(
    request: Req,
    session: SessionRecord,
    location: LocationRecord,
    endpoint_id: PathId,
    state: str | None = None,
    result: Result | None = None,
    status: int = 200,
) -> Template:
    page = await views.endpoint_page(runtime(request), location, endpoint_id, state)
    if page is None:
        raise NotFoundException()
    template = _page(
        "endpoint.html",
        session,
        status,
        page=page,
        title="Webhook deliveries",
        nav="overview",
        states=views.DELIVERY_STATES,
    )
    template.context["result"] = result
    return template


@get("/locations/{location_id:str}/webhooks/{endpoint_id:str}", name="console:endpoint")
async def endpoint(
    request: Req,
    console_session: Session,
    location_id: PathId,
    endpoint_id: PathId,
    state_filter: Annotated[str | None, QueryParameter(name="state", required=False)] = None,
) -> Template:
    found = await _location(runtime(request), location_id)
    wanted = state_filter if state_filter in views.DELIVERY_STATES else None
    return await _endpoint_page(request, console_session, found, endpoint_id, wanted)


@post("/locations/{location_id:str}/webhooks/{endpoint_id:str}/deliveries/{delivery_id:str}/retry", status_code=200)
async def retry(
    request: Req,
    console_session: Session,
    location_id: PathId,
    endpoint_id: PathId,
    delivery_id: PathId,
) -> Template:
    rt = runtime(request)
    found = await _location(rt, location_id)
    record = await hooks.retry_delivery(rt.store, found.id, endpoint_id, delivery_id, actor=_actor(console_session))
    if record is None:
        raise NotFoundException()
    result = Result(
        kind="retry", ok=True, title=f"Delivery {delivery_id} queued again", lines=["A worker sends it now."]
    )
    return await _endpoint_page(request, console_session, found, endpoint_id, result=result)


def _since(raw: str, zone: str) -> datetime | None:
    """An RFC 3339 instant, or a wall time (`datetime-local`) in the location's zone, read as the API reads times
    (years out of range and wall times the clocks skip are refused, not shifted); None when it is not one."""
    if not raw.strip():
        return None
    try:
        return to_instant(read_date_time(raw, field="since"), zone, field="since")
    except ValidationFailed:
        return None


@post("/locations/{location_id:str}/webhooks/{endpoint_id:str}/replay", status_code=200)
async def replay(
    request: Req,
    console_session: Session,
    location_id: PathId,
    endpoint_id: PathId,
) -> Template:
    rt = runtime(request)
    found = await _location(rt, location_id)
    since = _since((await _form(request)).get("since", ""), found.time_zone)
    if since is None:
        result = Result(
            kind="replay",
            ok=False,
            title="Nothing replayed",
            lines=[f"Give a date and time (in {found.time_zone}) to replay from."],
        )
        return await _endpoint_page(request, console_session, found, endpoint_id, result=result, status=422)
    queued = await hooks.replay(rt.store, found.id, endpoint_id, since, actor=_actor(console_session))
    if queued is None:
        raise NotFoundException()
    result = Result(
        kind="replay", ok=True, title=f"{queued} event(s) queued again", lines=["Same webhook-id as the first time."]
    )
    return await _endpoint_page(request, console_session, found, endpoint_id, result=result)


@post("/locations/{location_id:str}/webhooks/{endpoint_id:str}/rotate-secret", status_code=200)
async def rotate_secret(
    request: Req,
    console_session: Session,
    location_id: PathId,
    endpoint_id: PathId,
) -> Template:
    rt = runtime(request)
    found = await _location(rt, location_id)
    grace = rt.config.webhook_secret_grace_seconds
    rotated = await hooks.rotate_secret(rt.store, found.id, endpoint_id, grace, actor=_actor(console_session))
    if rotated is None:
        raise NotFoundException()
    result = Result(
        kind="rotate",
        ok=True,
        title="Secret rotated",
        lines=[
            "Copy the new secret now: it is shown only this once.",
            f"The old secret keeps signing alongside it for {grace / 3600:g} h.",
        ],
        secret=rotated[1],
        shown_once_label="New signing secret",
    )
    return await _endpoint_page(request, console_session, found, endpoint_id, result=result)


@post("/locations/{location_id:str}/webhooks/{endpoint_id:str}/enable", status_code=200)
async def enable(
    request: Req,
    console_session: Session,
    location_id: PathId,
    endpoint_id: PathId,
) -> Template:
    rt = runtime(request)
    found = await _location(rt, location_id)
    record = await hooks.enable(rt.store, found.id, endpoint_id, actor=_actor(console_session))
    if record is None:
        raise NotFoundException()
    result = Result(
        kind="enable",
        ok=True,
        title="Endpoint enabled",
        lines=["Pending and retrying deliveries resume; dead ones wait for a retry or a replay."],
    )
    return await _endpoint_page(request, console_session, found, endpoint_id, result=result)


# -- patient trace (a POST form: no patient data in any URL) ------------------------------------------------------


async def _trace_page(request: Req, session: SessionRecord, status: int = 200, **context: Any) -> Template:
    locations = await runtime(request).store.list_locations()
    defaults: dict[str, Any] = {"traces": [], "matches": [], "error": None, "searched": False, "form": {}}
    return _page(
        "trace.html",
        session,
        status,
        locations=locations,
        title="Patient trace",
        nav="trace",
        **{**defaults, **context},
    )


@get("/trace", name="console:trace")
async def trace_form(request: Req, console_session: Session) -> Template:
    return await _trace_page(request, console_session)


@post("/trace", status_code=200)
async def trace_lookup(request: Req, console_session: Session) -> Template:
    rt = runtime(request)
    form = await _form(request)
    kept = {"location_id": form.get("location_id", ""), "by": form.get("by", "id"), "value": form.get("value", "")}
    location = await rt.store.get_location(kept["location_id"])
    value = kept["value"].strip()[:254]
    if location is None or not value:
        error = "Choose a location and give the patient's EMR id or e-mail."
        return await _trace_page(request, console_session, 422, error=error, form=kept)
    if kept["by"] == "email":
        try:
            matches = await trace.find_by_email(rt, location, value)
        except AdapterError as exc:
            error = f"The EMR could not be asked ({type(exc).__name__}): {exc.message}"
            return await _trace_page(request, console_session, 502, error=error, form=kept, searched=True)
        except httpx.HTTPError as exc:  # as `sync` does: an EMR unreachable at the transport is a 502 page, not a 500
            error = f"The EMR could not be reached ({type(exc).__name__})"
            return await _trace_page(request, console_session, 502, error=error, form=kept, searched=True)
        patient_ids = [m.patient_id for m in matches][:5]
    else:
        matches, patient_ids = [], [value]
    traces = [await trace.trace(rt, location, patient_id) for patient_id in patient_ids]
    return await _trace_page(request, console_session, traces=traces, matches=matches, form=kept, searched=True)


@get("/{rest:path}", opt={PUBLIC: True}, name="console:not-found")
async def not_found(rest: PathId) -> None:
    """Any other address under /console: the console's own 404 page (with its headers), not the API's problem."""
    raise NotFoundException()


def console_handlers() -> list[Router]:
    """The console's router and its static files (the CSS), both under the console's security headers."""
    pages = Router(
        path=PREFIX,
        route_handlers=[
            sign_in_form,
            sign_in,
            sign_out,
            overview,
            location,
            sync,
            verify,
            issue_key,
            revoke_key,
            endpoint,
            retry,
            replay,
            rotate_secret,
            enable,
            trace_form,
            trace_lookup,
            not_found,
        ],
        guards=[console_guard],
        dependencies={"console_session": Provide(provide_session)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[security_headers],
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=f"{PREFIX}/static",
        directories=[STATIC],
        name="console:static",
        cache_control=CacheControlHeader(max_age=3600),
        middleware=[security_headers],
        include_in_schema=False,
    )
    return [pages, static]

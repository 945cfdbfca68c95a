"""What keeps the console safe: the session cookie, the sign-in guard, CSRF synchronizer tokens on every POST, the
response headers (a strict CSP among them) and HTML error pages.

- The session cookie holds a random token (the database keeps its SHA-256): `HttpOnly`, `SameSite=Strict`,
  `Path=/console`, and `Secure` unless the console is reached as localhost / 127.0.0.1 / ::1 (plain HTTP on a
  developer's machine; anywhere else the console must be served over HTTPS, e.g. behind a TLS-terminating proxy).
- Every console POST carries the session's token in the `_csrf` field, compared in constant time. The sign-in form,
  before any session exists, uses a double-submit token (a cookie and a field that must match).
- Console responses carry `Content-Security-Policy: default-src 'none'; style-src 'self'; …` (no script at all, no
  inline style), `X-Frame-Options: DENY`, `frame-ancestors 'none'`, `no-store` caching, no referrer.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, State
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect, Template
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logsafe import log_unexpected
from gateway.runtime import Runtime
from gateway.usecases import operators
from gateway.usecases.operators import SessionRecord

log = logging.getLogger("emr_gateway.console")

PREFIX = "/console"
SIGN_IN = f"{PREFIX}/sign-in"
SESSION_COOKIE = "egw_console"
SIGN_IN_COOKIE = "egw_console_signin"  # the sign-in form's double-submit token
CSRF_FIELD = "_csrf"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
PUBLIC = "console_public"  # handler opt: no session needed (sign-in, static files)
_SCOPE_KEY = "egw_console_session"

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page."""


class CsrfRejected(Exception):
    """A console POST without this session's synchronizer token (or the sign-in form's double-submit token)."""


def runtime(request: ASGIConnection[Any, Any, Any, State]) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


def secure_cookies(request: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return (request.url.hostname or "") not in LOCAL_HOSTS


def session_cookie(request: Request[Any, Any, Any], token: str) -> Cookie:
    """A browser-session cookie (no Max-Age); the server ends the session on its own schedule too."""
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        path=PREFIX,
        httponly=True,
        secure=secure_cookies(request),
        samesite="strict",
    )


def expired_cookie(request: Request[Any, Any, Any], key: str) -> Cookie:
    return Cookie(
        key=key, value="", path=PREFIX, httponly=True, secure=secure_cookies(request), samesite="strict", max_age=0
    )


def sign_in_token(request: Request[Any, Any, Any]) -> tuple[str, Cookie | None]:
    """The sign-in form's double-submit token: the cookie's if the browser has one, else a new one to set."""
    existing = request.cookies.get(SIGN_IN_COOKIE)
    if existing and 20 <= len(existing) <= 128:
        return existing, None
    token = secrets.token_urlsafe(32)
    cookie = Cookie(
        key=SIGN_IN_COOKIE,
        value=token,
        path=PREFIX,
        httponly=True,
        secure=secure_cookies(request),
        samesite="strict",
    )
    return token, cookie


async def current_session(connection: ASGIConnection[Any, Any, Any, State]) -> SessionRecord | None:
    """The session the cookie opens, looked up once per request."""
    scope: dict[str, Any] = connection.scope  # type: ignore[assignment]
    if _SCOPE_KEY not in scope:
        token = connection.cookies.get(SESSION_COOKIE)
        scope[_SCOPE_KEY] = await operators.session_of(runtime(connection).store, token)
    found: SessionRecord | None = scope[_SCOPE_KEY]
    return found


def _same(given: object, expected: str) -> bool:
    return isinstance(given, str) and bool(given) and hmac.compare_digest(given.encode(), expected.encode())


async def console_guard(connection: ASGIConnection[Any, Any, Any, State], handler: BaseRouteHandler) -> None:
    """Every console route needs a live session unless it opts out (`opt={PUBLIC: True}`); every POST needs the
    CSRF token: the session's, or the sign-in form's double-submit token on the sign-in POST."""
    public = bool(handler.opt.get(PUBLIC))
    is_post = connection.scope.get("method") == "POST"
    if public:
        if is_post:
            assert isinstance(connection, Request)
            cookie = connection.cookies.get(SIGN_IN_COOKIE)
            if cookie is None or not _same((await connection.form()).get(CSRF_FIELD), cookie):
                raise CsrfRejected
        return
    session = await current_session(connection)
    if session is None:
        raise SignInRequired
    if is_post:
        assert isinstance(connection, Request)
        if not _same((await connection.form()).get(CSRF_FIELD), session.csrf_token):
            raise CsrfRejected


async def provide_session(request: Request[Any, Any, State]) -> SessionRecord:
    """The handler's session (the guard has already required it)."""
    session = await current_session(request)
    if session is None:
        raise SignInRequired
    return session


def security_headers(app: ASGIApp) -> ASGIApp:
    """The console's response headers, on every answer under /console (error pages and static files included)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {name.lower() for name, _ in headers}
                headers += [header for header in HEADERS if header[0] not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await app(scope, receive, with_headers)

    return middleware


# -- error pages ----------------------------------------------------------------------------------------------------


def _error_page(status: int, title: str, detail: str) -> Template:
    return Template(
        template_name="error.html",
        context={"title": title, "detail": detail, "status": status, "session": None, "csrf": ""},
        status_code=status,
    )


def on_sign_in_required(request: Request[Any, Any, Any], _exc: SignInRequired) -> Response[Any]:
    target = SIGN_IN
    if request.method == "GET" and request.url.path != PREFIX:
        target += "?next=" + quote(request.url.path, safe="/")
    return Redirect(target, status_code=303)


def on_csrf_rejected(_request: Request[Any, Any, Any], _exc: CsrfRejected) -> Response[Any]:
    return _error_page(
        403,
        "The form has expired",
        "This form was not sent from your current console session (its security token is missing or does not "
        "match). Go back, reload the page and try again.",
    )


def on_http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status == 404:
        return _error_page(404, "Not found", "There is nothing at this address in the console.")
    if status >= 500:
        return on_internal_error(_request, exc)
    return _error_page(status, "The request was refused", "The console could not read this request.")


def on_internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log_unexpected(log, f"console error on {request.scope.get('path_template', 'unmatched')}", exc)
    return _error_page(500, "Something went wrong", "The console hit an unexpected error; it has been logged.")


EXCEPTION_HANDLERS: dict[type[Exception], Callable[..., Response[Any]]] = {
    SignInRequired: on_sign_in_required,
    CsrfRejected: on_csrf_rejected,
    HTTPException: on_http_error,
    Exception: on_internal_error,
}


def safe_next(value: object) -> str:
    """Where to go after signing in: a console path only (never another site, never `//host`)."""
    if isinstance(value, str) and value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX

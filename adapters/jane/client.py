"""Jane's staff web endpoints through httpx: the session cookie, the CSRF token, status -> adapter error mapping.

The CSRF token is read from the admin page's `<meta name="csrf-token">` the first time a write needs it and read
again once if Jane refuses it (Rails answers 422 with an HTML page before touching anything, so resending is safe).
Reads are retried (adapters.http); writes are sent once, and `AmbiguousWrite` tells the adapter to reconcile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

import httpx
import msgspec

from adapters.errors import (
    AdapterError,
    AuthFailed,
    ContractChanged,
    InvalidReference,
    NotFound,
    RateLimited,
    Rejected,
    Unavailable,
)
from adapters.http import (
    DEFAULT_RETRY,
    RetryPolicy,
    decode,
    describe_shape_error,
    error_fields,
    is_json,
    is_unsent,
    retry_after_of,
    safe_message,
    send_read,
)
from adapters.http import transport_error as map_transport_error
from adapters.jane.settings import JaneCredentials, JaneSettings, base_url_of
from adapters.reconcile import AmbiguousWrite

T = TypeVar("T")

EMR = "Jane"
SESSION_COOKIE = "_jane_session"
ADMIN_PAGE = "/admin"
SESSION_EXPIRED = (
    "the Jane session must be renewed: sign in to Jane as the integration's staff user and store the new "
    "_jane_session cookie in this location's credentials"
)
CSRF_RE = re.compile(r"""<meta\s+name=["']csrf-token["']\s+content=["']([^"']+)["']""", re.IGNORECASE)

Params = Sequence[tuple[str, str]]

REFERENCE_FIELDS = {
    "patient_id": "patient_id",
    "patient": "patient_id",
    "staff_member_id": "practitioner_id",
    "staff_member": "practitioner_id",
    "treatment_id": "service_id",
    "treatment": "service_id",
    "location_id": "location_id",
}


def _is_login_redirect(response: httpx.Response) -> bool:
    return response.is_redirect and "login" in response.headers.get("location", "").lower()


def _is_csrf_refusal(response: httpx.Response) -> bool:
    return response.status_code == 422 and not is_json(response)


def error_for(response: httpx.Response) -> AdapterError:
    """The adapter error for a non-2xx Jane answer; messages carry field names, never values."""
    status = response.status_code
    detail = safe_message(response)
    if status == 401 or _is_login_redirect(response):
        return AuthFailed(SESSION_EXPIRED, emr_status=status, emr_message=detail)
    if status == 403:
        return AuthFailed(
            "the Jane staff user behind the session lacks permission for this operation",
            emr_status=status,
            emr_message=detail,
        )
    if status == 404:
        return NotFound("Jane has no such record", emr_status=status, emr_message=detail)
    if status == 422:
        fields = error_fields(response)
        for name in fields:
            if name in REFERENCE_FIELDS:
                field = REFERENCE_FIELDS[name]
                return InvalidReference(f"Jane rejected {field}", field=field, emr_status=status, emr_message=detail)
        listed = ", ".join(fields) if fields else "unspecified fields"
        return Rejected(f"Jane rejected the request ({listed})", emr_status=status, emr_message=detail)
    if status == 429:
        return RateLimited(
            "Jane's rate limit was reached",
            retry_after=retry_after_of(response, default=60),
            emr_status=status,
            emr_message=detail,
        )
    if status >= 500:
        return Unavailable(f"Jane answered {status}", emr_status=status, emr_message=detail)
    return Rejected(f"Jane refused the request ({status})", emr_status=status, emr_message=detail)


def _changed(path: str, problem: str, status: int | None = None) -> ContractChanged:
    return ContractChanged(
        f"{EMR} answered with a shape this adapter does not know: {problem} at {path}",
        path=path,
        problem=problem,
        emr_status=status,
    )


def items_of(body: object, key: str) -> tuple[list[object], str]:
    """Jane answers lists as a bare array or as `{"<plural>": [...]}`: accept both. Also returns the items' path."""
    if isinstance(body, list):
        return body, "$"
    if isinstance(body, dict):
        inner = body.get(key)
        if isinstance(inner, list):
            return inner, f"$.{key}"
        raise _changed(f"$.{key}", "missing required field")
    raise _changed("$", "expected array or object")


def list_of(body: object, key: str, type: type[T], status: int | None = None) -> list[T]:
    """The items of a list answer as `type`; a shape they no longer match is ContractChanged naming the field."""
    items, where = items_of(body, key)
    try:
        return msgspec.convert(items, list[type])  # type: ignore[valid-type]
    except msgspec.ValidationError as exc:
        path, problem = describe_shape_error(exc)
        raise _changed(where + path[1:], problem, status) from None


def record_of(response: httpx.Response, key: str) -> msgspec.Raw:
    """A record answer's JSON object, bare or wrapped as `{"<key>": {...}}`, exactly as Jane sent it."""
    members = decode(response.content, dict[str, msgspec.Raw], emr=EMR, status=response.status_code)
    inner = members.get(key)
    if inner is not None and bytes(inner).lstrip().startswith(b"{"):
        return inner
    return msgspec.Raw(response.content)


class JaneClient:
    """One per adapter instance; shares the gateway's httpx.AsyncClient (connection pool, timeouts)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: JaneSettings,
        credentials: JaneCredentials,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.http = http
        self.base_url = base_url_of(settings)
        self.retry = retry
        self._csrf: str | None = None
        # The cookie travels as an explicit header so the shared client's cookie jar never mixes two locations.
        self._headers = {
            "Cookie": f"{SESSION_COOKIE}={credentials.session_cookie}",
            "Accept": "application/json",
            "X-Requested-With": "XMLHttpRequest",
            "Referer": f"{self.base_url}{ADMIN_PAGE}",
        }

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # ------------------------------------------------------------------------------------------------ session

    async def csrf_token(self, *, refresh: bool = False) -> str:
        """The admin page's CSRF token; loading the page is also the cheapest proof that the session is alive."""
        if self._csrf is not None and not refresh:
            return self._csrf
        response = await self._read(self.url(ADMIN_PAGE), None, accept="text/html")
        if not response.is_success:
            raise error_for(response)
        match = CSRF_RE.search(response.text)
        if match is None:
            # A signed-out Jane serves the login page at 200 in some set-ups: no token means no session.
            raise AuthFailed(SESSION_EXPIRED, emr_status=response.status_code, emr_message="no CSRF token on the page")
        self._csrf = match.group(1)
        return self._csrf

    # ------------------------------------------------------------------------------------------------ reads

    async def _read(self, url: str, params: Params | None, accept: str = "application/json") -> httpx.Response:
        headers = {**self._headers, "Accept": accept}

        async def send() -> httpx.Response:
            return await self.http.get(
                url, params=list(params) if params else None, headers=headers, follow_redirects=False
            )

        try:
            return await send_read(send, self.retry)
        except httpx.TransportError as exc:
            raise map_transport_error(exc, EMR) from None

    async def get(self, path: str, type: type[T], params: Params | None = None) -> T:
        response = await self._read(self.url(path), params)
        return self._decode(response, type)

    async def get_record(self, path: str, key: str, params: Params | None = None) -> msgspec.Raw:
        """One record exactly as Jane sent it (to hand back to Jane unchanged)."""
        response = await self._read(self.url(path), params)
        self._json(response)
        return record_of(response, key)

    async def get_list(self, path: str, key: str, type: type[T], params: Params | None = None) -> list[T]:
        response = await self._read(self.url(path), params)
        return self.decode_list(response, key, type)

    def decode_record(self, response: httpx.Response, key: str, type: type[T]) -> T:
        """A record answer, bare or wrapped as `{"<key>": {...}}`."""
        self._json(response)
        return decode(record_of(response, key), type, emr=EMR, status=response.status_code)

    def decode_list(self, response: httpx.Response, key: str, type: type[T]) -> list[T]:
        return list_of(self._decode(response, object), key, type, response.status_code)

    @staticmethod
    def _json(response: httpx.Response) -> None:
        if not response.is_success:
            raise error_for(response)
        if not is_json(response):
            raise Unavailable(
                f"Jane answered {response.status_code} without JSON where JSON was expected",
                emr_status=response.status_code,
                emr_message=safe_message(response),
            )

    def _decode(self, response: httpx.Response, type: type[T]) -> T:
        self._json(response)
        return decode(response.content, type, emr=EMR, status=response.status_code)

    # ------------------------------------------------------------------------------------------------ writes

    async def _send_write(self, method: str, path: str, content: bytes | None, token: str) -> httpx.Response:
        headers = {**self._headers, "X-CSRF-Token": token}
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            return await self.http.request(
                method, self.url(path), content=content, headers=headers, follow_redirects=False
            )
        except httpx.TransportError as exc:
            if is_unsent(exc):
                raise Unavailable(f"Jane could not be reached ({type(exc).__name__}); nothing was sent") from None
            raise AmbiguousWrite(type(exc).__name__) from None

    async def write(self, method: str, path: str, body: msgspec.Struct | None = None) -> httpx.Response:
        """Send a write once (twice only when Jane refused a stale CSRF token, which applies nothing)."""
        content = msgspec.json.encode(body) if body is not None else None
        response = await self._send_write(method, path, content, await self.csrf_token())
        if _is_csrf_refusal(response):
            response = await self._send_write(method, path, content, await self.csrf_token(refresh=True))
            if _is_csrf_refusal(response):
                raise AuthFailed(SESSION_EXPIRED, emr_status=422, emr_message="CSRF token refused twice")
        if not response.is_success:
            raise error_for(response)
        return response

    async def write_json(
        self, method: str, path: str, body: msgspec.Struct | None, type: type[T], key: str | None = None
    ) -> T:
        """The record a write answers with; `key` accepts it wrapped as `{"<key>": {...}}` as well as bare."""
        response = await self.write(method, path, body)
        try:
            raw = self._decode(response, object)
            if key is not None and isinstance(raw, dict) and isinstance(raw.get(key), dict):
                raw = raw[key]
            return msgspec.convert(raw, type)
        except (Unavailable, ContractChanged, msgspec.ValidationError):
            raise AmbiguousWrite("unreadable answer to a write") from None

    async def write_record(self, method: str, path: str, body: msgspec.Struct, key: str) -> msgspec.Raw:
        """`write_json`, keeping the record exactly as Jane sent it."""
        response = await self.write(method, path, body)
        try:
            self._json(response)
            return record_of(response, key)
        except (Unavailable, ContractChanged):
            raise AmbiguousWrite("unreadable answer to a write") from None

"""SimplePractice over httpx: the clinician JSON:API (session cookie + CSRF token) and the client-portal API.

Every answer must be a JSON:API document. SimplePractice's web app answers paths it does not know with its
single-page app (`200 text/html`), so a 200 that is not JSON:API is an error here, never a success. Reads are
retried (adapters.http); writes go out once, and an unclear outcome raises `AmbiguousWrite` for the adapter to
reconcile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import msgspec

from adapters.errors import AdapterError, AuthFailed, InvalidReference, NotFound, RateLimited, Rejected, Unavailable
from adapters.http import DEFAULT_RETRY, RetryPolicy, is_unsent, retry_after_of, scrub, send_read
from adapters.http import transport_error as map_transport_error
from adapters.reconcile import AmbiguousWrite
from adapters.simplepractice import wire
from adapters.simplepractice.settings import (
    SimplePracticeCredentials,
    SimplePracticeSettings,
    frontend_url_of,
    portal_url_of,
)
from adapters.simplepractice.writes import WriteRequest

T = TypeVar("T")
P = TypeVar("P")
EMR = "SimplePractice"
PAGE_SIZE = 50
MAX_PAGES = 2000  # 100,000 records at 50 a page: a guard against a runaway `links.next`, not a size limit
Params = Sequence[tuple[str, str]]

SESSION_EXPIRED = (
    "SimplePractice refused the web session (expired or signed out): sign in to SimplePractice again and update "
    "the location's session_cookie and csrf_token"
)
NOT_JSONAPI = (
    "SimplePractice answered {status} with {content_type} instead of a JSON:API document (its web app's catch-all "
    "page): the endpoint or the location's Api-Version setting is probably out of date"
)

# JSON:API error pointers that name another record: the caller gave an id SimplePractice does not know.
REFERENCE_POINTERS = {
    "client": "patient_id",
    "clinician": "practitioner_id",
    "clinicianid": "practitioner_id",
    "office": "location_id",
    "officeid": "location_id",
    "cptcodes": "service_id",
}


def is_jsonapi(response: httpx.Response) -> bool:
    """A JSON (ideally `application/vnd.api+json`) body with a top-level `data` or `errors` member."""
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not (media == wire.JSONAPI or media.endswith("json")):
        return False
    try:
        probe = msgspec.json.decode(response.content, type=wire.Probe)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return bool(probe.data) or bool(probe.errors)


def jsonapi_errors(response: httpx.Response) -> list[wire.ErrorObject]:
    try:
        return msgspec.json.decode(response.content, type=wire.ErrorDocument).errors
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []


def safe_message(response: httpx.Response) -> str:
    """What SimplePractice said, without patient data: error titles (scrubbed) and the pointers they name."""
    if not is_jsonapi(response):
        media = response.headers.get("content-type", "").split(";", 1)[0] or "no content type"
        return f"HTTP {response.status_code} with a non-JSON:API body ({media})"
    parts: list[str] = []
    for error in jsonapi_errors(response)[:5]:
        text = scrub(error.title or error.detail or error.code or "error")
        if error.source is not None and (error.source.pointer or error.source.parameter):
            text += f" ({error.source.pointer or error.source.parameter})"
        parts.append(text)
    return "; ".join(parts) if parts else f"HTTP {response.status_code}"


def _pointer_field(error: wire.ErrorObject) -> str | None:
    pointer = (error.source.pointer or "") if error.source is not None else ""
    for part in reversed(pointer.strip("/").split("/")):
        field = REFERENCE_POINTERS.get(part.lower())
        if field is not None:
            return field
    return None


def error_for(response: httpx.Response) -> AdapterError:
    """The adapter error for an answer that is not a usable JSON:API document."""
    status = response.status_code
    detail = safe_message(response)
    if 300 <= status < 400:
        return AuthFailed(SESSION_EXPIRED + " (it redirected to sign-in)", emr_status=status, emr_message=detail)
    if status == 401:
        return AuthFailed(SESSION_EXPIRED, emr_status=status, emr_message=detail)
    if status == 403:
        return AuthFailed(
            "SimplePractice refused the request (403): the CSRF token is stale or the signed-in user lacks "
            "permission; sign in again and update the location's credentials",
            emr_status=status,
            emr_message=detail,
        )
    if status == 429:
        return RateLimited(
            "SimplePractice's rate limit was reached",
            retry_after=retry_after_of(response, default=60),
            emr_status=status,
            emr_message=detail,
        )
    if status >= 500:
        return Unavailable(f"SimplePractice answered {status}", emr_status=status, emr_message=detail)
    if not is_jsonapi(response):
        content_type = response.headers.get("content-type", "").split(";", 1)[0] or "no content type"
        return Rejected(
            NOT_JSONAPI.format(status=status, content_type=content_type), emr_status=status, emr_message=detail
        )
    if status == 404:
        return NotFound("SimplePractice has no such record", emr_status=status, emr_message=detail)
    if status == 422:
        for error in jsonapi_errors(response):
            field = _pointer_field(error)
            if field is not None:
                return InvalidReference(
                    f"SimplePractice rejected {field}", field=field, emr_status=status, emr_message=detail
                )
    return Rejected(f"SimplePractice refused the request ({status}: {detail})", emr_status=status, emr_message=detail)


class SimplePracticeClient:
    """One per adapter instance; shares the gateway's httpx.AsyncClient. Never sends the session to the portal."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: SimplePracticeSettings,
        credentials: SimplePracticeCredentials,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.http = http
        self.retry = retry
        self.base_url = frontend_url_of(settings)
        self.portal_url = portal_url_of(settings)
        self._headers = {
            "Accept": wire.JSONAPI,
            "Api-Version": settings.api_version,
            "Cookie": credentials.session_cookie,
            "X-Csrf-Token": credentials.csrf_token,
            "X-Requested-With": "XMLHttpRequest",
        }
        self._portal_headers = {
            "Accept": wire.JSONAPI,
            "Api-Version": settings.portal_api_version,
            "Application-Build-Version": settings.portal_build_version,
            "Application-Platform": "web",
        }

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # ------------------------------------------------------------------------------------------------ reads

    async def _read(self, url: str, params: Params | None, headers: dict[str, str]) -> httpx.Response:
        async def send() -> httpx.Response:
            # The gateway's client does not follow redirects: a redirect to sign-in must surface as expiry.
            return await self.http.get(url, params=list(params) if params else None, headers=headers)

        try:
            return await send_read(send, self.retry)
        except httpx.TransportError as exc:
            raise map_transport_error(exc, EMR) from None

    async def get(self, path: str, type: type[T], params: Params | None = None) -> T:
        return self._decode(await self._read(self.url(path), params, self._headers), type)

    async def portal_get(self, path: str, type: type[T], params: Params | None = None) -> T:
        url = f"{self.portal_url}/{path.lstrip('/')}"
        return self._decode(await self._read(url, params, self._portal_headers), type)

    async def list(self, path: str, page_type: type[P], params: Params = ()) -> list[P]:
        """Every page of a list (`page[number]`, `page[size]`) while `links.next` asks for the next one."""
        pages: list[P] = []
        for number in range(1, MAX_PAGES + 1):
            query = [*params, ("page[number]", str(number)), ("page[size]", str(PAGE_SIZE))]
            page = await self.get(path, page_type, query)
            pages.append(page)
            links: wire.Links | None = getattr(page, "links", None)
            if links is None or not links.next or not self._next_is(links.next, number + 1):
                return pages
        raise Unavailable("SimplePractice kept returning more pages than any real list has")

    @staticmethod
    def _next_is(link: str, number: int) -> bool:
        """Follow `links.next` only as far as it asks for the next page number (its host is never contacted)."""
        query = dict(parse_qsl(urlsplit(link).query))
        return query.get("page[number]") == str(number)

    def _decode(self, response: httpx.Response, type: type[T]) -> T:
        if not response.is_success or not is_jsonapi(response):
            raise error_for(response)
        try:
            return msgspec.json.decode(response.content, type=type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # msgspec names the path of the bad member, never its value.
            raise Unavailable(
                f"SimplePractice answered with an unexpected JSON:API shape: {exc}", emr_status=response.status_code
            ) from None

    # ------------------------------------------------------------------------------------------------ writes

    async def write(self, request: WriteRequest, type: type[T]) -> T:
        """Send once. Unsent -> Unavailable; sent but unanswered or unreadable -> AmbiguousWrite; refusals mapped."""
        try:
            response = await self.http.request(
                request.method,
                self.url(request.path),
                content=msgspec.json.encode(request.body),
                headers={**self._headers, "Content-Type": wire.JSONAPI},
            )
        except httpx.TransportError as exc:
            if is_unsent(exc):
                raise Unavailable(f"SimplePractice could not be reached ({type_name(exc)}); nothing was sent") from None
            raise AmbiguousWrite(type_name(exc)) from None
        if not response.is_success or not is_jsonapi(response):
            raise error_for(response)
        try:
            return msgspec.json.decode(response.content, type=type)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise AmbiguousWrite("unreadable answer to a write", emr_status=response.status_code) from None


def type_name(exc: BaseException) -> str:
    return exc.__class__.__name__

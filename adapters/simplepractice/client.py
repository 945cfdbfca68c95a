"""SimplePractice over httpx: the clinician JSON:API (session cookie + CSRF token) and the client-portal API.

Every answer must be a JSON:API document. SimplePractice's web app answers paths it does not know with its
single-page app (`200 text/html`), so a 200 that is not JSON:API is an error here, never a success. Reads are
retried (adapters.http); writes go out once, and an unclear outcome raises `AmbiguousWrite` for the adapter to
reconcile.

Lists page by `page[number]`/`page[size]` (50, the largest page the portal serves) and keep going while a page is
full: no source shows `links.next` or a total on `/frontend` ("A short page is the last page", evidence-2026-11
§5.2). `links.next` is still followed when present.

Error messages carry the status, JSON:API `code`s and the members `source` names, never an error's `title` or
`detail`: SimplePractice's prose can quote a client's name, e-mail or phone, and these messages reach callers and
logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

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
from adapters.http import DEFAULT_RETRY, RetryPolicy, code_of, decode, is_unsent, retry_after_of, send_read
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
EMR = "SimplePractice"
PAGE_SIZE = 50
MAX_PAGES = 2000  # 100,000 records at 50 a page: a guard against a list that never ends, not a size limit
Params = Sequence[tuple[str, str]]

SESSION_EXPIRED = (
    "SimplePractice refused the web session (expired or signed out): sign in to SimplePractice again and update "
    "the location's session_cookie and csrf_token"
)
NOT_JSONAPI = (
    "SimplePractice answered {status} with {content_type} instead of a JSON:API document (its web app's catch-all "
    "page): the endpoint or the location's Api-Version setting is probably out of date"
)
EDGE_BLOCKED = (
    "SimplePractice's {edge} refused the request with its own 403 page before it reached SimplePractice: the "
    "session was never looked at, so signing in again will not help. It is usually temporary (traffic) or a block "
    "on the gateway's network address; try again later, and if it persists, check the gateway's outbound address"
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


class Resource(Protocol):
    @property
    def id(self) -> str: ...


class Page(Protocol):
    """Any list document: `data[]` with ids, optional `links`."""

    @property
    def data(self) -> Sequence[Resource]: ...

    @property
    def links(self) -> wire.Links | None: ...


P = TypeVar("P", bound=Page)


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


_POINTER = re.compile(r"^(?:/[A-Za-z0-9_-]{1,64}){1,8}$")
_PARAMETER = re.compile(r"^[A-Za-z][A-Za-z0-9_.\[\]-]{0,63}$")


def blamed(error: wire.ErrorObject) -> str | None:
    """The member or query parameter a JSON:API error names (`/data/attributes/startTime`, `filter[timeRange]`),
    only when it is shaped like a name: a pointer or parameter carrying anything else is dropped, not quoted."""
    if error.source is None:
        return None
    if error.source.pointer and _POINTER.match(error.source.pointer):
        return error.source.pointer
    if error.source.parameter and _PARAMETER.match(error.source.parameter):
        return error.source.parameter
    return None


def safe_message(response: httpx.Response) -> str:
    """What SimplePractice said, safe for problem bodies and logs: the status, machine codes (`code`) and the members
    its errors name. Never `title` or `detail`: JSON:API prose quotes what was sent (a client's name, e-mail, phone)."""
    status = response.status_code
    if not is_jsonapi(response):
        media = response.headers.get("content-type", "").split(";", 1)[0] or "no content type"
        return f"HTTP {status} with a non-JSON:API body ({media})"
    codes: list[str] = []
    fields: list[str] = []
    for error in jsonapi_errors(response)[:5]:
        if (code := code_of(error.code)) is not None and code not in codes:
            codes.append(code)
        if (name := blamed(error)) is not None and name not in fields:
            fields.append(name)
    parts = [f"HTTP {status}"]
    if codes:
        parts.append("code " + ", ".join(codes))
    if fields:
        parts.append("fields: " + ", ".join(fields))
    return "; ".join(parts)


def _pointer_field(error: wire.ErrorObject) -> str | None:
    pointer = (error.source.pointer or "") if error.source is not None else ""
    for part in reversed(pointer.strip("/").split("/")):
        field = REFERENCE_POINTERS.get(part.lower())
        if field is not None:
            return field
    return None


def edge_of(response: httpx.Response) -> str:
    """Who answered a non-JSON:API 403: CloudFront names itself in `Server`/`X-Cache` and on its page."""
    marks = " ".join((response.headers.get("server", ""), response.headers.get("x-cache", ""))).lower()
    if "cloudfront" in marks or b"cloudfront" in response.content[:4096].lower():
        return "CDN/WAF (CloudFront)"
    return "CDN/WAF"


def error_for(response: httpx.Response) -> AdapterError:
    """The adapter error for an answer that is not a usable JSON:API document."""
    status = response.status_code
    detail = safe_message(response)
    if 300 <= status < 400:
        return AuthFailed(SESSION_EXPIRED + " (it redirected to sign-in)", emr_status=status, emr_message=detail)
    if status == 401:
        return AuthFailed(SESSION_EXPIRED, emr_status=status, emr_message=detail)
    if status == 403 and not is_jsonapi(response):
        return Unavailable(EDGE_BLOCKED.format(edge=edge_of(response)), emr_status=status, emr_message=detail)
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
    if status == 400:
        return Rejected(
            f"SimplePractice refused the request as malformed ({detail}): a header, filter or body it does not "
            "accept; check the location's api_version and portal_api_version settings",
            emr_status=status,
            emr_message=detail,
        )
    return Rejected(f"SimplePractice refused the request ({detail})", emr_status=status, emr_message=detail)


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

    async def list(
        self, path: str, page_type: type[P], params: Params = (), *, until: Callable[[P], bool] | None = None
    ) -> list[P]:
        """Every page of a list: the next page is asked for while a page is full or `links.next` names it, and
        stops at a short or empty page (or after a page `until` accepts).

        A page longer than asked means the list is not paged (the whole list came at once). A full page made only
        of records already seen means SimplePractice ignored `page[number]`: the rest cannot be reached, which is
        `ContractChanged`, never a silently short list.
        """
        pages: list[P] = []
        seen: set[str] = set()
        for number in range(1, MAX_PAGES + 1):
            query = [*params, ("page[number]", str(number)), ("page[size]", str(PAGE_SIZE))]
            page = await self.get(path, page_type, query)
            ids = [item.id for item in page.data]
            if number > 1 and ids and seen.issuperset(ids):
                if len(ids) >= PAGE_SIZE:
                    raise ContractChanged(
                        f"SimplePractice answered page {number} of {path} with page {number - 1}'s records: it "
                        "ignores page[number], so the rest of the list cannot be read",
                        path="page[number]",
                        problem="ignored (a page repeated)",
                    )
                return pages
            seen.update(ids)
            pages.append(page)
            if until is not None and until(page):
                return pages
            full = len(ids) == PAGE_SIZE
            links = page.links
            linked = links is not None and self._next_is(wire.href_of(links.next), number + 1)
            if not (full or linked):
                return pages
        raise Unavailable("SimplePractice kept returning more pages than any real list has")

    @staticmethod
    def _next_is(link: str | None, number: int) -> bool:
        """`links.next` counts only as far as it asks for the next page number (its host is never contacted)."""
        if not link:
            return False
        query = dict(parse_qsl(urlsplit(link).query))
        return query.get("page[number]") == str(number)

    def _decode(self, response: httpx.Response, type: type[T]) -> T:
        if not response.is_success or not is_jsonapi(response):
            raise error_for(response)
        return decode(response.content, type, emr=EMR, status=response.status_code)

    async def accepts(self, path: str, params: Params, *, portal: bool) -> int | None:
        """Whether SimplePractice serves a JSON:API `data` document for this read: None if it does, else the HTTP
        status it answered instead (for `observed_settings`; nothing is decoded or raised)."""
        if portal:
            url, headers = f"{self.portal_url}/{path.lstrip('/')}", self._portal_headers
        else:
            url, headers = self.url(path), self._headers
        response = await self._read(url, params, headers)
        if response.is_success and is_jsonapi(response) and not jsonapi_errors(response):
            return None
        return response.status_code

    # ------------------------------------------------------------------------------------------------ writes

    async def write(self, request: WriteRequest) -> bytes | None:
        """Send once; the JSON:API answer's bytes, or None for `204 No Content`. Unsent -> Unavailable; sent but
        unanswered -> AmbiguousWrite; refusals mapped. Decoding the answer is the adapter's (it may read back)."""
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
        if response.status_code == 204:
            return None
        if not response.is_success or not is_jsonapi(response):
            raise error_for(response)
        return response.content


def type_name(exc: BaseException) -> str:
    return exc.__class__.__name__

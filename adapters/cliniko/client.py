"""Cliniko's HTTP API through httpx: auth and headers, pagination by `links.next`, status -> adapter error mapping.

Reads are retried (adapters.http); writes are sent exactly once. When a write's outcome is unclear (the request went
out but no usable answer came back) the client raises `AmbiguousWrite` so the adapter can reconcile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec

from adapters.cliniko.settings import ClinikoCredentials, ClinikoSettings, base_url_of
from adapters.cliniko.wire import Links
from adapters.errors import (
    AdapterError,
    AuthFailed,
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
    error_fields,
    is_json,
    is_unsent,
    retry_after_of,
    safe_message,
    send_read,
)
from adapters.http import transport_error as map_transport_error
from adapters.reconcile import AmbiguousWrite

T = TypeVar("T")
P = TypeVar("P")

EMR = "Cliniko"
PER_PAGE = "100"
MAX_PAGES = 1000  # a runaway `links.next` loop must end

Params = Sequence[tuple[str, str]]

# 422 field names that point at another record: the caller gave an id Cliniko does not know.
REFERENCE_FIELDS = {
    "patient": "patient_id",
    "patient_id": "patient_id",
    "practitioner": "practitioner_id",
    "practitioner_id": "practitioner_id",
    "appointment_type": "service_id",
    "appointment_type_id": "service_id",
    "business": "business_id",
    "business_id": "business_id",
}


def error_for(response: httpx.Response) -> AdapterError:
    """The adapter error for a non-2xx Cliniko answer; messages carry field names, never values."""
    status = response.status_code
    detail = safe_message(response)
    if status == 401:
        return AuthFailed(
            "Cliniko refused the API key (check the key and its shard suffix)", emr_status=status, emr_message=detail
        )
    if status == 403:
        return AuthFailed(
            "the Cliniko user who owns the API key lacks permission for this operation",
            emr_status=status,
            emr_message=detail,
        )
    if status == 404:
        return NotFound("Cliniko has no such record", emr_status=status, emr_message=detail)
    if status == 422:
        fields = error_fields(response)
        for name in fields:
            if name in REFERENCE_FIELDS:
                field = REFERENCE_FIELDS[name]
                return InvalidReference(f"Cliniko rejected {field}", field=field, emr_status=status, emr_message=detail)
        listed = ", ".join(fields) if fields else "unspecified fields"
        return Rejected(f"Cliniko rejected the request ({listed})", emr_status=status, emr_message=detail)
    if status == 429:
        return RateLimited(
            "Cliniko's rate limit (200 requests per minute per user) was reached",
            retry_after=retry_after_of(response, default=60),
            emr_status=status,
            emr_message=detail,
        )
    if status >= 500:
        return Unavailable(f"Cliniko answered {status}", emr_status=status, emr_message=detail)
    return Rejected(f"Cliniko refused the request ({status})", emr_status=status, emr_message=detail)


class ClinikoClient:
    """One per adapter instance; shares the gateway's httpx.AsyncClient (connection pool, timeouts)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: ClinikoSettings,
        credentials: ClinikoCredentials,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.http = http
        self.base_url = base_url_of(settings, credentials)
        self.retry = retry
        self._auth = httpx.BasicAuth(credentials.api_key, "")
        self._headers = {
            "User-Agent": f"{settings.app_name} ({credentials.user_agent_email})",
            "Accept": "application/json",
        }
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # ------------------------------------------------------------------------------------------------ reads

    async def _get_response(self, url: str, params: Params | None) -> httpx.Response:
        async def send() -> httpx.Response:
            # No `params` at all when following a link: httpx would replace the link's own query string.
            return await self.http.get(
                url, params=list(params) if params else None, headers=self._headers, auth=self._auth
            )

        try:
            return await send_read(send, self.retry)
        except httpx.TransportError as exc:
            raise map_transport_error(exc, EMR) from None

    async def get(self, path: str, type: type[T], params: Params | None = None) -> T:
        """GET one JSON document (retried on transport failures and 502/503/504)."""
        response = await self._get_response(self.url(path), params)
        return self._decode(response, type)

    async def list(self, path: str, page_type: type[P], items: Callable[[P], list[T]], params: Params = ()) -> list[T]:
        """Every item of a list endpoint, following `links.next` (per_page=100) rather than building page URLs."""
        collected: list[T] = []
        url: str | None = self.url(path)
        query: Params | None = [*params, ("per_page", PER_PAGE)]
        for _ in range(MAX_PAGES):
            if url is None:
                return collected
            response = await self._get_response(url, query)
            page = self._decode(response, page_type)
            collected.extend(items(page))
            links: Links = page.links  # type: ignore[attr-defined]
            url = self._same_origin(links.next) if links.next else None
            query = None  # the next link carries the query
        raise Unavailable("Cliniko kept returning more pages than any real list has")

    def _same_origin(self, url: str) -> str:
        """Only follow links back to the host we authenticate against (the key must not travel elsewhere)."""
        parts = urlsplit(url)
        if not parts.scheme:
            return self.url(url)
        if (parts.scheme, parts.netloc) != self._origin:
            raise Unavailable("Cliniko returned a pagination link to another host")
        return url

    def _decode(self, response: httpx.Response, type: type[T]) -> T:
        if not response.is_success:
            raise error_for(response)
        if not is_json(response):
            raise Unavailable(
                f"Cliniko answered {response.status_code} without JSON where JSON was expected",
                emr_status=response.status_code,
                emr_message=safe_message(response),
            )
        return decode(response.content, type, emr="Cliniko", status=response.status_code)

    # ------------------------------------------------------------------------------------------------ writes

    async def _write(self, method: str, path: str, body: msgspec.Struct | None) -> httpx.Response:
        """Send a write once. Unsent -> Unavailable; sent but unanswered -> AmbiguousWrite; non-2xx -> mapped error."""
        headers = self._headers if body is None else {**self._headers, "Content-Type": "application/json"}
        try:
            response = await self.http.request(
                method,
                self.url(path),
                content=b"" if body is None else msgspec.json.encode(body),
                headers=headers,
                auth=self._auth,
            )
        except httpx.TransportError as exc:
            if is_unsent(exc):
                raise Unavailable(f"Cliniko could not be reached ({type(exc).__name__}); nothing was sent") from None
            raise AmbiguousWrite(type(exc).__name__) from None
        if not response.is_success:
            raise error_for(response)
        return response

    async def create(self, path: str, body: msgspec.Struct, type: type[T]) -> T:
        response = await self._write("POST", path, body)
        return self._decode_written(response, type)

    async def patch(self, path: str, body: msgspec.Struct, type: type[T]) -> T:
        response = await self._write("PATCH", path, body)
        return self._decode_written(response, type)

    async def patch_no_content(self, path: str, body: msgspec.Struct) -> None:
        await self._write("PATCH", path, body)

    async def post_no_content(self, path: str) -> None:
        """A POST without a body (`…/archive`)."""
        await self._write("POST", path, None)

    def _decode_written(self, response: httpx.Response, type: type[T]) -> T:
        """A 2xx whose body we cannot read still means the write happened: the adapter reconciles."""
        try:
            return self._decode(response, type)
        except Unavailable:
            raise AmbiguousWrite("unreadable answer to a write", emr_status=response.status_code) from None

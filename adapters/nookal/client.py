"""Nookal v2 through httpx: `api_key` as a parameter, the status/data.results/settings envelope, `settings.nextPage`
pagination, and failure envelopes detected whatever the HTTP status.

Reads go out as GET with a query string (as production integrations do) and are retried; writes go out once as a
form POST (as Nookal's own SDK sends them). A write whose outcome is unclear raises `AmbiguousWrite` so the adapter
can look before it tries again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import httpx
import msgspec

from adapters.errors import AdapterError, AuthFailed, RateLimited, Rejected, Unavailable
from adapters.http import DEFAULT_RETRY, RetryPolicy, is_json, is_unsent, retry_after_of, scrub, send_read
from adapters.http import transport_error as map_transport_error
from adapters.nookal import wire
from adapters.nookal.settings import NookalCredentials, NookalSettings, base_url_of
from adapters.reconcile import AmbiguousWrite

T = TypeVar("T", bound=msgspec.Struct)
I = TypeVar("I")  # noqa: E741

EMR = "Nookal"
PAGE_LENGTH = "200"  # production code pages by 200 (N-CEO); the default page length is UNCONFIRMED
MAX_PAGES = 1000
AUTH_CODES = frozenset({"L003", "L004"})  # invalid / dead key (N-CEO)
MISSING_VARIABLE = "L000_1"

Params = Sequence[tuple[str, str]]


class NookalFailure(Rejected):
    """A failure envelope the client could not classify further; the adapter reads `code` in context."""

    def __init__(self, message: str, *, code: str | None, alerts: list[str], **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.code = code
        self.alerts = alerts


def _alerts(failure: wire.Failure) -> list[str]:
    raw = failure.alerts
    items = [raw] if isinstance(raw, str) else list(raw or [])
    return [scrub(a) for a in items if a]


def failure_error(failure: wire.Failure, http_status: int) -> AdapterError:
    """The adapter error for a failure envelope; alerts name parameters, values are scrubbed anyway."""
    code = None if failure.errorCode is None else str(failure.errorCode)
    alerts = _alerts(failure)
    said = scrub(failure.errorMessage or "") or None
    detail = "; ".join(p for p in (f"code {code}" if code else None, said, *alerts) if p)
    if code in AUTH_CODES:
        return AuthFailed(
            "Nookal refused the API key (invalid or disabled): check the location's api_key",
            emr_status=http_status,
            emr_message=detail,
        )
    if code == MISSING_VARIABLE:
        return NookalFailure(
            f"Nookal says a required parameter is missing ({', '.join(alerts) or 'unnamed'})",
            code=code,
            alerts=alerts,
            emr_status=http_status,
            emr_message=detail,
        )
    return NookalFailure(
        f"Nookal refused the request ({detail or 'no reason given'})",
        code=code,
        alerts=alerts,
        emr_status=http_status,
        emr_message=detail,
    )


def error_for_status(response: httpx.Response) -> AdapterError | None:
    """HTTP-level failures that come before (or without) an envelope."""
    status = response.status_code
    if status == 429:
        return RateLimited(
            "Nookal asked us to slow down (429)", retry_after=retry_after_of(response, default=60), emr_status=status
        )
    if status >= 500:
        return Unavailable(f"Nookal answered {status}", emr_status=status)
    if status in (401, 403) and not is_json(response):
        return AuthFailed("Nookal refused the request as unauthorised", emr_status=status)
    return None


def decode_envelope(response: httpx.Response) -> wire.Envelope:
    """The envelope of a 2xx/4xx answer, or the mapped error. Failures may come with any HTTP status."""
    early = error_for_status(response)
    if early is not None:
        raise early
    try:
        envelope = msgspec.json.decode(response.content, type=wire.Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise Unavailable(
            f"Nookal answered {response.status_code} without its JSON envelope", emr_status=response.status_code
        ) from None
    if envelope.status != "success":
        failure = wire.Failure()
        if len(envelope.details):
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                failure = msgspec.json.decode(envelope.details, type=wire.Failure)
        raise failure_error(failure, response.status_code)
    if not response.is_success:
        raise Unavailable(f"Nookal answered {response.status_code} with a success envelope")
    return envelope


def results_of(envelope: wire.Envelope, type_: type[T]) -> T:
    """`data.results` as `type_`; PHP sends an empty result as `[]`, `{}` or null, read as the empty value."""
    raw = b"null"
    if len(envelope.data) and bytes(envelope.data).strip() not in (b"null", b"[]"):
        try:
            data = msgspec.json.decode(envelope.data, type=wire.Data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise Unavailable("Nookal answered with an unreadable `data`") from None
        raw = bytes(data.results)
    if raw.strip() in (b"null", b"[]", b"{}", b""):
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # msgspec names the path of the bad field, not its value.
        raise Unavailable(f"Nookal answered with an unexpected shape: {exc}") from None


def next_page_of(envelope: wire.Envelope) -> int | None:
    page = envelope.settings.nextPage if envelope.settings is not None else None
    if page is None or str(page).strip() in ("", "0", "null"):
        return None
    try:
        return int(str(page))
    except ValueError:
        return None


class NookalClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: NookalSettings,
        credentials: NookalCredentials,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.http = http
        self.base_url = base_url_of(settings)
        self.retry = retry
        self._key = credentials.api_key

    def url(self, method: str) -> str:
        return f"{self.base_url}/{method}"

    async def _get(self, method: str, params: Params) -> wire.Envelope:
        query = httpx.QueryParams([*params, ("api_key", self._key)])

        async def send() -> httpx.Response:
            return await self.http.get(self.url(method), params=query, headers={"Accept": "application/json"})

        try:
            response = await send_read(send, self.retry)
        except httpx.TransportError as exc:
            raise map_transport_error(exc, EMR) from None
        return decode_envelope(response)

    async def read(self, method: str, type_: type[T], params: Params = ()) -> T:
        return results_of(await self._get(method, params), type_)

    async def read_all(
        self, method: str, type_: type[T], items: Callable[[T], list[I]], params: Params = ()
    ) -> list[I]:
        """Every page, following `settings.nextPage`; a page shorter than asked also ends the list."""
        collected: list[I] = []
        page = 1
        for _ in range(MAX_PAGES):
            envelope = await self._get(method, [*params, ("page", str(page)), ("page_length", PAGE_LENGTH)])
            chunk = items(results_of(envelope, type_))
            collected.extend(chunk)
            following = next_page_of(envelope)
            if following is None or following <= page or not chunk:
                return collected
            page = following
        raise Unavailable("Nookal kept returning more pages than any real list has")

    async def write(self, method: str, type_: type[T], params: Params) -> T:
        """Send a write once as a form POST. Unsent -> Unavailable; sent but unanswered -> AmbiguousWrite."""
        form = [*params, ("api_key", self._key)]
        try:
            response = await self.http.post(
                self.url(method),
                data=dict(form),
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            if is_unsent(exc):
                raise Unavailable(f"Nookal could not be reached ({type(exc).__name__}); nothing was sent") from None
            raise AmbiguousWrite(type(exc).__name__) from None
        try:
            envelope = decode_envelope(response)
        except Unavailable as exc:
            if response.is_success:
                raise AmbiguousWrite("unreadable answer to a write", emr_status=response.status_code) from None
            raise exc from None
        try:
            return results_of(envelope, type_)
        except Unavailable:
            raise AmbiguousWrite("unreadable answer to a write", emr_status=response.status_code) from None

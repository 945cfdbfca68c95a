"""Nookal v2 through httpx: `api_key` as a parameter, the status/data.results/settings envelope, `settings.nextPage`
pagination, and failure envelopes detected whatever the HTTP status.

Reads go out as GET with a query string (as production integrations do) and are retried; writes go out once as a
form POST (as Nookal's own SDK sends them, and as a live account was driven on 2026-08-03: evidence-2026-11 §2.1). A
write whose outcome is unclear (no answer, a 500/502/504 from a proxy, a success it cannot read) raises
`AmbiguousWrite` or `Unavailable` with the status, so the adapter watches for it (adapters/reconcile.py) and never
sends a create again.

A failure envelope becomes an error carrying its `errorCode` and the parameter names its alerts blame, nothing else:
`errorMessage` and other alert text are prose that can quote a patient (issue 15), so they never reach a message,
`emr_message` or a log.

A method name Nookal does not know is answered with its themed HTML 404 page, not a JSON failure (live, 2026-08-03:
evidence-2026-11 §2.2): that is `MethodUnavailable`, so a caller can fall back to other methods. An answer that no
longer decodes into the wire Structs is `ContractChanged` naming the field (`$.data.results.…`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

import httpx
import msgspec

from adapters.errors import AdapterError, AuthFailed, ContractChanged, RateLimited, Rejected, Unavailable
from adapters.http import (
    DEFAULT_RETRY,
    RetryPolicy,
    code_of,
    decode,
    is_json,
    is_unsent,
    retry_after_of,
    send_read,
)
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
# Seen on Nookal's themed 404 page for unknown method names (live, 2026-08-03: evidence-2026-11 §2.2).
NOT_FOUND_MARKERS = (b"404 page not found", b"page that doesn't exist", b"hold it right there")

Params = Sequence[tuple[str, str]]


class NookalFailure(Rejected):
    """A failure envelope the client could not classify further; the adapter reads it in context. `code` is the
    machine code, `fields` the parameter names the alerts blame: never Nookal's prose."""

    def __init__(self, message: str, *, code: str | None, fields: list[str], **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.code = code
        self.fields = fields


class MethodUnavailable(ContractChanged):
    """Nookal does not know the method (its HTML 404 page): not offered to this account, renamed, or a wrong
    `base_url`. Nothing was done, so a caller may fall back to other methods."""

    def __init__(self, method: str, *, emr_status: int) -> None:
        super().__init__(
            f"Nookal does not know the API method {method} (it answered its HTML 404 page): the account does not "
            "offer it, or the location's base_url is wrong",
            path=method,
            problem="unknown API method (HTML 404 page)",
            emr_status=emr_status,
        )
        self.method = method


def _json_body(response: httpx.Response) -> bool:
    """By the body, not the header: PHP often labels JSON `text/html`."""
    return response.content.lstrip()[:1] in (b"{", b"[")


def is_unknown_method_page(response: httpx.Response) -> bool:
    """Nookal's answer to a method name it does not know: a 404 HTML page, not a JSON envelope."""
    if response.status_code != 404 or _json_body(response):
        return False
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = response.content.lower()
    return content_type == "text/html" or body.lstrip()[:1] == b"<" or any(m in body for m in NOT_FOUND_MARKERS)


# An alert naming a parameter ("Missing variable: api_key"), the only part of one that is kept: Nookal's parameters
# are lower-case snake_case; anything else in an alert or in `errorMessage` is prose that can quote a patient.
_ALERT_FIELD = re.compile(
    r"^\s*(?i:missing|invalid|required|unknown)\s+(?i:variable|parameter|field)s?\s*:\s*([a-z][a-z0-9_]{0,63})\s*$"
)


def fields_of(failure: wire.Failure) -> list[str]:
    """The parameter names a failure's alerts blame, and nothing else from them."""
    raw = failure.alerts
    items = [raw] if isinstance(raw, str) else list(raw or [])
    found = [m.group(1) for m in (_ALERT_FIELD.match(a) for a in items if isinstance(a, str)) if m]
    return list(dict.fromkeys(found))


def code_in(failure: wire.Failure) -> str | None:
    """`errorCode` when it is a machine code (`L000_1`, `L003`, or a number); never `errorMessage`, which is prose."""
    value = failure.errorCode
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return code_of(value)


def failure_error(failure: wire.Failure, http_status: int) -> AdapterError:
    """The adapter error for a failure envelope: its code and the parameter names its alerts blame. `errorMessage`
    and the rest of the alerts are dropped unread: Nookal's prose can quote a patient's name, e-mail or phone."""
    code = code_in(failure)
    fields = fields_of(failure)
    detail = "; ".join(
        p for p in (f"code {code}" if code else None, f"fields: {', '.join(fields)}" if fields else None) if p
    )
    if code in AUTH_CODES:
        return AuthFailed(
            "Nookal refused the API key (invalid or disabled): check the location's api_key",
            emr_status=http_status,
            emr_message=detail or None,
        )
    if code == MISSING_VARIABLE:
        return NookalFailure(
            f"Nookal says a required parameter is missing ({', '.join(fields) or 'unnamed'})",
            code=code,
            fields=fields,
            emr_status=http_status,
            emr_message=detail or None,
        )
    return NookalFailure(
        f"Nookal refused the request ({detail or 'no code given'})",
        code=code,
        fields=fields,
        emr_status=http_status,
        emr_message=detail or None,
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


def decode_envelope(response: httpx.Response, method: str) -> wire.Envelope:
    """The envelope of a 2xx/4xx answer, or the mapped error. Failures may come with any HTTP status."""
    early = error_for_status(response)
    if early is not None:
        raise early
    if is_unknown_method_page(response):
        raise MethodUnavailable(method, emr_status=response.status_code)
    if not response.is_success and not _json_body(response):
        raise Unavailable(
            f"Nookal answered {response.status_code} without its JSON envelope", emr_status=response.status_code
        )
    envelope = decode(response.content, wire.Envelope, emr=EMR, status=response.status_code)
    if envelope.status != "success":
        failure = wire.Failure()
        if len(envelope.details):
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                failure = msgspec.json.decode(envelope.details, type=wire.Failure)
        raise failure_error(failure, response.status_code)
    if not response.is_success:
        raise Unavailable(f"Nookal answered {response.status_code} with a success envelope")
    return envelope


def _under(prefix: str, exc: ContractChanged) -> ContractChanged:
    """The same error with its path given from the envelope's root (`$.practitioners[0].ID` under `data.results`)."""
    path = prefix + exc.path[1:] if exc.path.startswith("$") else f"{prefix}.{exc.path}"
    return ContractChanged(
        f"{EMR} answered with a shape this adapter does not know: {exc.problem} at {path}",
        path=path,
        problem=exc.problem,
        emr_status=exc.emr_status,
    )


def results_of(envelope: wire.Envelope, type_: type[T]) -> T:
    """`data.results` as `type_`; PHP sends an empty result as `[]`, `{}` or null, read as the empty value."""
    raw = b"null"
    if len(envelope.data) and bytes(envelope.data).strip() not in (b"null", b"[]"):
        try:
            data = decode(envelope.data, wire.Data, emr=EMR)
        except ContractChanged as exc:
            raise _under("$.data", exc) from None
        raw = bytes(data.results)
    if raw.strip() in (b"null", b"[]", b"{}", b""):
        raw = b"{}"
    try:
        return decode(raw, type_, emr=EMR)
    except ContractChanged as exc:
        raise _under("$.data.results", exc) from None


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
        return decode_envelope(response, method)

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
            envelope = decode_envelope(response, method)
        except MethodUnavailable:
            raise  # nothing was done
        except (Unavailable, ContractChanged) as exc:
            if response.is_success:  # it may have been applied: the adapter looks before anything else
                raise AmbiguousWrite("unreadable answer to a write", emr_status=response.status_code) from None
            raise exc from None
        try:
            return results_of(envelope, type_)
        except ContractChanged:
            raise AmbiguousWrite("unreadable answer to a write", emr_status=response.status_code) from None

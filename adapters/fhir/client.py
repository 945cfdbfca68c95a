"""A FHIR R4 REST client through httpx, shared by the `fhir` and `halaxy` adapters.

Auth is OAuth2 client credentials (form body per RFC 6749, or the JSON body Halaxy documents) or a static bearer
token; tokens are shared per credentials (`adapters.tokens`) and re-minted before the shorter of the lifetime the
server states and `lifetime_cap` (Halaxy answers `expires_in: 3600` but documents 15 minutes). Searches follow
`Bundle.link[next]` only while it stays on the base URL's origin: the bearer token is never sent to another host.

Reads are retried (adapters.http); writes go out once, except after a 401 (nothing was applied: the token is
re-minted once and the request sent again). A write whose outcome is unclear raises `AmbiguousWrite` so the adapter
can reconcile. Errors carry the status and the OperationOutcome's issue codes, never its `diagnostics` (prose that
can quote a patient's name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec

from adapters.errors import AdapterError, AuthFailed, ContractChanged, NotFound, RateLimited, Rejected, Unavailable
from adapters.fhir import wire
from adapters.http import (
    DEFAULT_RETRY,
    RetryPolicy,
    decode,
    is_json,
    is_unsent,
    retry_after_of,
    safe_message,
    send_read,
)
from adapters.http import transport_error as map_transport_error
from adapters.reconcile import AmbiguousWrite
from adapters.tokens import TOKENS, TokenCache

T = TypeVar("T", bound=wire.Resource)
Params = Sequence[tuple[str, str]]

FHIR_JSON = "application/fhir+json"
MERGE_PATCH = "application/merge-patch+json"
MAX_PAGES = 1000


class ClientCredentials(msgspec.Struct, frozen=True, kw_only=True):
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    body: Literal["form", "json"] = "form"
    lifetime_cap: int | None = None  # seconds; the token is re-minted before min(expires_in, cap)

    def __repr__(self) -> str:
        return "ClientCredentials(<redacted>)"


class StaticBearer(msgspec.Struct, frozen=True, kw_only=True):
    token: str

    def __repr__(self) -> str:
        return "StaticBearer(<redacted>)"


Auth = ClientCredentials | StaticBearer


class TokenAnswer(msgspec.Struct, kw_only=True):
    access_token: str
    expires_in: int | None = None
    token_type: str | None = None


CONFLICT_CODES = frozenset({"conflict", "duplicate"})


class Conflict(Rejected):
    """409/412: the server refused a write because of what it holds (a taken slot, a changed version)."""


def issue_codes(response: httpx.Response) -> list[str]:
    """The IssueType codes of an OperationOutcome answer (`conflict`, `invalid`, `business-rule`), in order."""
    if not is_json(response):
        return []
    try:
        outcome = msgspec.json.decode(response.content, type=wire.OperationOutcome | wire.Bundle)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    if isinstance(outcome, wire.Bundle):  # IHE ITI-116/117: a failed $hold/$book is a Bundle holding the outcome
        return bundle_issue_codes(outcome)
    return [issue.code for issue in outcome.issue]


def bundle_issue_codes(bundle: wire.Bundle) -> list[str]:
    """The issue codes of the OperationOutcomes a Bundle holds (unreadable entries are skipped)."""
    codes: list[str] = []
    for entry in bundle.entry:
        try:
            if entry.resource and wire.resource_type_of(entry.resource) == "OperationOutcome":
                codes += [i.code for i in msgspec.json.decode(entry.resource, type=wire.OperationOutcome).issue]
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return codes


def safe_detail(response: httpx.Response) -> str:
    detail = safe_message(response)
    codes = issue_codes(response)
    return f"{detail}; issues: {', '.join(codes)}" if codes else detail


def error_for(response: httpx.Response, emr: str) -> AdapterError:
    """The adapter error for a non-2xx answer; messages carry the status and issue codes, never values."""
    status = response.status_code
    detail = safe_detail(response)
    if status == 401:
        return AuthFailed(f"{emr} refused the credentials", emr_status=status, emr_message=detail)
    if status == 403:
        return AuthFailed(
            f"{emr} refused the operation for these credentials (check the client's scopes)",
            emr_status=status,
            emr_message=detail,
        )
    if status in (404, 410):
        return NotFound(f"{emr} has no such record", emr_status=status, emr_message=detail)
    if status in (409, 412) or (400 <= status < 500 and CONFLICT_CODES & set(issue_codes(response))):
        # A 409, or any 4xx whose OperationOutcome says `conflict`/`duplicate` (Halaxy's 422 for a taken time).
        return Conflict(f"{emr} reported a conflict", emr_status=status, emr_message=detail)
    if status == 429:
        return RateLimited(
            f"{emr}'s rate limit was reached",
            retry_after=retry_after_of(response, default=1),
            emr_status=status,
            emr_message=detail,
        )
    if status >= 500:
        return Unavailable(f"{emr} answered {status}", emr_status=status, emr_message=detail)
    return Rejected(f"{emr} refused the request ({status})", emr_status=status, emr_message=detail)


def resource_type(type_: type[wire.Resource]) -> str:
    tag = type_.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def resources_of(bundle: wire.Bundle, type_: type[T], *, emr: str) -> list[T]:
    """The entries of `bundle` that are `type_` (matches and includes alike), decoded; others are skipped."""
    wanted = resource_type(type_)
    found: list[T] = []
    for entry in bundle.entry:
        if not entry.resource:
            continue
        try:
            kind = wire.resource_type_of(entry.resource)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ContractChanged(
                f"{emr} answered a Bundle entry that is not a resource",
                path="$.entry[].resource",
                problem=str(type(exc).__name__),
            ) from None
        if kind == wanted:
            found.append(decode(entry.resource, type_, emr=emr))
    return found


class FhirClient:
    """One per adapter instance; the token is shared per credentials."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        emr: str,
        base_url: str,
        auth: Auth,
        user_agent: str | None = None,
        post_content_type: str = FHIR_JSON,
        retry: RetryPolicy = DEFAULT_RETRY,
        tokens: TokenCache = TOKENS,
    ) -> None:
        self.http = http
        self.emr = emr
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.user_agent = user_agent
        self.post_content_type = post_content_type
        self.retry = retry
        self.tokens = tokens
        if isinstance(auth, ClientCredentials):
            secret = hashlib.sha256(auth.client_secret.encode()).hexdigest()[:16]
            # The scope is part of the key: a token minted for one scope is not another scope's token.
            self.key = f"{auth.token_url}|{auth.client_id}|{secret}|{auth.scope or ''}"
        else:
            self.key = ""
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # ------------------------------------------------------------------------------------------------ auth

    async def _mint(self) -> tuple[str, int | None]:
        auth = self.auth
        assert isinstance(auth, ClientCredentials)
        fields = {"grant_type": "client_credentials", "client_id": auth.client_id, "client_secret": auth.client_secret}
        if auth.scope:
            fields["scope"] = auth.scope
        headers = {"Accept": "application/json", **self._agent()}

        async def send() -> httpx.Response:
            if auth.body == "json":
                return await self.http.post(auth.token_url, json=fields, headers=headers)
            return await self.http.post(auth.token_url, data=fields, headers=headers)

        try:
            # Minting is safe to repeat: a lost answer only leaves an unused token behind.
            response = await send_read(send, self.retry)
        except httpx.TransportError as exc:
            raise map_transport_error(exc, self.emr) from None
        if response.status_code in (400, 401, 403):
            raise AuthFailed(
                f"{self.emr} refused the client id/secret",
                emr_status=response.status_code,
                emr_message=safe_message(response),
            )
        if not response.is_success:
            raise error_for(response, self.emr)
        answer = decode(response.content, TokenAnswer, emr=self.emr, status=response.status_code)
        lifetime = answer.expires_in
        if auth.lifetime_cap is not None:
            lifetime = min(lifetime, auth.lifetime_cap) if lifetime is not None else auth.lifetime_cap
        return answer.access_token, lifetime

    async def token(self) -> str:
        if isinstance(self.auth, StaticBearer):
            return self.auth.token
        return await self.tokens.get(self.key, self._mint)

    def _forget(self, token: str) -> bool:
        """After a 401: whether a fresh token could help (a static one cannot)."""
        if isinstance(self.auth, StaticBearer):
            return False
        self.tokens.invalidate(self.key, token)
        return True

    def _agent(self) -> dict[str, str]:
        return {"User-Agent": self.user_agent} if self.user_agent else {}

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON, **self._agent()}

    # ------------------------------------------------------------------------------------------------ reads

    async def _get(self, url: str, params: Params | None) -> httpx.Response:
        for attempt in range(2):
            token = await self.token()
            headers = self._headers(token)

            async def send() -> httpx.Response:
                return await self.http.get(url, params=list(params) if params else None, headers=headers)  # noqa: B023

            try:
                response = await send_read(send, self.retry)
            except httpx.TransportError as exc:
                raise map_transport_error(exc, self.emr) from None
            if response.status_code == 401 and attempt == 0 and self._forget(token):
                continue
            return response
        raise AssertionError("unreachable")

    def _decode(self, response: httpx.Response, type_: type[msgspec.Struct] | type[T]) -> T:
        if not response.is_success:
            raise error_for(response, self.emr)
        if not is_json(response):
            raise Unavailable(
                f"{self.emr} answered {response.status_code} without JSON where JSON was expected",
                emr_status=response.status_code,
                emr_message=safe_message(response),
            )
        return decode(response.content, type_, emr=self.emr, status=response.status_code)  # type: ignore[return-value]

    async def get(self, path: str, type_: type[T], params: Params | None = None) -> T:
        """GET `[base]/path` (a read, `metadata`, or a GET operation such as `Appointment/$find`)."""
        return self._decode(await self._get(self.url(path), params), type_)

    async def read(self, type_: type[T], resource_id: str) -> T:
        return await self.get(f"{resource_type(type_)}/{resource_id}", type_)

    async def read_json(self, type_: type[T], resource_id: str) -> tuple[T, dict[str, object]]:
        """A read, decoded and as sent: a full-replace write (`PUT`, IHE `$book` changes) must send back every
        element the server holds, not only the ones the wire Structs model."""
        response = await self._get(self.url(f"{resource_type(type_)}/{resource_id}"), None)
        resource: T = self._decode(response, type_)
        raw = msgspec.json.decode(response.content)
        if not isinstance(raw, dict):
            raise ContractChanged(f"{self.emr} answered a read with a non-object", path="$", problem="not an object")
        return resource, raw

    async def capabilities(self) -> wire.CapabilityStatement:
        return await self.get("metadata", wire.CapabilityStatement)

    async def bundle(self, path: str, params: Params | None = None) -> wire.Bundle:
        return await self.get(path, wire.Bundle, params)

    def _same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) == self._origin

    async def next_page(self, bundle: wire.Bundle) -> wire.Bundle | None:
        """The page `Bundle.link[next]` names, or None at the end."""
        url = bundle.next_url()
        if url is None:
            return None
        if not self._same_origin(url):
            raise Unavailable(f"{self.emr} named a next page on another host; it was not followed")
        return self._decode(await self._get(url, None), wire.Bundle)

    async def search_page(self, type_: type[T], params: Params = ()) -> tuple[list[T], wire.Bundle]:
        page = await self.bundle(resource_type(type_), params)
        return resources_of(page, type_, emr=self.emr), page

    async def search(self, type_: type[T], params: Params = (), *, max_pages: int = MAX_PAGES) -> list[T]:
        """Every match of a search, following `next` links."""
        page: wire.Bundle | None = await self.bundle(resource_type(type_), params)
        found: list[T] = []
        for _ in range(max_pages):
            if page is None:
                return found
            found.extend(resources_of(page, type_, emr=self.emr))
            page = await self.next_page(page)
        if page is None:
            return found
        raise Unavailable(f"{self.emr} kept returning more pages than any real search has")

    # ------------------------------------------------------------------------------------------------ writes

    async def write(
        self,
        method: str,
        path: str,
        body: wire.Resource | bytes | None,
        *,
        content_type: str | None = None,
        if_match: str | None = None,
    ) -> httpx.Response:
        """Send a write once (twice only after a 401, which applied nothing). Unsent -> Unavailable; sent but
        unanswered -> AmbiguousWrite; non-2xx -> the mapped error. `if_match` (an ETag, `W/"3"`) makes the server
        refuse with 412 (`Conflict`) if the resource has another version by now."""
        content = body if isinstance(body, bytes) or body is None else msgspec.json.encode(body)
        for attempt in range(2):
            token = await self.token()
            headers = {
                **self._headers(token),
                "Content-Type": content_type or self.post_content_type,
                "Prefer": "return=representation",
            }
            if if_match is not None:
                headers["If-Match"] = if_match
            try:
                response = await self.http.request(method, self.url(path), content=content, headers=headers)
            except httpx.TransportError as exc:
                if is_unsent(exc):
                    raise Unavailable(
                        f"{self.emr} could not be reached ({type(exc).__name__}); nothing was sent"
                    ) from None
                raise AmbiguousWrite(type(exc).__name__) from None
            if response.status_code == 401 and attempt == 0 and self._forget(token):
                continue
            if not response.is_success:
                raise error_for(response, self.emr)
            return response
        raise AssertionError("unreachable")

    async def written(self, response: httpx.Response, type_: type[T]) -> T:
        """The resource a write answered with. A body-less answer (`Prefer` ignored) is read from its `Location`;
        an unreadable one is reconciled, not reported as a failure that invites a resend: the write was applied."""
        if not response.content:
            location = response.headers.get("location") or response.headers.get("content-location")
            if not location:
                raise AmbiguousWrite("a write answered without a body or a Location", emr_status=response.status_code)
            resource_id = wire.Reference(reference=location).id
            if resource_id is None:
                raise AmbiguousWrite("a write answered with an unreadable Location", emr_status=response.status_code)
            return await self.read(type_, resource_id)
        try:
            return self._decode(response, type_)
        except ContractChanged as exc:
            raise AmbiguousWrite(
                f"unreadable answer to a write: {exc.problem} at {exc.path}", emr_status=response.status_code
            ) from None
        except Unavailable:
            raise AmbiguousWrite("unreadable answer to a write", emr_status=response.status_code) from None

    async def create(self, resource: T) -> T:
        response = await self.write("POST", resource_type(type(resource)), resource)
        return await self.written(response, type(resource))

    async def update(self, resource: T, *, if_match: str | None = None) -> T:
        """A full-replace `PUT [base]/Type/id` (with `If-Match` when given: see `write`)."""
        assert resource.id is not None
        response = await self.write(
            "PUT", f"{resource_type(type(resource))}/{resource.id}", resource, content_type=FHIR_JSON, if_match=if_match
        )
        return await self.written(response, type(resource))

    async def patch(self, type_: type[T], resource_id: str, changes: bytes) -> T:
        """A JSON merge patch (RFC 7386): only the members in `changes` change."""
        response = await self.write("PATCH", f"{resource_type(type_)}/{resource_id}", changes, content_type=MERGE_PATCH)
        return await self.written(response, type_)

    async def operation(self, path: str, parameters: wire.Parameters) -> httpx.Response:
        """POST an operation (`Appointment/$book`); the caller reads the answer (a Bundle, an Appointment, …)."""
        return await self.write("POST", path, parameters)

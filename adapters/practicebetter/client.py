"""Practice Better's HTTP API through httpx: OAuth2 client credentials, `{count, hasMore, items}` pagination, and
status -> adapter error mapping. The request budget is the gateway's (adapters.pacing), shared per credentials.

Reads are retried (adapters.http); writes are sent exactly once, except after a 401 (nothing was applied: the token
is re-minted once and the request sent again). When a write's outcome is unclear the client raises `AmbiguousWrite`
so the adapter can reconcile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

import httpx
import msgspec

from adapters.errors import AdapterError, AuthFailed, ContractChanged, NotFound, RateLimited, Rejected, Unavailable
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
from adapters.practicebetter import wire
from adapters.practicebetter.settings import PracticeBetterCredentials, PracticeBetterSettings, base_url_of
from adapters.reconcile import AmbiguousWrite
from adapters.tokens import TOKENS, TokenCache

T = TypeVar("T")

EMR = "Practice Better"
PAGE_LIMIT = "100"
MAX_PAGES = 1000
ACCESS_DENIED = 461  # Practice Better's non-standard "Resource Access Denied"

Params = Sequence[tuple[str, str]]


class Conflict(Rejected):
    """409: a scheduling conflict on a session write, a duplicate on a client record create (per the swagger; the
    production integrator also saw 400 and 500 for a duplicate e-mail)."""


def error_for(response: httpx.Response) -> AdapterError:
    """The adapter error for a non-2xx answer; messages carry field names, never values."""
    status = response.status_code
    detail = safe_message(response)
    if status == 401:
        return AuthFailed("Practice Better refused the client credentials", emr_status=status, emr_message=detail)
    if status == 403:
        return AuthFailed(
            "Practice Better refused the operation for this client id (check its scopes: read write)",
            emr_status=status,
            emr_message=detail,
        )
    if status == 404:
        return NotFound("Practice Better has no such record", emr_status=status, emr_message=detail)
    if status == ACCESS_DENIED:
        return NotFound("Practice Better denied access to that record", emr_status=status, emr_message=detail)
    if status == 409:
        return Conflict("Practice Better reported a conflict", emr_status=status, emr_message=detail)
    if status == 429:
        return RateLimited(
            "Practice Better's rate limit (5 requests/s, bursts of 20) was reached",
            retry_after=retry_after_of(response, default=1),
            emr_status=status,
            emr_message=detail,
        )
    if status >= 500:
        return Unavailable(f"Practice Better answered {status}", emr_status=status, emr_message=detail)
    return Rejected(f"Practice Better refused the request ({status})", emr_status=status, emr_message=detail)


class PracticeBetterClient:
    """One per adapter instance; the token is shared per credentials (`adapters.tokens`)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: PracticeBetterSettings,
        credentials: PracticeBetterCredentials,
        retry: RetryPolicy = DEFAULT_RETRY,
        tokens: TokenCache = TOKENS,
    ) -> None:
        self.http = http
        self.settings = settings
        self.credentials = credentials
        self.base_url = base_url_of(settings)
        self.retry = retry
        self.tokens = tokens
        secret = hashlib.sha256(credentials.client_secret.encode()).hexdigest()[:16]
        self.key = f"{self.base_url}|{credentials.client_id}|{secret}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # ------------------------------------------------------------------------------------------------ auth

    async def _mint(self) -> tuple[str, int | None]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
        }
        if self.settings.scope:
            form["scope"] = self.settings.scope

        async def send() -> httpx.Response:
            return await self.http.post(self.url("oauth2/token"), data=form, headers={"Accept": "application/json"})

        try:
            # Minting is safe to repeat: a lost answer only leaves an unused token behind.
            response = await send_read(send, self.retry)
        except httpx.TransportError as exc:
            raise map_transport_error(exc, EMR) from None
        if response.status_code in (400, 401):
            raise AuthFailed(
                "Practice Better refused the client id/secret",
                emr_status=response.status_code,
                emr_message=safe_message(response),
            )
        token = self._decode(response, wire.TokenResponse)
        return token.access_token, token.expires_in

    async def token(self) -> str:
        return await self.tokens.get(self.key, self._mint)

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    # ------------------------------------------------------------------------------------------------ reads

    async def _get_response(self, path: str, params: Params | None) -> httpx.Response:
        for attempt in range(2):
            token = await self.token()
            headers = self._headers(token)

            async def send() -> httpx.Response:
                return await self.http.get(
                    self.url(path),
                    params=list(params) if params else None,
                    headers=headers,  # noqa: B023 - awaited within this iteration
                )

            try:
                response = await send_read(send, self.retry)
            except httpx.TransportError as exc:
                raise map_transport_error(exc, EMR) from None
            if response.status_code == 401 and attempt == 0:
                self.tokens.invalidate(self.key, token)  # expired or revoked early: mint once more
                continue
            return response
        raise AssertionError("unreachable")

    async def get(self, path: str, type: type[T], params: Params | None = None) -> T:
        return self._decode(await self._get_response(path, params), type)

    async def get_optional(self, path: str, type: type[T], params: Params | None = None) -> T | None:
        """A read where `204 No Content` means "nothing" (availability slots)."""
        response = await self._get_response(path, params)
        if response.status_code == 204 or (response.is_success and not response.content):
            return None
        return self._decode(response, type)

    async def page(self, path: str, item: type[T], params: Params = (), limit: int = 100) -> list[T]:
        """The first (newest) page of a list endpoint only."""
        answer = await self.get(path, wire.Page[item], [*params, ("limit", str(limit))])  # type: ignore[valid-type]
        return list(answer.items)

    async def one_page(
        self, path: str, item: type[T], params: Params = (), before_id: str | None = None
    ) -> wire.Page[T]:
        """One page of 100 (newest first), older than `before_id` when given: a walk that resumes at a later call."""
        query = [*params, ("limit", PAGE_LIMIT)]
        if before_id is not None:
            query.append(("before_id", before_id))
        return await self.get(path, wire.Page[item], query)  # type: ignore[valid-type]

    async def list(self, path: str, item: type[T], params: Params = ()) -> list[T]:
        """Every item of a list endpoint: newest first, walking older pages with `before_id=<last id>`."""
        collected: list[T] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            query = [*params, ("limit", PAGE_LIMIT)]
            if cursor is not None:
                query.append(("before_id", cursor))
            page = await self.get(path, wire.Page[item], query)  # type: ignore[valid-type]
            collected.extend(page.items)
            if not page.hasMore or not page.items:
                return collected
            last = page.items[-1]
            cursor = str(getattr(last, "id"))  # noqa: B009 - every paged item has an id
        raise Unavailable("Practice Better kept returning more pages than any real list has")

    def _decode(self, response: httpx.Response, type: type[T]) -> T:
        if not response.is_success:
            raise error_for(response)
        if not is_json(response):
            raise Unavailable(
                f"Practice Better answered {response.status_code} without JSON where JSON was expected",
                emr_status=response.status_code,
                emr_message=safe_message(response),
            )
        return decode(response.content, type, emr=EMR, status=response.status_code)

    # ------------------------------------------------------------------------------------------------ writes

    async def write(self, method: str, path: str, body: msgspec.Struct | bytes | None) -> httpx.Response:
        """Send a write once (twice only after a 401, which applied nothing). Unsent -> Unavailable; sent but
        unanswered -> AmbiguousWrite; non-2xx -> mapped error."""
        content = body if isinstance(body, bytes) or body is None else msgspec.json.encode(body)
        for attempt in range(2):
            token = await self.token()
            try:
                response = await self.http.request(
                    method,
                    self.url(path),
                    content=content,
                    headers={**self._headers(token), "Content-Type": "application/json"},
                )
            except httpx.TransportError as exc:
                if is_unsent(exc):
                    raise Unavailable(
                        f"Practice Better could not be reached ({type(exc).__name__}); nothing was sent"
                    ) from None
                raise AmbiguousWrite(type(exc).__name__) from None
            if response.status_code == 401 and attempt == 0:
                self.tokens.invalidate(self.key, token)
                continue
            if not response.is_success:
                raise error_for(response)
            return response
        raise AssertionError("unreachable")

    async def write_decoded(self, method: str, path: str, body: msgspec.Struct | bytes | None, type: type[T]) -> T:
        """A write whose answer is the written record. The write was applied whatever its answer looks like, so an
        answer that cannot be read is reconciled (looked up), not reported as a failure that invites a retry."""
        response = await self.write(method, path, body)
        try:
            return self._decode(response, type)
        except ContractChanged as exc:
            raise AmbiguousWrite(
                f"unreadable answer to a write: {exc.problem} at {exc.path}", emr_status=response.status_code
            ) from None
        except Unavailable:
            raise AmbiguousWrite("unreadable answer to a write", emr_status=response.status_code) from None

    async def get_raw(self, path: str) -> dict[str, object]:
        """One record as sent, every field kept: the base of a full-replace `PUT`."""
        response = await self._get_response(path, None)
        raw = self._decode(response, dict[str, object])
        return raw

"""The EMR client's transport: httpx's API for the adapters, aiohttp's connection handling underneath.

Measured on this project's machine (bench/overhead and a loopback micro-benchmark): httpcore's connection pool was
the largest single cost of an EMR call through the gateway; `httpx-aiohttp`'s transport takes ~0.8 ms less per
call. Two things are adjusted here, because the gateway's safety depends on them:

- **What "nothing was sent" means.** A write that may have reached the EMR is reconciled, never resent; one that
  cannot have (`httpx.ConnectError`/`ConnectTimeout`) is reported as not written. The library maps every
  `aiohttp.ClientConnectionError` — a server that dropped the connection after reading the request included — to
  `ConnectTimeout`. Here only a failure to connect counts as unsent; a dropped connection, a reset, a payload error
  after sending are `RemoteProtocolError`/`ReadError` (the outcome is unknown), a socket read timeout `ReadTimeout`.
- **No shared cookies.** One aiohttp session serves every location: its cookie jar would carry one clinic's session
  cookies into another's requests. Adapters send their cookies explicitly; the session keeps none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def _remapped(exc: httpx.TransportError) -> httpx.TransportError:
    cause = exc.__cause__
    message = str(exc) or type(cause).__name__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)  # DNS, refused, unreachable: the request never left
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)  # no connection within the connect/pool timeout: never sent
    if isinstance(cause, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)  # sent, no answer in time: unknown outcome
    if isinstance(cause, aiohttp.ClientPayloadError):
        return httpx.ReadError(message)
    if isinstance(cause, aiohttp.ClientConnectionError):
        return httpx.RemoteProtocolError(message)  # the connection broke after the request was written
    return exc


class EMRTransport(AiohttpTransport):
    """`AiohttpTransport` with the gateway's mapping of failures and no cookie jar (see the module docstring)."""

    def __init__(self, limits: httpx.Limits | None = None) -> None:
        super().__init__(limits=limits or httpx.Limits(max_connections=200, max_keepalive_connections=50))
        self.client = self._session  # built on first use, inside the running event loop

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry or 5.0,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx.TransportError as exc:
            raise _remapped(exc) from exc.__cause__
        response.stream = _RemappedStream(response.stream)  # type: ignore[arg-type]
        return response


class _RemappedStream(httpx.AsyncByteStream):
    """The body's read errors, mapped the same way (a body cut short is an unknown outcome, never "unsent")."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except httpx.TransportError as exc:
            raise _remapped(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self.inner.aclose()

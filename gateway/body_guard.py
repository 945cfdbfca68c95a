"""Every request body is read whole, within a time limit and a size limit, and refused if its JSON nests too deep —
before routing's dependencies run, so an anonymous caller costs no authentication work, no decoder recursion and no
ERROR log line.

A lying `Content-Length` (a client that promises more than it sends) would otherwise hold a connection and a task
forever; a body of `[[[[…` 1,000 deep would reach the JSON decoder's recursion limit.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from schemas.problems import ErrorCode, Problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM_TYPE = "https://emr-gateway.dev/problems/"
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def too_deep(body: bytes, limit: int) -> bool:
    """True when JSON arrays/objects nest deeper than `limit` (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot be deeper than the number of openings: the common case costs two C-level scans
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub(b'""', body)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(0, depth - 1)
    return False


async def _problem(send: Send, scope: Scope, status: int, code: ErrorCode, title: str, detail: str) -> None:
    body = msgspec.json.encode(
        Problem(
            type=PROBLEM_TYPE + code.value,
            title=title,
            status=status,
            code=code,
            instance=str(scope.get("path", "")),
            detail=detail,
        )
    )
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    if status == 408:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def body_guard(max_bytes: int, max_depth: int, read_timeout: float) -> Callable[[ASGIApp], ASGIApp]:
    def middleware(app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []
            size = 0
            while True:
                try:
                    message = await asyncio.wait_for(receive(), timeout=read_timeout)
                except TimeoutError:
                    await _problem(
                        send, scope, 408, ErrorCode.BAD_REQUEST, "Request timeout",
                        f"the request body did not arrive within {read_timeout:g} s",
                    )  # fmt: skip
                    return
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    await _problem(
                        send, scope, 413, ErrorCode.PAYLOAD_TOO_LARGE, "Payload too large", "the body is too large"
                    )
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            if too_deep(body, max_depth):
                await _problem(
                    send, scope, 400, ErrorCode.BAD_REQUEST, "Bad request",
                    f"the JSON body nests deeper than {max_depth} levels",
                )  # fmt: skip
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()  # disconnect notifications from here on
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)

        return guarded

    return middleware

"""HTTP plumbing every adapter shares: retries for reads, transport-error mapping, safe EMR error messages.

Only idempotent reads are retried here. Writes go out once; what to do when a write's outcome is unclear is each
adapter's business (it must reconcile against the EMR before trying again).
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, runtime_checkable

import httpx
import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from adapters.errors import AdapterError, ContractChanged, Timeout, Unavailable

RETRY_STATUSES = frozenset({502, 503, 504})
T = TypeVar("T")


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a read is retried; tests shrink the delays to milliseconds."""

    attempts: int = 3
    initial_delay: float = 0.25
    max_delay: float = 2.0
    jitter: float = 0.25


DEFAULT_RETRY = RetryPolicy()


@runtime_checkable
class UsesRetryPolicy(Protocol):
    """An adapter whose read retries can be tuned per instance (the gateway and tests set `retry`)."""

    retry: RetryPolicy


def is_retryable_exception(exc: BaseException) -> bool:
    """Failures after which a read is safe and worth trying again."""
    return isinstance(
        exc,
        httpx.ConnectError | httpx.ConnectTimeout | httpx.ReadTimeout | httpx.ReadError | httpx.RemoteProtocolError,
    )


def _retryable_response(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def _last_outcome(state: RetryCallState) -> httpx.Response:
    """After the last attempt: hand back the final response, or raise the final transport error."""
    assert state.outcome is not None
    return state.outcome.result()  # type: ignore[no-any-return]


async def send_read(send: Callable[[], Awaitable[httpx.Response]], policy: RetryPolicy) -> httpx.Response:
    """Send an idempotent request, retrying transport failures and 502/503/504 with backoff and jitter.

    Returns the last response (which may still be a 5xx the caller maps) or raises the last transport error.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=wait_exponential(multiplier=policy.initial_delay, max=policy.max_delay) + wait_random(0, policy.jitter),
        retry=retry_if_exception(is_retryable_exception) | retry_if_result(_retryable_response),
        retry_error_callback=_last_outcome,
        reraise=True,
    )
    response: httpx.Response = await retrying(send)
    return response


MAX_PAUSE = 3600.0  # an EMR header asking for more (or for "inf") must not silence an account for good


def _seconds(value: str, now: float, *, epoch: bool) -> float | None:
    try:
        number = float(value)
    except ValueError:
        if epoch:
            return None
        try:
            number = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        epoch = True
    if not math.isfinite(number):
        return None
    return min(MAX_PAUSE, max(0.0, number - now if epoch else number))


def retry_after_seconds(response: httpx.Response, *, default: float = 1.0, now: float | None = None) -> float:
    """How long a 429 asks us to wait: `Retry-After` (seconds or an HTTP date) or `X-RateLimit-Reset` (a UNIX time,
    Cliniko), at most an hour; `default` when the EMR says nothing usable."""
    now = time.time() if now is None else now
    retry_after = response.headers.get("retry-after", "").strip()
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    for found in (
        _seconds(retry_after, now, epoch=False) if retry_after else None,
        _seconds(reset, now, epoch=True) if reset else None,
    ):
        if found is not None:
            return found
    return default


def retry_after_of(response: httpx.Response, *, default: int, now: float | None = None) -> int:
    """Whole seconds for `RateLimited.retry_after` (at least 1)."""
    return max(1, math.ceil(retry_after_seconds(response, default=default, now=now)))


def is_unsent(exc: httpx.TransportError) -> bool:
    """The request never reached the EMR, so a write did not happen."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def transport_error(exc: httpx.TransportError, emr: str) -> AdapterError:
    """Map an httpx transport failure on a read (or an unsent write) onto the adapter error hierarchy."""
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"{emr} did not answer in time ({type(exc).__name__})")
    return Unavailable(f"{emr} could not be reached ({type(exc).__name__})")


_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
_CODE_KEYS = ("code", "error_code", "errorCode", "error", "type", "status")


def code_of(value: object) -> str | None:
    """A machine code from an EMR's error body (`item_not_found`, `L001`), never prose: prose can name a patient."""
    if isinstance(value, str) and _TOKEN.match(value.strip()):
        return value.strip()
    return None


def scrub(text: str) -> str:
    """An EMR's free text reduced to what is safe to show: a single machine code, else nothing. Prose is dropped
    whole — a name needs no quotes, digits or @ to identify a patient ("Jane Citizen already has …")."""
    return code_of(text) or ""


def is_json(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return "json" in content_type.split(";", 1)[0].lower()


def error_fields(response: httpx.Response) -> list[str]:
    """Field names from an `{"errors": {field: message}}` body (names only: the messages may quote values)."""
    if not is_json(response):
        return []
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, dict):
        return sorted(str(key) for key in errors)
    return []


def safe_message(response: httpx.Response) -> str:
    """What an EMR's error says, safe for problem bodies and logs: the status, a machine code if the body has one,
    and the names of the fields it blames. Never the EMR's prose (it quotes values: names, e-mails, phones)."""
    status = response.status_code
    if not response.content:
        return f"HTTP {status}"
    if not is_json(response):
        content_type = response.headers.get("content-type", "unknown").split(";", 1)[0] or "unknown"
        return f"HTTP {status} with a non-JSON body ({content_type})"
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return f"HTTP {status} with an unreadable JSON body"
    parts = [f"HTTP {status}"]
    if isinstance(body, dict):
        code = next((c for key in _CODE_KEYS if (c := code_of(body.get(key))) is not None), None)
        if code is not None:
            parts.append(f"code {code}")
        fields = error_fields(response)
        if fields:
            parts.append("fields: " + ", ".join(fields))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- decoding

_AT = re.compile(r" - at `([^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `([^`]*)`$")
_TYPES = re.compile(r"^Expected `([a-z]+)`, got `([a-z]+)`$")
_EXPECTED = re.compile(r"^Expected `([a-z]+)`")


def describe_shape_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> tuple[str, str]:
    """(path, problem) from a msgspec error, keeping field names and JSON types and dropping anything that can quote
    a value (enum values, regexes, lengths), so the pair is safe for problem bodies, logs and `locations verify`."""
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return "$", "not valid JSON"
    text = str(exc)
    at = _AT.search(text)
    path = at.group(1) if at else "$"
    head = text[: at.start()] if at else text
    if missing := _MISSING.match(head):
        return f"{path}.{missing.group(1)}", "missing required field"
    if types := _TYPES.match(head):
        return path, f"expected {types.group(1)}, got {types.group(2)}"
    if head.startswith("Invalid enum value"):
        return path, "a value outside the known set"
    if expected := _EXPECTED.match(head):
        return path, f"a {expected.group(1)} outside the expected format"
    if head.startswith("Invalid") and "'" not in head and '"' not in head:
        return path, head[0].lower() + head[1:]
    return path, "an unreadable value"


def contract_changed(
    emr: str, exc: msgspec.ValidationError | msgspec.DecodeError, status: int | None
) -> ContractChanged:
    path, problem = describe_shape_error(exc)
    return ContractChanged(
        f"{emr} answered with a shape this adapter does not know: {problem} at {path}",
        path=path,
        problem=problem,
        emr_status=status,
    )


def decode(content: bytes, type: type[T], *, emr: str, status: int | None = None) -> T:
    """Decode an EMR's JSON into its wire Struct; a shape it no longer matches is `ContractChanged` naming the field.
    Unknown extra fields are ignored (wire Structs never forbid them)."""
    try:
        return msgspec.json.decode(content, type=type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise contract_changed(emr, exc, status) from None


def convert(value: object, type: type[T], *, emr: str, status: int | None = None) -> T:
    """`decode` for an already-parsed value (envelopes decoded in two steps)."""
    try:
        return msgspec.convert(value, type)
    except msgspec.ValidationError as exc:
        raise contract_changed(emr, exc, status) from None

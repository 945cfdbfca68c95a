"""The delivery worker's one step: claim due deliveries, send each signed, record the outcome and the next attempt."""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx

from gateway.config import GatewayConfig
from gateway.storage.outbox import decode_event
from gateway.storage.webhooks import RESPONSE_BODY_LIMIT, Claim, Outcome, WebhookStore
from gateway.webhooks.signing import webhook_headers
from gateway.webhooks.ssrf import IPNetwork, TargetRefused, check_target, parse_networks
from schemas.webhooks import PayloadFormat

log = logging.getLogger("emr_gateway.webhooks")

USER_AGENT = "emr-gateway-webhooks/1"
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
_jitter = random.SystemRandom()


def render(payload: bytes, fmt: PayloadFormat) -> bytes:
    """The stored payload is the normalized event; other formats come from gateway.webhooks.formats when present."""
    try:
        formats = importlib.import_module("gateway.webhooks.formats")  # owned by the change-detection half
    except ImportError:
        return payload
    rendered: bytes = formats.render(decode_event(payload), fmt)
    return rendered


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as delta-seconds or an HTTP date; nonsense is ignored."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_attempt(
    attempts_made: int, schedule: Sequence[float], jitter: float, retry_after: float | None, now: datetime
) -> datetime | None:
    """schedule[i] is the delay before attempt i+1 (schedule[0]: the first, usually immediate); None = exhausted."""
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * _jitter.uniform(1.0 - jitter, 1.0 + jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return now + timedelta(seconds=delay)


async def _read_limited(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_BODY_LIMIT:
            break
    return b"".join(chunks)[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")


async def attempt(
    http: httpx.AsyncClient, claim: Claim, config: GatewayConfig, allowed: Sequence[IPNetwork]
) -> Outcome:
    """One POST. The address check runs again here: DNS may have changed since the subscription."""
    now = datetime.now(UTC).replace(microsecond=0)
    attempts_made = claim.attempts + 1
    schedule, jitter = config.webhook_retry_schedule, config.webhook_retry_jitter

    def failed(
        error: str, status: int | None = None, body: str | None = None, retry_after: float | None = None
    ) -> Outcome:
        return Outcome(
            succeeded=False,
            status_code=status,
            error=error,
            response_body=body,
            next_attempt_at=next_attempt(attempts_made, schedule, jitter, retry_after, datetime.now(UTC)),
        )

    try:
        await check_target(claim.url, allowed)
    except TargetRefused as exc:
        return failed(f"refused: {exc}")
    body = render(claim.payload, claim.format)
    headers = webhook_headers(claim.secrets, claim.event_id, now, body)
    headers["user-agent"] = USER_AGENT
    try:
        async with http.stream(
            "POST",
            claim.url,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(config.webhook_timeout_seconds),
            follow_redirects=False,
        ) as response:
            text = await _read_limited(response)
    except httpx.TimeoutException:
        return failed("timed out")
    except httpx.HTTPError as exc:
        return failed(f"connection failed: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(succeeded=True, status_code=status, response_body=text)
    if status == 410:
        outcome = failed("the receiver answered 410 Gone", status, text)
        return Outcome(
            succeeded=False,
            status_code=status,
            error=outcome.error,
            response_body=text,
            next_attempt_at=outcome.next_attempt_at,
            gone=True,
        )
    reason = "redirect (not followed)" if 300 <= status < 400 else f"HTTP {status}"
    return failed(reason, status, text, retry_after_seconds(response.headers.get("retry-after"), datetime.now(UTC)))


async def deliver_batch(store: WebhookStore, http: httpx.AsyncClient, config: GatewayConfig, worker_id: str) -> int:
    """Claims one batch and sends it concurrently; returns how many were claimed (0: nothing due)."""
    claims = await store.claim(worker_id, limit=config.webhook_batch_size, lease_seconds=config.webhook_lease_seconds)
    if not claims:
        return 0
    allowed = parse_networks(config.webhook_allowed_subnets)

    async def one(claim: Claim) -> None:
        outcome = await attempt(http, claim, config, allowed)
        recorded = await store.finish(
            claim, worker_id, outcome, disable_after_seconds=config.webhook_disable_after_seconds
        )
        if not recorded:
            log.warning("delivery %s: lease lost before the outcome was recorded", claim.delivery_id)
        elif not outcome.succeeded:
            log.info("delivery %s to endpoint %s failed: %s", claim.delivery_id, claim.endpoint_id, outcome.error)

    await asyncio.gather(*(one(claim) for claim in claims))
    return len(claims)

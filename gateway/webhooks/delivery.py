"""The delivery worker: claim due deliveries, send each signed, record the outcomes and the next attempts.

Throughput comes from three things (see `Pipeline`): one aiohttp session for every endpoint (connections kept alive
per host), outcomes recorded together (one transaction per group of answers, not per delivery), and the next claim
made while the current batch is still being sent. At-least-once holds throughout: an outcome is recorded only after
the answer, and at most `webhook_batch_size` deliveries are ever sent without their outcome recorded, so a crash
re-sends at most that many.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import random
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import ModuleType
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from gateway.config import GatewayConfig
from gateway.logsafe import log_unexpected
from gateway.storage.outbox import decode_event
from gateway.storage.webhooks import RESPONSE_BODY_LIMIT, Claim, Finished, Outcome, WebhookStore
from gateway.webhooks.signing import webhook_headers
from gateway.webhooks.ssrf import IPNetwork, TargetRefused, address_allowed, check_target, parse_networks
from schemas.webhooks import PayloadFormat

log = logging.getLogger("emr_gateway.webhooks")

USER_AGENT = "emr-gateway-webhooks/1"
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
RECORD_RETRIES = (0.2, 1.0, 3.0)  # a failed batch record is retried (the window stays held) before it is given up
_jitter = random.SystemRandom()

# -- payloads ------------------------------------------------------------------------------------------------------

_formats: ModuleType | None = None
_RENDERED_MAX = 2048
_rendered: dict[tuple[str, PayloadFormat], bytes] = {}


def render(payload: bytes, fmt: PayloadFormat) -> bytes:
    """The stored payload is the normalized event; other formats come from gateway.webhooks.formats when present."""
    global _formats
    if _formats is None:
        try:
            _formats = importlib.import_module("gateway.webhooks.formats")  # owned by the change-detection half
        except ImportError:
            return payload
    rendered: bytes = _formats.render(decode_event(payload), fmt)
    return rendered


def rendered_body(claim: Claim) -> bytes:
    """An event never changes, so its body per format is rendered once per process (the other endpoints of the same
    location, and every retry, reuse it); the cache is small and simply emptied when full."""
    key = (claim.event_id, claim.format)
    body = _rendered.get(key)
    if body is None:
        if len(_rendered) >= _RENDERED_MAX:
            _rendered.clear()
        body = _rendered[key] = render(claim.payload, claim.format)
    return body


# -- the retry schedule ------------------------------------------------------------------------------------------


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


# -- the SSRF guard, per attempt and per connection ----------------------------------------------------------------


class ConnectRefused(OSError):
    """A host that resolved, at connect time, to an address the guard refuses (DNS changed since the check)."""


class TargetChecks:
    """`check_target` per attempt, its answer kept per URL for `ttl` seconds: resolving a host name on every attempt
    costs a thread hop and a DNS round trip. Safe because every new connection is checked again (`CheckedResolver`):
    a cached "allowed" never lets a connection reach a refused address."""

    def __init__(self, allowed: Sequence[IPNetwork], ttl: float) -> None:
        self.allowed = list(allowed)
        self.ttl = ttl
        self._answers: dict[str, tuple[float, str | None]] = {}

    async def refusal(self, url: str) -> str | None:
        """Why `url` may not be sent to now, or None."""
        now = time.monotonic()
        cached = self._answers.get(url)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            await check_target(url, self.allowed)
            answer = None
        except TargetRefused as exc:
            answer = str(exc)
        if self.ttl > 0:
            if len(self._answers) > 4096:
                self._answers.clear()
            self._answers[url] = (now + self.ttl, answer)
        return answer


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver with the SSRF guard applied to what a new connection will actually reach: closes the gap
    between the per-attempt check and the connection's own lookup (DNS rebinding). Proxy hosts are exempt: the
    operator chose them, and the proxy resolves the target itself."""

    def __init__(self, allowed: Sequence[IPNetwork], exempt_hosts: frozenset[str]) -> None:
        self._inner = ThreadedResolver()
        self._allowed = list(allowed)
        self._exempt = exempt_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host.lower() in self._exempt:
            return results
        for result in results:
            ip = ipaddress.ip_address(result["host"].split("%")[0])
            if not address_allowed(ip, self._allowed):
                raise ConnectRefused(f"the host {host!r} now resolves to {ip}, a refused address")
        return results

    async def close(self) -> None:
        await self._inner.close()


# -- the HTTP client -----------------------------------------------------------------------------------------------


class WebhookClient:
    """One aiohttp session for every endpoint (keep-alive connections per host), built inside the running loop.

    aiohttp rather than httpx: a loopback POST costs ~0.27 ms of CPU here against ~1.2 ms through httpx on the
    aiohttp transport and several ms through httpcore's pool (measured on this project's machine). Kept from the
    httpx client it replaces: certifi's CA bundle (and SSL_CERT_FILE), HTTP(S)_PROXY/ALL_PROXY/NO_PROXY, no
    redirects, no cookies. Responses are asked for uncompressed and never decompressed (the body is cut at 1 KiB)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        allowed = parse_networks(config.webhook_allowed_subnets)
        self.checks = TargetChecks(allowed, config.webhook_target_check_ttl_seconds)
        self._proxies = {k: v for k, v in getproxies().items() if k in ("http", "https", "all")}
        exempt = frozenset(filter(None, ((urlsplit(p).hostname or "").lower() for p in self._proxies.values())))
        self._resolver_args = (allowed, exempt)
        self._proxy_for: dict[tuple[str, str], str | None] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=max(1, self.config.webhook_batch_size) + 8,  # at most a batch is in flight
                keepalive_timeout=self.config.webhook_keepalive_seconds,
                resolver=CheckedResolver(*self._resolver_args),
                ssl=httpx.create_ssl_context(),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self.config.webhook_timeout_seconds),
                auto_decompress=False,
                trust_env=False,  # proxies are chosen per URL below; no .netrc credentials for receivers
            )
        return self._session

    def proxy(self, url: str) -> str | None:
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._proxy_for:
            chosen = self._proxies.get(parts.scheme) or self._proxies.get("all")
            self._proxy_for[key] = None if chosen is None or proxy_bypass(key[1]) else chosen
        return self._proxy_for[key]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _read_limited(response: aiohttp.ClientResponse) -> str:
    """At most RESPONSE_BODY_LIMIT bytes; the rest is never read (the connection is then closed, not reused)."""
    chunks: list[bytes] = []
    size = 0
    while size < RESPONSE_BODY_LIMIT:
        chunk = await response.content.read(RESPONSE_BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


async def attempt(client: WebhookClient, claim: Claim, config: GatewayConfig) -> Outcome:
    """One POST. The address check runs again here (cached briefly, and again at connect): DNS may have changed."""
    now = datetime.now(UTC).replace(microsecond=0)
    attempts_made = claim.attempts + 1
    schedule, jitter = config.webhook_retry_schedule, config.webhook_retry_jitter

    def failed(
        error: str,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> Outcome:
        return Outcome(
            succeeded=False,
            status_code=status,
            error=error,
            response_body=body,
            next_attempt_at=next_attempt(attempts_made, schedule, jitter, retry_after, datetime.now(UTC)),
            gone=gone,
        )

    refusal = await client.checks.refusal(claim.url)
    if refusal is not None:
        return failed(f"refused: {refusal}")
    body = rendered_body(claim)
    headers = webhook_headers(claim.secrets, claim.event_id, now, body)
    headers["user-agent"] = USER_AGENT
    headers["accept-encoding"] = "identity"
    try:
        async with client.session.post(
            claim.url, data=body, headers=headers, allow_redirects=False, proxy=client.proxy(claim.url)
        ) as response:
            text = await _read_limited(response)
            status = response.status
            retry_after = response.headers.get("retry-after")
    except TimeoutError:
        return failed("timed out")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectRefused):
            return failed(f"refused: {exc.os_error}")
        return failed(f"connection failed: {type(exc).__name__}")
    except (aiohttp.ClientError, OSError) as exc:
        return failed(f"connection failed: {type(exc).__name__}")
    if 200 <= status < 300:
        return Outcome(succeeded=True, status_code=status, response_body=text)
    if status == 410:
        return failed("the receiver answered 410 Gone", status, text, gone=True)
    reason = "redirect (not followed)" if 300 <= status < 400 else f"HTTP {status}"
    return failed(reason, status, text, retry_after_seconds(retry_after, datetime.now(UTC)))


async def safe_attempt(client: WebhookClient, claim: Claim, config: GatewayConfig) -> Outcome:
    """A bug in rendering or signing is recorded as a failed attempt (so the schedule, and dead-lettering, still
    apply) instead of leaving the delivery leased and re-sent forever."""
    try:
        return await attempt(client, claim, config)
    except Exception as exc:
        log_unexpected(log, f"delivery {claim.delivery_id} failed unexpectedly", exc)
        return Outcome(
            succeeded=False,
            error=f"internal error: {type(exc).__name__}",
            next_attempt_at=next_attempt(
                claim.attempts + 1, config.webhook_retry_schedule, config.webhook_retry_jitter, None, datetime.now(UTC)
            ),
        )


def _lease_left(claim: Claim) -> float:
    return (claim.locked_until - datetime.now(UTC)).total_seconds()


def _log_recorded(finished: Sequence[Finished], recorded: frozenset[str]) -> None:
    """Failures at INFO, one line each; successes are not logged (the delivery log has them)."""
    for f in finished:
        if f.claim.delivery_id not in recorded:
            log.warning("delivery %s: lease lost before the outcome was recorded", f.claim.delivery_id)
        elif not f.outcome.succeeded:
            log.info("delivery %s to endpoint %s failed: %s", f.claim.delivery_id, f.claim.endpoint_id, f.outcome.error)


async def deliver_batch(store: WebhookStore, client: WebhookClient, config: GatewayConfig, worker_id: str) -> int:
    """Claims one batch, sends it concurrently and records every outcome in one transaction; returns how many were
    claimed (0: nothing due). The simple form of `Pipeline` (which overlaps claiming, sending and recording)."""
    claims = await store.claim(worker_id, limit=config.webhook_batch_size, lease_seconds=config.webhook_lease_seconds)
    if not claims:
        return 0
    outcomes = await asyncio.gather(*(safe_attempt(client, claim, config) for claim in claims))
    finished = [Finished(claim, outcome) for claim, outcome in zip(claims, outcomes, strict=True)]
    recorded = await store.finish_many(finished, worker_id, disable_after_seconds=config.webhook_disable_after_seconds)
    _log_recorded(finished, recorded.delivery_ids)
    return len(claims)


class Pipeline:
    """The worker's delivery loop: claiming, sending and recording overlap, under one invariant — at most
    `webhook_batch_size` deliveries are sent and not yet recorded (`_window`). A slot is taken before a send and
    given back only after its outcome has committed, so a crash (kill -9) re-sends at most one batch's worth.

    Recording is a group commit: answers that arrive while a record transaction runs are written together by the
    next one. The next batch is claimed as soon as the current one has been handed to senders; its sends wait for
    slots. A claim whose lease would lapse before the timeout is not sent, and claims not sent when the worker stops
    are released (due again at once, not after their lease)."""

    def __init__(self, store: WebhookStore, client: WebhookClient, config: GatewayConfig, worker_id: str) -> None:
        self.store, self.client, self.config, self.worker_id = store, client, config, worker_id
        self.batch = max(1, config.webhook_batch_size)
        self._window = asyncio.Semaphore(self.batch)
        self._answers: list[Finished] = []
        self._answered = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._turns: weakref.WeakValueDictionary[str, asyncio.Semaphore] = weakref.WeakValueDictionary()
        # Endpoints this worker's records disabled, and when: claims made before that are not sent.
        self._disabled: dict[str, datetime] = {}
        # Claiming and recording run concurrently, each on a connection of its own (PostgreSQL; None on SQLite).
        self._claim_lane, self._record_lane = store.lane(), store.lane()
        self.sent = 0

    async def _send(self, claim: Claim) -> None:
        # A receiver gets at most `webhook_endpoint_concurrency` requests at once from this worker, whatever the batch
        # size; waiting for a turn is not part of the attempt's timeout.
        turn = self._turns.get(claim.endpoint_id)
        if turn is None:
            turn = self._turns[claim.endpoint_id] = asyncio.Semaphore(max(1, self.config.webhook_endpoint_concurrency))
        async with turn:
            # A slow receiver can keep a claim waiting for its turn until its lease is nearly gone: not sent then.
            outcome = None if self._lease_short(claim) else await safe_attempt(self.client, claim, self.config)
        if outcome is None:
            try:
                await self.store.release([claim], self.worker_id)
            except Exception as exc:
                log_unexpected(log, "releasing an unsent webhook delivery failed", exc)  # its lease lapses instead
            finally:
                self._window.release()
            return
        self._answers.append(Finished(claim, outcome))
        self._answered.set()

    async def _record(self, finished: list[Finished]) -> None:
        for delay in (*RECORD_RETRIES, None):
            try:
                recorded = await self.store.finish_many(
                    finished,
                    self.worker_id,
                    disable_after_seconds=self.config.webhook_disable_after_seconds,
                    lane=self._record_lane,
                )
            except Exception as exc:
                if delay is None:
                    # Given up: these stay leased and go out again after their lease (at-least-once).
                    log_unexpected(log, f"recording {len(finished)} webhook outcomes failed", exc)
                    return
                await asyncio.sleep(delay)
                continue
            now = datetime.now(UTC)
            self._disabled.update(dict.fromkeys(recorded.disabled_endpoints, now))
            _log_recorded(finished, recorded.delivery_ids)
            return

    async def _recorder(self, done: asyncio.Event) -> None:
        """Runs until `done` is set and every answer is recorded."""
        while True:
            if not self._answers:
                if done.is_set() and not self._sends:
                    return
                self._answered.clear()
                await self._answered.wait()
                continue
            finished, self._answers = self._answers, []
            try:
                await self._record(finished)
            finally:
                for _ in finished:
                    self._window.release()

    async def _dispatch(self, claims: list[Claim], stop: asyncio.Event) -> list[Claim]:
        """Starts a send per claim as slots free up; returns the claims not sent."""
        unsent: list[Claim] = []
        for i, claim in enumerate(claims):
            await self._window.acquire()
            if stop.is_set():
                self._window.release()
                return unsent + claims[i:]
            if self._held_back(claim):
                self._window.release()
                unsent.append(claim)
                continue
            task = asyncio.create_task(self._send(claim))
            self._sends.add(task)
            task.add_done_callback(self._sent)
        return unsent

    def _lease_short(self, claim: Claim) -> bool:
        """Its lease could lapse mid-send: less than the timeout left (half the lease when a lease is configured
        shorter than the timeout, so a fresh claim always goes out)."""
        return _lease_left(claim) < min(self.config.webhook_timeout_seconds, self.config.webhook_lease_seconds / 2)

    def _held_back(self, claim: Claim) -> bool:
        """Not sent: its lease is short, or its endpoint was disabled after it was claimed (a claim made later means
        the endpoint was enabled again)."""
        if self._lease_short(claim):
            return True
        disabled_at = self._disabled.get(claim.endpoint_id)
        claimed_at = claim.locked_until - timedelta(seconds=self.config.webhook_lease_seconds)
        return disabled_at is not None and claimed_at <= disabled_at

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self.sent += 1
        self._answered.set()  # the recorder may be waiting for the last send to finish

    async def run(self, stop: asyncio.Event, idle: Callable[[asyncio.Event, float], Awaitable[None]]) -> None:
        """Until `stop`; then the sends in flight finish and are recorded, and unsent claims are released.
        `idle(stop, seconds)` waits for new work when a claim finds none."""
        done = asyncio.Event()
        recorder = asyncio.create_task(self._recorder(done))
        try:
            while not stop.is_set():
                try:
                    claims = await self.store.claim(
                        self.worker_id,
                        limit=self.batch,
                        lease_seconds=self.config.webhook_lease_seconds,
                        lane=self._claim_lane,
                    )
                    unsent = await self._dispatch(claims, stop) if claims else []
                    if unsent:
                        await self.store.release(unsent, self.worker_id)
                except Exception as exc:
                    log_unexpected(log, "webhook delivery batch failed", exc)
                    claims = []
                if not claims:
                    self._disabled.clear()  # no claim made before those disablings is held any more
                    await idle(stop, self.config.webhook_poll_interval_seconds)
        finally:
            try:
                if self._sends:
                    await asyncio.wait(set(self._sends))
                done.set()
                self._answered.set()
                await recorder
            finally:
                for lane in (self._claim_lane, self._record_lane):
                    if lane is not None:
                        await lane.close()

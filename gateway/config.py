"""Runtime configuration from the environment, read once at start-up."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping

import msgspec

from adapters.pacing import RateLimit
from gateway.ghl.signatures import GHL_ED25519_PUBLIC_KEY, load_ed25519, load_rsa
from gateway.storage import urls

DEFAULT_DATABASE_URL = urls.DEFAULT_URL


class GatewayConfig(msgspec.Struct, kw_only=True, frozen=True):
    database_url: str = DEFAULT_DATABASE_URL
    catalog_ttl_seconds: float = 60.0
    adapter_ttl_seconds: float = 30.0
    emr_timeout_seconds: float = 20.0
    emr_connect_timeout_seconds: float = 5.0
    # How long a write whose answer was lost is watched for before `504 emr_outcome_unknown` (None: twice the EMR
    # timeout, long enough for an EMR that finishes late behind a load balancer).
    write_patience_seconds: float | None = None
    max_body_bytes: int = 64 * 1024
    max_json_depth: int = 32  # deeper bodies are refused with 400 before anything else runs
    body_read_timeout_seconds: float = 10.0  # a body that does not arrive in time is refused with 408
    rate_limit_per_minute: int = 600
    # How long a process trusts what it read about an API key or GHL token: a revocation reaches every replica
    # within this (0: read the database on every request).
    auth_cache_seconds: float = 5.0
    # Where per-API-key buckets live: "database" (shared by every replica), "memory" (this process), or "auto":
    # the database on PostgreSQL, memory on SQLite (one `serve` process; its database write lock is the bottleneck).
    rate_limit_store: str = "auto"
    # Overrides of the adapters' own `rate_limits` per EMR slug; budgets always live in the database.
    emr_rate_limits: dict[str, tuple[RateLimit, ...]] = msgspec.field(default_factory=dict)
    emr_budget_max_wait_seconds: float = 10.0  # longer than this and the request is refused with Retry-After
    # -- what a booking's times may be (EGW_BOOKING_*, EGW_APPOINTMENT_*) --
    booking_max_past_seconds: float = 86400.0
    booking_max_ahead_days: float = 730.0
    appointment_min_minutes: float = 5.0
    appointment_max_minutes: float = 720.0
    idempotency_ttl_seconds: int = 48 * 3600
    idempotency_lock_seconds: int = 120
    # -- webhook delivery (EGW_WEBHOOK_*) --
    webhook_retry_schedule: tuple[float, ...] = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    webhook_retry_jitter: float = 0.2
    webhook_timeout_seconds: float = 15.0
    webhook_disable_after_seconds: float = 5 * 86400.0
    webhook_poll_interval_seconds: float = 1.0
    webhook_lease_seconds: float = 60.0
    webhook_batch_size: int = 20
    webhook_secret_grace_seconds: float = 86400.0
    webhook_allowed_subnets: tuple[str, ...] = ()
    # How long a URL's SSRF check is reused (every new connection is checked again at connect time regardless).
    webhook_target_check_ttl_seconds: float = 10.0
    # Idle keep-alive connections to receivers close after this: below the 5 s many servers use, so a request is
    # never written to a connection the receiver is closing.
    webhook_keepalive_seconds: float = 4.0
    # Requests one worker sends one endpoint at once (the rest of its batch waits its turn, outside the timeout).
    webhook_endpoint_concurrency: int = 20
    # -- GoHighLevel marketplace webhooks (EGW_GHL_*): public keys, PEM or base64 --
    ghl_ed25519_public_key: str = GHL_ED25519_PUBLIC_KEY
    ghl_rsa_public_key: str = ""
    # -- change detection (EGW_POLL_SECONDS, EGW_SYNC_*) --
    poll_seconds: float | None = None  # None: derived per location from its EMR account's budget (adaptive)
    # Of the account's sustained rate that polls may use: 0.15, so >= 80 % stays for bookings even when a poll's
    # cost (changes, the catalog) is only known after it ran.
    poll_budget_share: float = 0.15
    poll_min_seconds: float = 2.0  # adaptive polling never polls a location more often than this
    sync_tick_seconds: float = 5.0  # how often a worker looks for due locations
    sync_sweep_seconds: float = 86400.0
    sync_lease_seconds: float = 30.0  # renewed every third while a poll runs: a dead worker's leases lapse fast
    sync_batch_size: int = 20
    sync_max_backoff_seconds: float = 3600.0


def write_patience(config: GatewayConfig) -> float:
    return config.write_patience_seconds or 2 * config.emr_timeout_seconds


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    value = _num(env, name, default)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a fraction above 0 and at most 1, e.g. 0.2")
    return value


def _num(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None


def _seconds_list(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{name} must be comma-separated seconds") from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"{name} must list at least one non-negative number of seconds")
    return values


def _subnets(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Validated here so a typo stops start-up instead of silently allowing nothing."""
    parts = [part.strip() for part in env.get(name, "").split(",") if part.strip()]
    try:
        return tuple(str(ipaddress.ip_network(part, strict=False)) for part in parts)
    except ValueError:
        raise ValueError(f"{name} must be comma-separated CIDRs, e.g. 10.0.0.0/8,fd00::/8") from None


def _ghl_key(env: Mapping[str, str], name: str, default: str, load: Callable[[str], object]) -> str:
    """Checked here so a pasted key with a typo stops start-up instead of failing every webhook."""
    raw = env.get(name)
    value = default if raw is None else raw.strip()
    if value:
        try:
            load(value)
        except ValueError as exc:
            raise ValueError(f"{name} is not a usable public key ({exc})") from None
    return value


RATE_LIMIT_STORES = ("auto", "database", "memory")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}")
    return value


def _emr_rate_limits(env: Mapping[str, str], name: str) -> dict[str, tuple[RateLimit, ...]]:
    """JSON: {"cliniko": [{"per_second": 3, "burst": 20}], …}; checked here so a typo stops start-up."""
    from adapters.registry import load_registry  # the registry imports every adapter: only when configured

    raw = env.get(name, "").strip()
    if not raw:
        return {}
    try:
        limits = msgspec.json.decode(raw, type=dict[str, tuple[RateLimit, ...]])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        example = '{"cliniko": [{"per_second": 3, "burst": 20}]}'
        raise ValueError(f"{name} is not valid ({exc}); e.g. {example}") from None
    unknown = sorted(set(limits) - set(load_registry()))
    if unknown:
        raise ValueError(f"{name} names unknown EMRs: {', '.join(unknown)}")
    return limits


def load_config(env: Mapping[str, str] | None = None) -> GatewayConfig:
    env = os.environ if env is None else env
    base = GatewayConfig()
    return GatewayConfig(
        database_url=urls.from_env(env),
        catalog_ttl_seconds=_num(env, "EGW_CATALOG_TTL_SECONDS", base.catalog_ttl_seconds),
        adapter_ttl_seconds=_num(env, "EGW_ADAPTER_TTL_SECONDS", base.adapter_ttl_seconds),
        emr_timeout_seconds=_num(env, "EGW_EMR_TIMEOUT_SECONDS", base.emr_timeout_seconds),
        emr_connect_timeout_seconds=_num(env, "EGW_EMR_CONNECT_TIMEOUT_SECONDS", base.emr_connect_timeout_seconds),
        write_patience_seconds=_num(env, "EGW_WRITE_PATIENCE_SECONDS", 0.0) or None,
        max_body_bytes=int(_num(env, "EGW_MAX_BODY_BYTES", base.max_body_bytes)),
        max_json_depth=int(_num(env, "EGW_MAX_JSON_DEPTH", base.max_json_depth)),
        body_read_timeout_seconds=_num(env, "EGW_BODY_READ_TIMEOUT_SECONDS", base.body_read_timeout_seconds),
        booking_max_past_seconds=_num(env, "EGW_BOOKING_MAX_PAST_SECONDS", base.booking_max_past_seconds),
        booking_max_ahead_days=_num(env, "EGW_BOOKING_MAX_AHEAD_DAYS", base.booking_max_ahead_days),
        appointment_min_minutes=_num(env, "EGW_APPOINTMENT_MIN_MINUTES", base.appointment_min_minutes),
        appointment_max_minutes=_num(env, "EGW_APPOINTMENT_MAX_MINUTES", base.appointment_max_minutes),
        rate_limit_per_minute=int(_num(env, "EGW_RATE_LIMIT_PER_MINUTE", base.rate_limit_per_minute)),
        auth_cache_seconds=_num(env, "EGW_AUTH_CACHE_SECONDS", base.auth_cache_seconds),
        rate_limit_store=_choice(env, "EGW_RATE_LIMIT_STORE", base.rate_limit_store, RATE_LIMIT_STORES),
        emr_rate_limits=_emr_rate_limits(env, "EGW_EMR_RATE_LIMITS"),
        emr_budget_max_wait_seconds=_num(env, "EGW_EMR_BUDGET_MAX_WAIT_SECONDS", base.emr_budget_max_wait_seconds),
        idempotency_ttl_seconds=int(_num(env, "EGW_IDEMPOTENCY_TTL_SECONDS", base.idempotency_ttl_seconds)),
        idempotency_lock_seconds=int(_num(env, "EGW_IDEMPOTENCY_LOCK_SECONDS", base.idempotency_lock_seconds)),
        webhook_retry_schedule=_seconds_list(env, "EGW_WEBHOOK_RETRY_SCHEDULE", base.webhook_retry_schedule),
        webhook_retry_jitter=_num(env, "EGW_WEBHOOK_RETRY_JITTER", base.webhook_retry_jitter),
        webhook_timeout_seconds=_num(env, "EGW_WEBHOOK_TIMEOUT_SECONDS", base.webhook_timeout_seconds),
        webhook_disable_after_seconds=_num(
            env, "EGW_WEBHOOK_DISABLE_AFTER_SECONDS", base.webhook_disable_after_seconds
        ),
        webhook_poll_interval_seconds=_num(
            env, "EGW_WEBHOOK_POLL_INTERVAL_SECONDS", base.webhook_poll_interval_seconds
        ),
        webhook_lease_seconds=_num(env, "EGW_WEBHOOK_LEASE_SECONDS", base.webhook_lease_seconds),
        webhook_batch_size=int(_num(env, "EGW_WEBHOOK_BATCH_SIZE", base.webhook_batch_size)),
        webhook_secret_grace_seconds=_num(env, "EGW_WEBHOOK_SECRET_GRACE_SECONDS", base.webhook_secret_grace_seconds),
        webhook_allowed_subnets=_subnets(env, "EGW_WEBHOOK_ALLOWED_SUBNETS"),
        webhook_target_check_ttl_seconds=_num(
            env, "EGW_WEBHOOK_TARGET_CHECK_TTL_SECONDS", base.webhook_target_check_ttl_seconds
        ),
        webhook_keepalive_seconds=_num(env, "EGW_WEBHOOK_KEEPALIVE_SECONDS", base.webhook_keepalive_seconds),
        webhook_endpoint_concurrency=max(
            1, int(_num(env, "EGW_WEBHOOK_ENDPOINT_CONCURRENCY", base.webhook_endpoint_concurrency))
        ),
        ghl_ed25519_public_key=_ghl_key(env, "EGW_GHL_ED25519_PUBLIC_KEY", base.ghl_ed25519_public_key, load_ed25519),
        ghl_rsa_public_key=_ghl_key(env, "EGW_GHL_RSA_PUBLIC_KEY", base.ghl_rsa_public_key, load_rsa),
        poll_seconds=_num(env, "EGW_POLL_SECONDS", 0.0) if env.get("EGW_POLL_SECONDS") else None,
        poll_budget_share=_share(env, "EGW_POLL_BUDGET_SHARE", base.poll_budget_share),
        poll_min_seconds=_num(env, "EGW_POLL_MIN_SECONDS", base.poll_min_seconds),
        sync_tick_seconds=_num(env, "EGW_SYNC_TICK_SECONDS", base.sync_tick_seconds),
        sync_sweep_seconds=_num(env, "EGW_SYNC_SWEEP_SECONDS", base.sync_sweep_seconds),
        sync_lease_seconds=_num(env, "EGW_SYNC_LEASE_SECONDS", base.sync_lease_seconds),
        sync_batch_size=int(_num(env, "EGW_SYNC_BATCH_SIZE", base.sync_batch_size)),
        sync_max_backoff_seconds=_num(env, "EGW_SYNC_MAX_BACKOFF_SECONDS", base.sync_max_backoff_seconds),
    )

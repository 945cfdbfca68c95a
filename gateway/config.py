"""Runtime configuration from the environment, read once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

DEFAULT_DATABASE_URL = "sqlite:///./emr-gateway.db"


class GatewayConfig(msgspec.Struct, kw_only=True, frozen=True):
    database_url: str = DEFAULT_DATABASE_URL
    catalog_ttl_seconds: float = 60.0
    adapter_ttl_seconds: float = 30.0
    emr_timeout_seconds: float = 20.0
    emr_connect_timeout_seconds: float = 5.0
    max_body_bytes: int = 64 * 1024
    rate_limit_per_minute: int = 600
    idempotency_ttl_seconds: int = 48 * 3600
    idempotency_lock_seconds: int = 120


def _num(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None


def load_config(env: Mapping[str, str] | None = None) -> GatewayConfig:
    env = os.environ if env is None else env
    base = GatewayConfig()
    return GatewayConfig(
        database_url=env.get("EGW_DATABASE_URL") or DEFAULT_DATABASE_URL,
        catalog_ttl_seconds=_num(env, "EGW_CATALOG_TTL_SECONDS", base.catalog_ttl_seconds),
        adapter_ttl_seconds=_num(env, "EGW_ADAPTER_TTL_SECONDS", base.adapter_ttl_seconds),
        emr_timeout_seconds=_num(env, "EGW_EMR_TIMEOUT_SECONDS", base.emr_timeout_seconds),
        emr_connect_timeout_seconds=_num(env, "EGW_EMR_CONNECT_TIMEOUT_SECONDS", base.emr_connect_timeout_seconds),
        max_body_bytes=int(_num(env, "EGW_MAX_BODY_BYTES", base.max_body_bytes)),
        rate_limit_per_minute=int(_num(env, "EGW_RATE_LIMIT_PER_MINUTE", base.rate_limit_per_minute)),
        idempotency_ttl_seconds=int(_num(env, "EGW_IDEMPOTENCY_TTL_SECONDS", base.idempotency_ttl_seconds)),
        idempotency_lock_seconds=int(_num(env, "EGW_IDEMPOTENCY_LOCK_SECONDS", base.idempotency_lock_seconds)),
    )

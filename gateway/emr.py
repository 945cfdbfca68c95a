"""Builds the adapter for a stored location: the one place gateway code turns stored bytes into typed settings."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, TypeAlias

import httpx
import msgspec

from adapters.base import AdapterContext, EMRAdapter
from adapters.pacing import Budget, LeasedBudget, RateLimit, paced_client
from adapters.registry import get_adapter_class
from gateway.config import GatewayConfig
from gateway.storage import pb_client_index
from gateway.storage.rate_buckets import StoredBudget
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store

AnyAdapter: TypeAlias = EMRAdapter[Any, Any]


class ConfigError(ValueError):
    """Settings or credentials do not fit the EMR's schema."""


def decode_settings(emr: str, settings_json: bytes, credentials_json: bytes) -> tuple[msgspec.Struct, msgspec.Struct]:
    cls = get_adapter_class(emr)
    try:
        settings = msgspec.json.decode(settings_json, type=cls.settings_type)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"settings: {exc}") from None
    try:
        credentials = msgspec.json.decode(credentials_json, type=cls.credentials_type)
    except msgspec.ValidationError as exc:
        # msgspec's message names the field, never the value, so no secret leaks here.
        raise ConfigError(f"credentials: {exc}") from None
    return settings, credentials


class EMRPacing:
    """Puts each adapter behind its EMR account's shared budget (`adapters.pacing`).

    The account is named by a SHA-256 of the canonical credentials (API keys, client secrets and session cookies are
    high-entropy, so the digest reveals nothing): every location, replica and worker holding them shares one budget.
    """

    def __init__(self, budget: Budget, overrides: Mapping[str, tuple[RateLimit, ...]], max_wait: float) -> None:
        self.budget = budget
        self.overrides = overrides
        self.max_wait = max_wait

    @classmethod
    def for_config(cls, config: GatewayConfig, store: Store) -> EMRPacing:
        """Tokens come from the database's shared bucket in batches and are spent in this process: one database
        write per batch, not per EMR call."""
        budget = LeasedBudget(StoredBudget(store))
        return cls(budget, config.emr_rate_limits, config.emr_budget_max_wait_seconds)

    def limits_for(self, cls: type[AnyAdapter]) -> tuple[RateLimit, ...]:
        return self.overrides.get(cls.slug, cls.rate_limits)

    @staticmethod
    def account_key(cls: type[AnyAdapter], credentials: msgspec.Struct) -> str:
        """The budget's name for these credentials; bucket `i` of the account's limits is `<key>:<i>`."""
        digest = hashlib.sha256(msgspec.json.encode(credentials)).hexdigest()[:32]
        return f"emr:{cls.slug}:{digest}"

    def client(self, cls: type[AnyAdapter], credentials: msgspec.Struct, http: httpx.AsyncClient) -> httpx.AsyncClient:
        key = self.account_key(cls, credentials)
        limits = self.limits_for(cls)
        return paced_client(http, self.budget, key, limits, max_wait=self.max_wait, emr=cls.display_name)


def build_adapter(
    emr: str,
    settings_json: bytes,
    credentials_json: bytes,
    *,
    http: httpx.AsyncClient,
    location_id: str,
    time_zone: str,
    store: Store | None = None,
    pacing: EMRPacing | None = None,
    write_patience_seconds: float | None = None,
) -> AnyAdapter:
    """With `store`, adapters that keep per-location state (Practice Better's client index) get the shared,
    storage-backed kind instead of their in-memory default."""
    cls = get_adapter_class(emr)
    settings, credentials = decode_settings(emr, settings_json, credentials_json)
    if pacing is not None:
        http = pacing.client(cls, credentials, http)
    context = AdapterContext(location_id=location_id, time_zone=time_zone)
    if write_patience_seconds is not None:
        context.write_patience_seconds = write_patience_seconds
    adapter = cls(settings, credentials, http, context)
    if store is not None:
        pb_client_index.attach(adapter, store, location_id)
    return adapter


def location_adapter(
    location: LocationRecord,
    credentials_json: bytes,
    *,
    http: httpx.AsyncClient,
    store: Store,
    pacing: EMRPacing,
    write_patience_seconds: float | None = None,
) -> AnyAdapter:
    """The adapter for a stored location, behind its account's budget: what serve, the worker and the CLI use."""
    return build_adapter(
        location.emr,
        location.settings_json,
        credentials_json,
        http=http,
        location_id=location.id,
        time_zone=location.time_zone,
        store=store,
        pacing=pacing,
        write_patience_seconds=write_patience_seconds,
    )

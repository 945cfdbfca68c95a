"""Process-wide state the routes share: one store, one HTTP client, caches. Built by the app factory."""

from __future__ import annotations

import httpx
import msgspec

from adapters.pacing import Budget, LeasedBudget
from gateway.adapter_pool import AdapterPool
from gateway.catalog import CatalogCache
from gateway.config import GatewayConfig, write_patience
from gateway.emr import EMRPacing
from gateway.keycache import KeyCache
from gateway.metrics import Metrics
from gateway.ratelimit import ApiKeyLimiter
from gateway.storage.rate_buckets import StoredBudget
from gateway.storage.records import ApiKeyRecord, LocationRecord
from gateway.storage.store import Store


class Runtime:
    def __init__(self, config: GatewayConfig, store: Store, http: httpx.AsyncClient, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.http = http
        self.metrics = metrics
        self.adapters = AdapterPool(
            store, http, config.adapter_ttl_seconds, EMRPacing.for_config(config, store), write_patience(config)
        )
        self.catalogs = CatalogCache(config.catalog_ttl_seconds)
        self.keys: KeyCache[tuple[ApiKeyRecord, LocationRecord]] = KeyCache(config.auth_cache_seconds)
        self.tokens: KeyCache[tuple[ApiKeyRecord, LocationRecord, str]] = KeyCache(config.auth_cache_seconds)
        self.limiter = ApiKeyLimiter.for_config(config, store)
        # GoHighLevel's limits per GHL location, shared by every replica like an EMR account's.
        self.ghl_budget: Budget = LeasedBudget(StoredBudget(store))


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: one API key, confined to its one location."""

    key: ApiKeyRecord
    location: LocationRecord

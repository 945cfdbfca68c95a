"""Per-API-key limits: a token bucket holding one minute's allowance, refilled evenly, in a shared or local budget."""

from __future__ import annotations

import math

from adapters.pacing import Budget, LeasedBudget, LocalBudget, RateLimit
from gateway.config import GatewayConfig
from gateway.storage.rate_buckets import StoredBudget
from gateway.storage.store import Store


def uses_database(config: GatewayConfig, store: Store) -> bool:
    if config.rate_limit_store == "auto":
        return store.backend == "postgresql"
    return config.rate_limit_store == "database"


class ApiKeyLimiter:
    def __init__(self, per_minute: int, budget: Budget) -> None:
        self.limit = RateLimit(per_second=per_minute / 60.0, burst=per_minute) if per_minute > 0 else None
        self.budget = budget

    @classmethod
    def for_config(cls, config: GatewayConfig, store: Store) -> ApiKeyLimiter:
        # Shared: tokens are leased from the database's bucket in batches (no write per request); local: in memory.
        budget: Budget = LeasedBudget(StoredBudget(store)) if uses_database(config, store) else LocalBudget()
        return cls(config.rate_limit_per_minute, budget)

    async def take(self, key_id: str) -> int | None:
        """Spend one request; None when allowed, else the whole seconds until one is."""
        if self.limit is None:
            return None
        grant = await self.budget.reserve(f"apikey:{key_id}", self.limit, 0.0)
        return None if grant.granted else max(1, math.ceil(grant.wait))

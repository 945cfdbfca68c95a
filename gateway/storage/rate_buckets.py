"""Token buckets in the database, so every replica and worker draws on one allowance per API key and per EMR account.

Each decision is one atomic upsert: the row lock serialises concurrent takers, and the database's clock (not each
host's) measures the refill, so replicas on hosts whose clocks disagree still share one rate.
"""

from __future__ import annotations

from sqlalchemy import text

from adapters.pacing import Batch, Grant, RateLimit
from gateway.storage.store import Store

_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
_LEAST = {"postgresql": "LEAST", "sqlite": "MIN"}
_WHOLE = {"postgresql": "FLOOR({})", "sqlite": "CAST({} AS INTEGER)"}  # of a value >= 0
_GREATEST = {"postgresql": "GREATEST", "sqlite": "MAX"}


def _refilled(backend: str) -> str:
    least, greatest, now = _LEAST[backend], _GREATEST[backend], _NOW[backend]
    elapsed = f"{greatest}(0, {now} - rate_buckets.updated_at)"
    return f"{least}(:burst, rate_buckets.tokens + {elapsed} * :rate)"


def _take_sql(backend: str) -> str:
    refilled, now, greatest = _refilled(backend), _NOW[backend], _GREATEST[backend]
    ok = f"({refilled} - 1 >= :floor)"
    # Fixed fragments per dialect; every value is a bound parameter.
    return (
        "INSERT INTO rate_buckets (key, tokens, updated_at, granted) "  # noqa: S608
        f"VALUES (:key, :burst - 1, {now}, true) "
        "ON CONFLICT (key) DO UPDATE SET "
        f"tokens = CASE WHEN {ok} THEN {refilled} - 1 ELSE {refilled} END, "
        f"granted = {ok}, "
        f"updated_at = {greatest}(rate_buckets.updated_at, {now}) "
        "RETURNING tokens, granted"
    )


def _batch_sql(backend: str) -> str:
    """Up to :n whole tokens that are there now (never debt): a process spends them locally, one round trip per
    batch instead of per request."""
    refilled, now, least, greatest = _refilled(backend), _NOW[backend], _LEAST[backend], _GREATEST[backend]
    taken = f"{least}(:n, {_WHOLE[backend].format(f'{greatest}({refilled}, 0)')})"
    # Fixed fragments per dialect; every value is a bound parameter.
    return (
        "INSERT INTO rate_buckets (key, tokens, updated_at, granted, taken) "  # noqa: S608
        f"VALUES (:key, :burst - {least}(:n, :burst), {now}, true, {least}(:n, :burst)) "
        "ON CONFLICT (key) DO UPDATE SET "
        f"tokens = {refilled} - {taken}, "
        f"taken = {taken}, "
        f"granted = ({taken} >= 1), "
        f"updated_at = {greatest}(rate_buckets.updated_at, {now}) "
        "RETURNING taken, tokens"
    )


def _give_back_sql(backend: str) -> str:
    refilled, now, least, greatest = _refilled(backend), _NOW[backend], _LEAST[backend], _GREATEST[backend]
    # Fixed fragments per dialect; every value is a bound parameter.
    return (
        f"UPDATE rate_buckets SET tokens = {least}(:burst, {refilled} + :n), "  # noqa: S608
        f"updated_at = {greatest}(rate_buckets.updated_at, {now}) WHERE key = :key"
    )


def _penalize_sql(backend: str) -> str:
    refilled, now, least, greatest = _refilled(backend), _NOW[backend], _LEAST[backend], _GREATEST[backend]
    # Fixed fragments per dialect; every value is a bound parameter.
    return (
        "INSERT INTO rate_buckets (key, tokens, updated_at, granted) "  # noqa: S608
        f"VALUES (:key, :debt, {now}, false) "
        "ON CONFLICT (key) DO UPDATE SET "
        f"tokens = {least}({refilled}, :debt), "
        f"updated_at = {greatest}(rate_buckets.updated_at, {now})"
    )


def _fill_sql(backend: str) -> str:
    refilled = _refilled(backend)
    # Fixed fragments per dialect; every value is a bound parameter.
    return f"SELECT {refilled} AS tokens FROM rate_buckets WHERE key = :key"  # noqa: S608


class StoredBudget:
    """`adapters.pacing.Budget` kept in the gateway's database (one upsert per decision), with batches for
    `adapters.pacing.LeasedBudget`; also the per-API-key limiter's shared bucket (`max_wait=0`)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._take = text(_take_sql(store.backend))
        self._batch = text(_batch_sql(store.backend))
        self._give_back = text(_give_back_sql(store.backend))
        self._penalize = text(_penalize_sql(store.backend))
        self._fill = text(_fill_sql(store.backend))

    async def fill(self, key: str, limit: RateLimit) -> float:
        """How full the bucket is now (0..1; 1 when unused): a read, for the poll interval's headroom."""
        params = {"key": key, "burst": float(limit.burst), "rate": limit.per_second}
        async with self.store.engine.connect() as conn:
            tokens = (await conn.execute(self._fill, params)).scalar_one_or_none()
        return 1.0 if tokens is None else max(0.0, min(1.0, float(tokens) / limit.burst))

    async def reserve(self, key: str, limit: RateLimit, max_wait: float) -> Grant:
        params = {"key": key, "burst": float(limit.burst), "rate": limit.per_second}
        params["floor"] = -max_wait * limit.per_second
        async with self.store.write() as conn:
            row = (await conn.execute(self._take, params)).one()
        left, rate = float(row.tokens), limit.per_second
        if row.granted:  # in debt by `-left` requests: they go out first
            return Grant(True, max(0.0, -left / rate))
        return Grant(False, max(0.0, (1.0 - left) / rate - max_wait))

    async def penalize(self, key: str, limit: RateLimit, seconds: float) -> None:
        params = {"key": key, "burst": float(limit.burst), "rate": limit.per_second}
        params["debt"] = -seconds * limit.per_second
        async with self.store.write() as conn:
            await conn.execute(self._penalize, params)

    async def take_batch(self, key: str, limit: RateLimit, n: int) -> Batch:
        params = {"key": key, "burst": float(limit.burst), "rate": limit.per_second, "n": float(n)}
        async with self.store.write() as conn:
            row = (await conn.execute(self._batch, params)).one()
        taken, left = int(row.taken), float(row.tokens)
        return Batch(taken=taken, wait=0.0 if taken else max(0.0, (1.0 - left) / limit.per_second))

    async def give_back(self, key: str, limit: RateLimit, n: int) -> None:
        params = {"key": key, "burst": float(limit.burst), "rate": limit.per_second, "n": float(n)}
        async with self.store.write() as conn:
            await conn.execute(self._give_back, params)

"""Adapters per location, built from decrypted credentials and kept briefly so each request does not decrypt."""

from __future__ import annotations

import asyncio
import time

import httpx

from gateway.emr import AnyAdapter, EMRPacing, location_adapter
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store


class AdapterPool:
    def __init__(
        self,
        store: Store,
        http: httpx.AsyncClient,
        ttl_seconds: float,
        pacing: EMRPacing,
        write_patience: float | None = None,
    ) -> None:
        self.store = store
        self.http = http
        self.pacing = pacing
        self.ttl = ttl_seconds
        self.write_patience = write_patience
        self._cache: dict[str, tuple[float, AnyAdapter]] = {}
        self._lock = asyncio.Lock()

    async def get(self, location: LocationRecord) -> AnyAdapter:
        hit = self._cache.get(location.id)
        now = time.monotonic()
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        async with self._lock:
            hit = self._cache.get(location.id)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
            credentials = await self.store.get_credentials(location.id)
            adapter = location_adapter(
                location,
                credentials,
                http=self.http,
                store=self.store,
                pacing=self.pacing,
                write_patience_seconds=self.write_patience,
            )
            self._cache[location.id] = (now, adapter)
            return adapter

    def forget(self, location_id: str) -> None:
        self._cache.pop(location_id, None)

"""The catalog (practitioners, services, locations) per location, cached for a short TTL with one fetch at a time."""

from __future__ import annotations

import asyncio
import time

import msgspec

from gateway.emr import AnyAdapter
from schemas.catalog import Location, Practitioner, Service


class Catalog(msgspec.Struct, frozen=True):
    practitioners: list[Practitioner]
    services: list[Service]
    locations: list[Location]


class CatalogCache:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Catalog]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, location_id: str, adapter: AnyAdapter) -> Catalog:
        entry = self._entries.get(location_id)
        if entry and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        lock = self._locks.setdefault(location_id, asyncio.Lock())
        async with lock:
            entry = self._entries.get(location_id)
            if entry and time.monotonic() - entry[0] < self.ttl:
                return entry[1]
            practitioners, services, locations = await asyncio.gather(
                adapter.list_practitioners(), adapter.list_services(), adapter.list_locations()
            )
            catalog = Catalog(practitioners=practitioners, services=services, locations=locations)
            self._entries[location_id] = (time.monotonic(), catalog)
            return catalog

    def invalidate(self, location_id: str) -> None:
        self._entries.pop(location_id, None)

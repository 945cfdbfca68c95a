"""What a route needs about its caller's location: the adapter, the catalog and the zone, in one object."""

from __future__ import annotations

import msgspec

from gateway.catalog import Catalog
from gateway.emr import AnyAdapter
from gateway.runtime import Principal, Runtime


class LocationScope:
    """Built per request from the principal; every EMR call for the request goes through `adapter`."""

    def __init__(self, runtime: Runtime, principal: Principal, adapter: AnyAdapter) -> None:
        self.runtime = runtime
        self.principal = principal
        self.adapter = adapter

    @property
    def location_id(self) -> str:
        return self.principal.location.id

    @property
    def time_zone(self) -> str:
        return self.principal.location.time_zone

    async def catalog(self) -> Catalog:
        return await self.runtime.catalogs.get(self.location_id, self.adapter)


async def scope_for(runtime: Runtime, principal: Principal) -> LocationScope:
    return LocationScope(runtime, principal, await runtime.adapters.get(principal.location))


def encode(value: msgspec.Struct) -> bytes:
    return msgspec.json.encode(value)

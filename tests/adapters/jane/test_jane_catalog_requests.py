"""What one Jane catalog costs at the clinic (issue 17), counted by the emulator over real HTTP: practitioners,
services and locations are one read each of staff, treatments and locations, whether they are asked for in turn or
at once (the gateway's catalog cache), and services still name their practitioners."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import pytest

from adapters.jane import adapter as jane_adapter
from adapters.jane.adapter import JaneAdapter
from gateway.catalog import Catalog, CatalogCache
from tests.adapters.jane.conftest import Rig

STAFF = "/api/v2/staff_members"


async def _in_turn(adapter: JaneAdapter) -> Catalog:
    """A catalog asked for one list after the other."""
    return Catalog(
        practitioners=await adapter.list_practitioners(),
        services=await adapter.list_services(),
        locations=await adapter.list_locations(),
    )


async def _paths(rig: Rig, since: int) -> Counter[str]:
    """The paths of the requests after the `since`-th (once the emulator has recorded them)."""
    for _ in range(100):
        if len(rig.emulator.traffic.exchanges) >= rig.emulator.traffic.requests:
            break
        await asyncio.sleep(0.01)
    return Counter(e.path for e in list(rig.emulator.traffic.exchanges)[since:])


async def test_a_catalog_asked_in_turn_reads_staff_once(rig: Rig) -> None:
    adapter = rig.adapter()
    before = rig.emulator.traffic.requests
    catalog = await _in_turn(adapter)
    assert await _paths(rig, before) == Counter({STAFF: 1, "/api/v2/treatments": 1, "/api/v2/locations": 1})
    assert {p.id for p in catalog.practitioners} == {str(s) for s in rig.emulator.staff}
    assert all(set(s.practitioner_ids) == {p.id for p in catalog.practitioners} for s in catalog.services)
    assert [loc.name for loc in catalog.locations] == [rig.seed.businesses[0].name]


async def test_a_catalog_asked_all_at_once_reads_staff_once(rig: Rig) -> None:
    before = rig.emulator.traffic.requests
    catalog = await CatalogCache(ttl_seconds=60).get("loc", rig.adapter())
    assert await _paths(rig, before) == Counter({STAFF: 1, "/api/v2/treatments": 1, "/api/v2/locations": 1})
    assert catalog.services
    assert all(s.practitioner_ids for s in catalog.services)


async def test_a_catalog_read_later_sees_staff_changes(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jane_adapter, "STAFF_SECONDS", 0.2)
    adapter = rig.adapter()  # a pooled adapter: the same instance serves the next catalog
    await _in_turn(adapter)
    rig.emulator.staff[1] = msgspec.structs.replace(rig.emulator.staff[1], full_name="Dr Renamed")
    await asyncio.sleep(0.25)
    before = rig.emulator.traffic.requests
    catalog = await _in_turn(adapter)
    assert (await _paths(rig, before))[STAFF] == 1
    assert "Dr Renamed" in {p.name for p in catalog.practitioners}


async def test_verify_observes_the_staff_list_as_it_is_now(rig: Rig) -> None:
    adapter = rig.adapter()
    await _in_turn(adapter)
    before = rig.emulator.traffic.requests
    checks = {c.setting: c for c in await adapter.observed_settings()}
    assert (await _paths(rig, before))[STAFF] == 1
    assert checks["practitioner name"].agrees is True

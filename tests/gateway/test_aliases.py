"""An appointment re-issued under a new id on reschedule keeps answering to its old id, and GHL links follow it."""

from __future__ import annotations

from gateway.storage import aliases
from gateway.storage.store import Store


async def _location(store: Store) -> str:
    loc = await store.create_location(
        emr="cliniko", name="Site", settings_json=b"{}", credentials_json=b"{}", time_zone="Australia/Melbourne"
    )
    return loc.id


async def test_old_ids_resolve_to_the_current_one_across_two_reschedules(store: Store) -> None:
    location = await _location(store)
    assert await aliases.resolve(store, location, "A") == "A"
    await aliases.record(store, location, "A", "B")
    await aliases.record(store, location, "B", "C")
    assert [await aliases.resolve(store, location, i) for i in ("A", "B", "C")] == ["C", "C", "C"]
    await aliases.record(store, location, "A", "A")  # a reschedule that kept its id changes nothing
    assert await aliases.resolve(store, location, "A") == "C"


async def test_aliases_are_per_location(store: Store) -> None:
    north, south = await _location(store), await _location(store)
    await aliases.record(store, north, "A", "B")
    assert await aliases.resolve(store, south, "A") == "A"


async def test_ghl_links_follow_the_new_id(store: Store) -> None:
    location = await _location(store)
    await store.link_appointment(location, "ghl", "ghl-appt-1", "A")
    await aliases.record(store, location, "A", "B")
    assert await store.find_link(location, "ghl", "ghl-appt-1") == "B"

"""Connecting a gateway location to a GHL location: the token checked with a read, the gateway's custom fields
provisioned once (found by key when present, created when missing, never twice), the settings stored."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from adapters.errors import RateLimited
from adapters.ghl import wire
from adapters.ghl.client import GhlClient
from gateway.ghl.destination.fields import FIELDS, key_of
from gateway.ghl.destination.push import ghl_http
from gateway.ghl.destination.settings import GhlSettings, encode_settings
from gateway.ghl.store import link_ghl_location
from gateway.runtime import Runtime
from gateway.storage import ghl_destination as db
from gateway.storage.errors import UnknownLocation


class CalendarView(msgspec.Struct, kw_only=True):
    id: str
    name: str | None


class Connected(msgspec.Struct, kw_only=True):
    location_id: str
    ghl_location_id: str
    ghl_location_name: str | None
    fields_created: list[str]
    fields_found: list[str]
    calendars: list[CalendarView]
    settings: GhlSettings


T = TypeVar("T")
RATE_WAITS = 6


async def _patient(call: Callable[[], Awaitable[T]]) -> T:
    """A 429 during setup waits out GHL's window and tries again (a few times), like a push would."""
    for _ in range(RATE_WAITS - 1):
        try:
            return await call()
        except RateLimited as exc:
            await asyncio.sleep(min(max(1, exc.retry_after), 30))
    return await call()


async def provision_fields(client: GhlClient) -> tuple[dict[str, str], list[str], list[str]]:
    """(key -> id, created keys, found keys)."""
    present: dict[str, str] = {}
    for field in await _patient(client.list_custom_fields):
        key = (field.field_key or "").removeprefix("contact.") or key_of(field.name or "")
        present.setdefault(key, field.id)
    ids: dict[str, str] = {}
    created: list[str] = []
    found: list[str] = []
    for spec in FIELDS:
        if spec.key in present:
            ids[spec.key] = present[spec.key]
            found.append(spec.key)
            continue
        new = wire.NewCustomField(name=spec.name, data_type=spec.data_type)
        made = await _patient(functools.partial(client.create_custom_field, new))
        ids[spec.key] = made.id
        created.append(spec.key)
    return ids, created, found


async def connect(
    runtime: Runtime,
    location_id: str,
    *,
    ghl_location_id: str,
    token: str,
    base_url: str,
    settings: GhlSettings | None = None,
) -> Connected:
    """Raises `UnknownLocation`, or an `AdapterError` (`AuthFailed` for a refused token) before storing anything."""
    location = await runtime.store.get_location(location_id)
    if location is None:
        raise UnknownLocation(location_id)
    previous = await db.get_connection(runtime.store, location_id)
    if settings is None:
        settings = (
            msgspec.json.decode(previous.settings_json, type=GhlSettings) if previous is not None else GhlSettings()
        )
    http = ghl_http(runtime, ghl_location_id, max_wait=60.0)
    client = GhlClient(http, base_url=base_url, token=token, location_id=ghl_location_id)
    there = await _patient(client.get_location)
    field_ids, created, found = await provision_fields(client)
    calendars = [CalendarView(id=c.id, name=c.name) for c in await _patient(client.list_calendars)]
    await link_ghl_location(runtime.store, location_id, ghl_location_id)
    await db.save_connection(
        runtime.store,
        location_id=location_id,
        ghl_location_id=ghl_location_id,
        base_url=base_url,
        token=token,
        settings_json=encode_settings(settings),
        field_ids=field_ids,
    )
    return Connected(
        location_id=location_id,
        ghl_location_id=ghl_location_id,
        ghl_location_name=there.name,
        fields_created=created,
        fields_found=found,
        calendars=calendars,
        settings=settings,
    )


async def configure(runtime: Runtime, location_id: str, settings: GhlSettings) -> None:
    """New settings for a connected location (calendar map, tag rules); its token and fields stay."""
    connection = await db.get_connection(runtime.store, location_id)
    if connection is None:
        raise UnknownLocation(location_id)
    await db.set_settings(runtime.store, location_id, encode_settings(settings))

"""A running gateway (real uvicorn on loopback) in front of a running Cliniko emulator, on each storage backend."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import msgspec
import pytest

from adapters.emulation import Emulator, EmulatorSeed, SeedBusiness, ServerThread, default_seed
from adapters.emulators import EMULATORS
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.crypto import Keyring
from gateway.storage.store import Store
from tests.limits import UNPACED

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop (fixtures are sync; the servers run in their own threads)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class Site(msgspec.Struct):
    location_id: str
    api_key: str


class Harness:
    """What a test drives: the gateway's URL, one key per location, and the emulator behind it."""

    def __init__(
        self,
        base_url: str,
        sites: list[Site],
        emulator: Emulator,
        emulator_url: str,
        database_url: str,
        keyring: Keyring,
    ) -> None:
        self.base_url = base_url
        self.sites = sites
        self.emulator = emulator
        self.emulator_url = emulator_url
        self.database_url = database_url
        self.keyring = keyring

    def client(self, site: int = 0, **headers: str) -> httpx.Client:
        h = {"x-api-key": self.sites[site].api_key, **headers}
        return httpx.Client(base_url=self.base_url, headers=h, timeout=30)

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)


def two_business_seed() -> EmulatorSeed:
    seed = default_seed()
    seed.businesses = [SeedBusiness(name="North Clinic"), SeedBusiness(name="South Clinic")]
    return seed


async def _provision(
    database_url: str, keyring: Keyring, emulator: Emulator, emulator_url: str, businesses: int, time_zone: str
) -> list[Site]:
    store = await Store.open(database_url, keyring)
    try:
        sites = []
        for index in range(businesses):
            try:
                settings, credentials = emulator.location_config(emulator_url, business_index=index)
            except IndexError:
                break  # an emulator that seeds one clinic only
            loc = await store.create_location(
                emr=emulator.slug,
                name=f"Site {index}",
                settings_json=settings,
                credentials_json=credentials,
                time_zone=time_zone,
            )
            issued = await store.issue_key(loc.id)
            sites.append(Site(location_id=loc.id, api_key=issued.secret))
        return sites
    finally:
        await store.close()


@contextlib.contextmanager
def running_harness(
    slug: str,
    database_url: str,
    keyring: Keyring,
    overrides: dict[str, Any] | None = None,
    emulator: Emulator | None = None,
) -> Iterator[Harness]:
    """A live gateway in front of the `slug` EMR's emulator (two clinics of one account where it can seed two);
    `emulator` replaces the default one, e.g. to switch an EMR behaviour the notes leave open."""
    seed = two_business_seed()
    emulator = emulator or EMULATORS[slug](seed)
    emulator_thread = ServerThread(emulator.app())
    emulator_url = emulator_thread.start()
    try:
        sites = run_sync(
            _provision(database_url, keyring, emulator, emulator_url, len(seed.businesses), seed.time_zone)
        )
        config = GatewayConfig(
            **{
                "database_url": database_url,
                "emr_timeout_seconds": 2.0,
                "rate_limit_per_minute": 100_000,
                "emr_rate_limits": UNPACED,
                **(overrides or {}),
            }
        )
        gateway_thread = ServerThread(create_app(config, keyring))
        base_url = gateway_thread.start()
        try:
            yield Harness(base_url, sites, emulator, emulator_url, database_url, keyring)
        finally:
            gateway_thread.stop()
    finally:
        emulator_thread.stop()


@pytest.fixture
def harness(database_url: str, keyring: Keyring, request: pytest.FixtureRequest) -> Iterator[Harness]:
    """Cliniko. `@pytest.mark.gateway_config(field=value)` overrides the gateway's config for one test."""
    marker = request.node.get_closest_marker("gateway_config")
    with running_harness("cliniko", database_url, keyring, marker.kwargs if marker else None) as h:
        yield h

"""The Jane rig: the emulator over real HTTP (evidenced catalog shape, or the booking page's older one), a settable
clock, and adapters built the way the gateway builds them."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapters.emulation import EmulatorSeed, Fault, FaultKind, SeedBusiness, ServerThread, default_seed
from adapters.http import RetryPolicy
from adapters.jane.adapter import JaneAdapter
from adapters.jane.emulator import JaneEmulator
from gateway.emr import build_adapter
from schemas.commands import BookCommand
from schemas.patients import PatientQuery

PATIENCE = 0.6  # seconds a write whose answer was lost is watched for (the gateway's default is twice its timeout)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    emulator: JaneEmulator
    clock: Clock
    base_url: str
    http: httpx.AsyncClient
    seed: EmulatorSeed

    def adapter(
        self, business_index: int = 0, credentials: bytes | None = None, patience: float = PATIENCE
    ) -> JaneAdapter:
        settings, good = self.emulator.location_config(self.base_url, business_index)
        adapter = build_adapter(
            "jane",
            settings,
            credentials or good,
            http=self.http,
            location_id="loc",
            time_zone=self.seed.time_zone,
            write_patience_seconds=patience,
        )
        assert isinstance(adapter, JaneAdapter)
        adapter.retry = RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.002, jitter=0.001)
        return adapter

    async def command(self, adapter: JaneAdapter, days_ahead: int = 2, hour: int = 10) -> BookCommand:
        practitioner = (await adapter.list_practitioners())[0]
        service = sorted(await adapter.list_services(), key=lambda s: s.duration_minutes)[0]
        [patient] = await adapter.find_patients(PatientQuery(email="jane.citizen@example.com"))
        zone = ZoneInfo(self.seed.time_zone)
        day = dt.datetime.now(zone).date() + dt.timedelta(days=days_ahead)
        start = dt.datetime.combine(day, dt.time(hour), tzinfo=zone)
        return BookCommand(patient_id=patient.id, practitioner_id=practitioner.id, service_id=service.id, start=start)

    async def recorded(self, method: str, path_prefix: str, count: int = 1) -> None:
        """Wait until the emulator has recorded `count` such requests: a 204 reaches the client before its record."""
        for _ in range(100):
            sent = [e for e in self.emulator.traffic.exchanges if e.method == method and e.path.startswith(path_prefix)]
            if len(sent) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the emulator recorded fewer than {count} {method} {path_prefix}")

    def fault(self, kind: FaultKind, method: str, path_prefix: str, **options: int | str) -> None:
        self.emulator.faults.add(Fault(kind=kind, method=method, path_prefix=path_prefix, **options))  # type: ignore[arg-type]


async def _rig(legacy_catalog: bool) -> AsyncIterator[Rig]:
    seed = default_seed()
    seed.businesses.append(SeedBusiness(name="Second Site"))
    clock = Clock()
    emulator = JaneEmulator(seed, clock=clock, hold_seconds=600, legacy_catalog=legacy_catalog)
    server = ServerThread(emulator.app())
    base_url = server.start()
    http = httpx.AsyncClient(timeout=httpx.Timeout(2.0))
    try:
        yield Rig(emulator, clock, base_url, http, seed)
    finally:
        await http.aclose()
        server.stop()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for made in _rig(legacy_catalog=False):
        yield made


@pytest.fixture
async def legacy_rig() -> AsyncIterator[Rig]:
    """The booking page's catalog shape (`treatment_duration` seconds, `treatment_ids`), for the adapter's fallbacks."""
    async for made in _rig(legacy_catalog=True):
        yield made

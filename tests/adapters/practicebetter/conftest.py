"""Practice Better emulator + adapter over real HTTP on loopback, in either of the emulator's behaviours."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest

from adapters.base import AdapterContext
from adapters.emulation import SeedBusiness, ServerThread, default_seed
from adapters.pacing import LocalBudget, paced_client
from adapters.practicebetter.adapter import PracticeBetterAdapter
from adapters.practicebetter.emulator import PracticeBetterEmulator
from adapters.practicebetter.settings import PracticeBetterCredentials, PracticeBetterSettings
from schemas.patients import PatientQuery
from tests.contract.conftest import CLIENT_TIMEOUT, FAST_RETRY, LOCATION_ID, PATIENCE

SEEDED_EMAIL = "jane.citizen@example.com"

# (duration unit, sessionDate mode): the emulator's default (what the production integrator observed), then the
# swagger readers' reading.
MODES = [("seconds", "wall_time"), ("minutes", "utc")]
DEFAULT_MODE = MODES[0]


@dataclass
class PB:
    emulator: PracticeBetterEmulator
    base_url: str
    http: httpx.AsyncClient
    budget: LocalBudget = field(default_factory=LocalBudget)  # one practice's budget, shared by its adapters

    def adapter(
        self,
        business_index: int = 0,
        credentials: bytes | None = None,
        *,
        paced: bool = False,
        defaults: bool = False,
        **settings: Any,
    ) -> PracticeBetterAdapter:
        """`paced`: behind Practice Better's documented budget, as the gateway builds it (adapters.pacing).
        `defaults`: every setting at its default (only the emulator's URL), not as `location_config` configures it."""
        settings_json, credentials_json = self.emulator.location_config(self.base_url, business_index)
        decoded = msgspec.json.decode(settings_json, type=dict[str, Any])
        if defaults:
            decoded = {"base_url": decoded["base_url"]}
        limits = PracticeBetterAdapter.rate_limits
        http = paced_client(self.http, self.budget, "pb", limits, max_wait=5.0, emr="Practice Better")
        adapter = PracticeBetterAdapter(
            msgspec.convert({**decoded, **settings}, PracticeBetterSettings),
            msgspec.json.decode(credentials or credentials_json, type=PracticeBetterCredentials),
            http if paced else self.http,
            AdapterContext(
                location_id=LOCATION_ID, time_zone=self.emulator.seed.time_zone, write_patience_seconds=PATIENCE
            ),
        )
        adapter.retry = FAST_RETRY
        return adapter

    def requests(self, method: str, path: str) -> int:
        return sum(1 for e in self.emulator.exchanges if e.method == method and e.path == path)

    async def ids(self, adapter: PracticeBetterAdapter | None = None) -> tuple[str, str, str]:
        """(practitioner, the 30-minute service, the seeded client) of the first practice, through an adapter."""
        adapter = adapter or self.adapter()
        practitioner = (await adapter.list_practitioners())[0].id
        service = min(await adapter.list_services(), key=lambda s: s.duration_minutes).id
        [patient] = await adapter.find_patients(PatientQuery(email=SEEDED_EMAIL))
        return practitioner, service, patient.id


@pytest.fixture
def pb_emulator(request: pytest.FixtureRequest) -> Iterator[tuple[PracticeBetterEmulator, str]]:
    options = getattr(request, "param", {})
    seed = default_seed()
    seed.businesses = [SeedBusiness(name="North Practice"), SeedBusiness(name="South Practice")]
    emulator = PracticeBetterEmulator(seed, **options)
    server = ServerThread(emulator.app())
    try:
        yield emulator, server.start()
    finally:
        server.stop()


@pytest.fixture
async def pb(pb_emulator: tuple[PracticeBetterEmulator, str]) -> AsyncIterator[PB]:
    emulator, base_url = pb_emulator
    async with httpx.AsyncClient(timeout=httpx.Timeout(CLIENT_TIMEOUT)) as http:
        yield PB(emulator=emulator, base_url=base_url, http=http)

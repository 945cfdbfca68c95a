"""Halaxy emulator + adapter over real HTTP on loopback (two clinics of one practice), in any emulator behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from adapters.base import AdapterContext
from adapters.emulation import SeedBusiness, ServerThread, default_seed
from adapters.halaxy.adapter import HalaxyAdapter
from adapters.halaxy.emulator import HalaxyEmulator
from adapters.halaxy.settings import HalaxyCredentials, HalaxySettings
from adapters.tokens import TokenCache
from schemas.patients import PatientQuery
from tests.contract.conftest import CLIENT_TIMEOUT, FAST_RETRY, LOCATION_ID, PATIENCE

SEEDED_EMAIL = "jane.citizen@example.com"
TOKEN = "/main/oauth/token"


@dataclass
class HX:
    emulator: HalaxyEmulator
    base_url: str
    http: httpx.AsyncClient

    def adapter(
        self, clinic: int = 0, credentials: bytes | None = None, *, tokens: TokenCache | None = None, **settings: Any
    ) -> HalaxyAdapter:
        settings_json, credentials_json = self.emulator.location_config(self.base_url, clinic)
        decoded = msgspec.json.decode(settings_json, type=dict[str, Any])
        adapter = HalaxyAdapter(
            msgspec.convert({**decoded, **settings}, HalaxySettings),
            msgspec.json.decode(credentials or credentials_json, type=HalaxyCredentials),
            self.http,
            AdapterContext(
                location_id=LOCATION_ID, time_zone=self.emulator.seed.time_zone, write_patience_seconds=PATIENCE
            ),
        )
        adapter.retry = FAST_RETRY
        if tokens is not None:
            adapter.client.tokens = tokens
        return adapter

    def requests(self, method: str, path: str) -> int:
        return sum(1 for e in self.emulator.exchanges if e.method == method and e.path == path)

    def api(self) -> httpx.Client:
        """Halaxy's API as any client sees it (a token minted with the practice's credentials)."""
        _, credentials = self.emulator.location_config(self.base_url)
        creds = msgspec.json.decode(credentials)
        grant = {"grant_type": "client_credentials", **{k: creds[k] for k in ("client_id", "client_secret")}}
        token = httpx.post(f"{self.base_url}/main/oauth/token", json=grant, timeout=10).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        return httpx.Client(base_url=f"{self.base_url}/main", headers=headers, timeout=10)

    async def ids(self, adapter: HalaxyAdapter | None = None) -> tuple[str, str, str]:
        """(practitioner role, the 30-minute appointment type, the seeded patient) of the first clinic."""
        adapter = adapter or self.adapter()
        practitioner = (await adapter.list_practitioners())[0].id
        service = min(await adapter.list_services(), key=lambda s: s.duration_minutes).id
        [patient] = await adapter.find_patients(PatientQuery(email=SEEDED_EMAIL))
        return practitioner, service, patient.id


@pytest.fixture
def hx_emulator(request: pytest.FixtureRequest) -> Iterator[tuple[HalaxyEmulator, str]]:
    options = getattr(request, "param", {})
    seed = default_seed()
    seed.businesses = [SeedBusiness(name="North Clinic"), SeedBusiness(name="South Clinic")]
    emulator = HalaxyEmulator(seed, **options)
    server = ServerThread(emulator.app())
    try:
        yield emulator, server.start()
    finally:
        server.stop()


@pytest.fixture
async def hx(hx_emulator: tuple[HalaxyEmulator, str]) -> AsyncIterator[HX]:
    emulator, base_url = hx_emulator
    async with httpx.AsyncClient(timeout=httpx.Timeout(CLIENT_TIMEOUT)) as http:
        yield HX(emulator=emulator, base_url=base_url, http=http)

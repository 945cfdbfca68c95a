"""The FHIR emulator served over real HTTP in either dialect, with every exchange held to FHIR R4 afterwards
(`tests.fhir_conformance`): both the emulator's answers and what its clients sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from adapters.base import AdapterContext
from adapters.emulation import Exchange, ServerThread, default_seed
from adapters.fhir.adapter import FhirAdapter
from adapters.fhir.emulator import BASE, TOKEN_PATH, Dialect, FhirEmulator
from adapters.fhir.settings import FhirCredentials, FhirSettings
from tests.contract.conftest import FAST_RETRY, LOCATION_ID, PATIENCE
from tests.fhir_conformance import assert_fhir_exchanges

FHIR_JSON = "application/fhir+json"


class Served:
    """A running emulator, a FHIR client on it (static bearer) and the exchanges a test sent on purpose unfit."""

    def __init__(self, emulator: FhirEmulator, root: str) -> None:
        self.emulator = emulator
        self.root = root
        self.base = root + BASE
        self.http = httpx.Client(
            base_url=self.base,
            headers={"Authorization": f"Bearer {emulator.static_token}", "Accept": FHIR_JSON},
            timeout=10,
        )
        self.unfit: set[int] = set()  # indexes of exchanges whose request body is deliberately not FHIR

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def send(self, method: str, path: str, body: Any, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return self.http.request(method, path, content=content, headers={"Content-Type": FHIR_JSON, **headers})

    def send_unfit(self, method: str, path: str, body: Any, **headers: str) -> httpx.Response:
        """A request whose body is meant to be refused: only the answer is held to FHIR."""
        self.unfit.add(len(self.emulator.exchanges))
        return self.send(method, path, body, **headers)

    def first(self, path: str, **params: Any) -> dict[str, Any]:
        entries = self.json(path, **params).get("entry", [])
        assert entries, f"nothing at {path} {params}"
        resource: dict[str, Any] = entries[0]["resource"]
        return resource

    def ids(self, path: str, **params: Any) -> list[str]:
        return [e["resource"]["id"] for e in self.json(path, **params).get("entry", [])]

    def exchanges(self) -> list[Exchange]:
        found = self.emulator.exchanges
        return [msgspec.structs.replace(e, request_body=b"") if i in self.unfit else e for i, e in enumerate(found)]

    def conform(self) -> dict[str, int]:
        return assert_fhir_exchanges(self.exchanges(), skip_prefixes=(TOKEN_PATH,))

    def adapter(self, http: httpx.AsyncClient, *, credentials: bytes | None = None, **settings: Any) -> FhirAdapter:
        settings_json, credentials_json = self.emulator.location_config(self.root)
        decoded = msgspec.json.decode(settings_json, type=dict[str, Any])
        adapter = FhirAdapter(
            msgspec.convert({**decoded, **settings}, FhirSettings),
            msgspec.json.decode(credentials or credentials_json, type=FhirCredentials),
            http,
            AdapterContext(
                location_id=LOCATION_ID, time_zone=self.emulator.seed.time_zone, write_patience_seconds=PATIENCE
            ),
        )
        adapter.retry = FAST_RETRY
        return adapter

    def close(self) -> None:
        self.http.close()


def serve(emulator: FhirEmulator) -> Iterator[Served]:
    server = ServerThread(emulator.app())
    served = Served(emulator, server.start())
    try:
        yield served
        served.conform()  # every test's traffic, answers and requests alike, is FHIR R4
    finally:
        served.close()
        server.stop()


@pytest.fixture(params=["ihe", "rest"])
def fhir(request: pytest.FixtureRequest) -> Iterator[Served]:
    dialect: Dialect = request.param
    yield from serve(FhirEmulator(default_seed(), dialect=dialect))


@pytest.fixture
def ihe() -> Iterator[Served]:
    yield from serve(FhirEmulator(default_seed(), dialect="ihe"))


@pytest.fixture
def rest() -> Iterator[Served]:
    yield from serve(FhirEmulator(default_seed(), dialect="rest"))

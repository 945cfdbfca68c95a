"""The SimplePractice emulator on loopback and the adapter built as the gateway builds it, shared by this package's
tests; plus helpers that put many records straight into the emulator's state (the lists a busy practice has)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest

from adapters.emulation import EmulatorSeed, SeedBusiness, SeedPatient, SeedPractitioner, SeedService, ServerThread
from adapters.http import RetryPolicy
from adapters.simplepractice.adapter import SimplePracticeAdapter
from adapters.simplepractice.emulator import AppointmentRec, ClientRec, SimplePracticeEmulator
from gateway.emr import build_adapter
from schemas.commands import BookCommand
from schemas.patients import PatientQuery

ZONE = "America/New_York"
PATIENCE = 1.5  # seconds a write whose answer was lost is watched for (the gateway's default is 40)
FAST = RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.002, jitter=0.001)


def seed() -> EmulatorSeed:
    return EmulatorSeed(
        time_zone=ZONE,
        businesses=[SeedBusiness(name="Main Street Office"), SeedBusiness(name="Telehealth")],
        practitioners=[SeedPractitioner(first_name="Dana", last_name="Ruiz", email="therapist@example.com")],
        services=[SeedService(name="Psychiatric Diagnostic Evaluation", duration_minutes=50, code="90791")],
        patients=[SeedPatient(first_name="John", last_name="Doe", email="john@example.com", phone="(212) 555-0147")],
    )


@dataclass
class Env:
    emulator: SimplePracticeEmulator
    base_url: str
    http: httpx.AsyncClient

    def adapter(
        self,
        office: int = 0,
        *,
        credentials: bytes | None = None,
        time_zone: str = ZONE,
        http: httpx.AsyncClient | None = None,
        patience: float = PATIENCE,
        **settings: str,
    ) -> SimplePracticeAdapter:
        settings_json, credentials_json = self.emulator.location_config(self.base_url, office)
        merged = {**msgspec.json.decode(settings_json), **settings}
        adapter = build_adapter(
            "simplepractice",
            msgspec.json.encode(merged),
            credentials or credentials_json,
            http=http or self.http,
            location_id=f"loc_sp_{office}",
            time_zone=time_zone,
            write_patience_seconds=patience,
        )
        assert isinstance(adapter, SimplePracticeAdapter)
        adapter.retry = FAST
        return adapter

    async def control(self, path: str, body: object | None = None) -> None:
        response = await self.http.post(f"{self.base_url}/_emulator/{path}", json=body)
        assert response.status_code == 204, response.text

    def requests(self, method: str, path: str) -> list[dict[str, str]]:
        """The query parameters of each request the emulator received for `method path`, in order."""
        return [
            dict(httpx.QueryParams(x.query)) for x in self.emulator.exchanges if x.method == method and x.path == path
        ]

    def add_clients(self, count: int, *, last_name: str, updated: dt.datetime) -> list[str]:
        """`count` clients straight into the emulator, last changed at `updated` (one second apart)."""
        em = self.emulator
        ids: list[str] = []
        with em._lock:
            for n in range(count):
                stamp = updated + dt.timedelta(seconds=n)
                record = ClientRec(
                    em._new_id(9_000_000), f"Pat{n:03d}", last_name, [f"pat{n:03d}@example.com"], [], None,
                    "active", stamp, stamp,
                )  # fmt: skip
                em.clients[record.id] = record
                ids.append(record.id)
        return ids

    def add_appointments(
        self, count: int, *, client_id: str, first: dt.datetime, updated: dt.datetime | None = None, office: int = 0
    ) -> list[str]:
        """`count` 50-minute appointments of the seeded clinician, an hour apart from `first`."""
        em = self.emulator
        ids: list[str] = []
        with em._lock:
            [clinician] = list(em.clinicians)
            office_id = list(em.offices)[office]
            for n in range(count):
                start = (first + dt.timedelta(hours=n)).astimezone(dt.UTC)
                stamp = (updated or start) + dt.timedelta(seconds=n)
                record = AppointmentRec(
                    em._new_id(70_000_000), client_id, clinician, office_id, "90791", start,
                    start + dt.timedelta(minutes=50), stamp, stamp,
                )  # fmt: skip
                em.appointments[record.id] = record
                ids.append(record.id)
        return ids


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    emulator = SimplePracticeEmulator(seed(), rate_limit_per_minute=1000)
    server = ServerThread(emulator.app())
    base_url = server.start()
    http = httpx.AsyncClient(timeout=5)
    try:
        yield Env(emulator, base_url, http)
    finally:
        await http.aclose()
        server.stop()


async def booking(adapter: SimplePracticeAdapter, start: dt.datetime) -> BookCommand:
    [clinician] = await adapter.list_practitioners()
    [client] = await adapter.find_patients(PatientQuery(email="john@example.com"))
    return BookCommand(patient_id=client.id, practitioner_id=clinician.id, service_id="90791", start=start)

"""The contract harness: each param is one EMR's emulator served over real HTTP, and its adapter built the way the
gateway builds it (stored JSON bytes -> `gateway.emr.build_adapter`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.base import Capability, EMRAdapter
from adapters.emulation import Emulator, EmulatorSeed, EmulatorStats, Fault, FaultKind, ServerThread, default_seed
from adapters.emulators import EMULATORS
from adapters.fhir.emulator import FhirEmulator
from adapters.http import RetryPolicy, UsesRetryPolicy
from adapters.transport import EMRTransport
from gateway.emr import build_adapter
from schemas.commands import AvailabilityQuery, BookCommand
from schemas.patients import PatientQuery

FAST_RETRY = RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.004, jitter=0.001)
CLIENT_TIMEOUT = 0.75  # seconds; the latency faults below are twice that
PATIENCE = 2 * CLIENT_TIMEOUT  # how long a write whose answer was lost is watched for (the gateway's default ratio)
SLOW_MS = 1500
LOCATION_ID = "loc_contract"

AnyAdapter = EMRAdapter[Any, Any]


@dataclass
class Booking:
    """Ids to book with, found through the adapter itself (the suite knows no EMR's ids)."""

    practitioner_id: str
    other_practitioner_id: str | None
    service_id: str
    duration: dt.timedelta
    patient_id: str
    patient_email: str


@dataclass
class Harness:
    slug: str
    seed: EmulatorSeed
    emulator: Emulator
    base_url: str
    http: httpx.AsyncClient
    adapter: AnyAdapter
    _booking: Booking | None = field(default=None)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.seed.time_zone)

    def build(self, *, credentials: bytes | None = None, business_index: int = 0) -> AnyAdapter:
        settings_json, credentials_json = self.emulator.location_config(self.base_url, business_index)
        adapter = build_adapter(
            self.slug,
            settings_json,
            credentials if credentials is not None else credentials_json,
            http=self.http,
            location_id=LOCATION_ID,
            time_zone=self.seed.time_zone,
            write_patience_seconds=PATIENCE,
        )
        if isinstance(adapter, UsesRetryPolicy):
            adapter.retry = FAST_RETRY
        return adapter

    @property
    def attempts(self) -> int:
        return self.adapter.retry.attempts if isinstance(self.adapter, UsesRetryPolicy) else 1

    def requires(self, *capabilities: Capability) -> None:
        missing = [c.value for c in capabilities if not self.adapter.supports(c)]
        if missing:
            pytest.skip(f"{self.slug} lacks {', '.join(missing)}")

    async def fault(self, kind: FaultKind, *, method: str | None = None, count: int = 1, **options: int | str) -> None:
        fault = msgspec.convert({"kind": kind, "method": method, "count": count, **options}, Fault)
        response = await self.http.post(f"{self.base_url}/_emulator/faults", content=msgspec.json.encode(fault))
        assert response.status_code == 204, response.text

    async def clear_faults(self) -> None:
        (await self.http.delete(f"{self.base_url}/_emulator/faults")).raise_for_status()

    async def stats(self) -> EmulatorStats:
        response = await self.http.get(f"{self.base_url}/_emulator/stats")
        response.raise_for_status()
        return msgspec.json.decode(response.content, type=EmulatorStats)

    async def booking(self) -> Booking:
        """A practitioner, a service and the seeded patient, looked up through the adapter's own catalog."""
        self.requires(Capability.CATALOG, Capability.FIND_PATIENT_BY_EMAIL)
        if self._booking is None:
            practitioners = await self.adapter.list_practitioners()
            services = sorted(await self.adapter.list_services(), key=lambda s: s.duration_minutes)
            email = self.seed.patients[0].email
            assert email is not None
            patients = await self.adapter.find_patients(PatientQuery(email=email))
            assert practitioners
            assert services
            assert len(patients) == 1
            self._booking = Booking(
                practitioner_id=practitioners[0].id,
                other_practitioner_id=practitioners[1].id if len(practitioners) > 1 else None,
                service_id=services[0].id,
                duration=dt.timedelta(minutes=services[0].duration_minutes),
                patient_id=patients[0].id,
                patient_email=email,
            )
        return self._booking

    def local(self, days_ahead: int, hour: int, minute: int = 0) -> dt.datetime:
        """A wall time in the clinic's zone, `days_ahead` days from today there (inside the seeded opening hours)."""
        day = dt.datetime.now(self.zone).date() + dt.timedelta(days=days_ahead)
        return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=self.zone)

    async def book(self, days_ahead: int = 2, hour: int = 10, minute: int = 0, **changes: str) -> BookCommand:
        return await self.book_at(self.local(days_ahead, hour, minute), **changes)

    async def book_at(self, start: dt.datetime, **changes: str) -> BookCommand:
        booking = await self.booking()
        return BookCommand(
            patient_id=changes.get("patient_id", booking.patient_id),
            practitioner_id=changes.get("practitioner_id", booking.practitioner_id),
            service_id=changes.get("service_id", booking.service_id),
            start=start,
        )

    def availability_query(self, booking: Booking, days_ahead: int, from_hour: int, to_hour: int) -> AvailabilityQuery:
        return AvailabilityQuery(
            practitioner_id=booking.practitioner_id,
            service_id=booking.service_id,
            start_from=self.local(days_ahead, from_hour),
            start_to=self.local(days_ahead, to_hour),
        )


# Another dialect of one adapter, run as its own param: param id -> (adapter slug, emulator factory).
DIALECTS: dict[str, tuple[str, Callable[[EmulatorSeed], Emulator]]] = {
    "fhir-rest": ("fhir", lambda seed: FhirEmulator(seed, dialect="rest")),  # plain REST: Schedule/Slot, no $book
}


@pytest.fixture(params=[*sorted(EMULATORS), *DIALECTS])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    slug, factory = DIALECTS[request.param] if request.param in DIALECTS else (request.param, EMULATORS[request.param])
    seed = default_seed()
    emulator = factory(seed)
    server = ServerThread(emulator.app())
    base_url = server.start()
    # The gateway's own EMR transport (aiohttp underneath): its failure mapping decides "nothing was sent".
    http = httpx.AsyncClient(timeout=httpx.Timeout(CLIENT_TIMEOUT), transport=EMRTransport())
    try:
        h = Harness(slug=slug, seed=seed, emulator=emulator, base_url=base_url, http=http, adapter=None)  # type: ignore[arg-type]
        h.adapter = h.build()
        yield h
    finally:
        await http.aclose()
        server.stop()

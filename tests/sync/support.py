"""Helpers: edit the clinic "in Cliniko's own screens" (the emulator's /v1 API), run ticks, read the outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import msgspec
from sqlalchemy import select

from gateway.config import GatewayConfig
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.storage.outbox import decode_event
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store
from gateway.storage.tables import events
from gateway.sync.immediate import process_tick
from gateway.sync.scheduler import tick
from schemas.webhooks import EventType, WebhookEvent
from tests.gateway.conftest import Harness, run_sync
from tests.limits import UNPACED

TZ = "Australia/Melbourne"
T = TypeVar("T")


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(TZ)).astimezone(UTC)


def day_ahead(days: int = 2) -> date:
    return datetime.now(ZoneInfo(TZ)).date() + timedelta(days=days)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClinicScreens:
    """What a receptionist does in Cliniko itself, outside the gateway."""

    def __init__(self, h: Harness, site: int = 0) -> None:
        settings, credentials = h.emulator.location_config(h.emulator_url, site)
        self.business_id: str = msgspec.json.decode(settings)["business_id"]
        self.emulator_url = h.emulator_url
        key = msgspec.json.decode(credentials)["api_key"]
        self.http = httpx.Client(
            base_url=f"{h.emulator_url}/v1",
            auth=(key, ""),
            headers={"User-Agent": "tests (tests@example.com)", "Accept": "application/json"},
            timeout=30,
        )
        self.patient_id = self.get("/patients")["patients"][0]["id"]
        practitioners = self.get("/practitioners")["practitioners"]
        self.practitioner_id = next(p["id"] for p in practitioners if p["first_name"] == "Alice")
        self.other_practitioner_id = next(p["id"] for p in practitioners if p["first_name"] == "Ben")
        types = self.get("/appointment_types")["appointment_types"]
        self.type_id = next(t["id"] for t in types if t["name"] == "Standard Consultation")

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()

    def book(self, start: datetime) -> str:
        r = self.http.post(
            "/individual_appointments",
            json={
                "patient_id": self.patient_id,
                "practitioner_id": self.practitioner_id,
                "appointment_type_id": self.type_id,
                "business_id": self.business_id,
                "starts_at": stamp(start),
            },
        )
        r.raise_for_status()
        return str(r.json()["id"])

    def move(self, appointment_id: str, start: datetime) -> None:
        body = {"starts_at": stamp(start), "ends_at": None}  # a null end: Cliniko recomputes it from the type
        r = self.http.patch(f"/individual_appointments/{appointment_id}", json=body)
        r.raise_for_status()

    def edit_notes(self, appointment_id: str, notes: str) -> None:
        r = self.http.patch(f"/individual_appointments/{appointment_id}", json={"notes": notes})
        r.raise_for_status()

    def cancel(self, appointment_id: str) -> None:
        r = self.http.patch(f"/individual_appointments/{appointment_id}/cancel", json={"cancellation_reason": 50})
        r.raise_for_status()

    def mark_no_show(self, appointment_id: str) -> None:
        """Cliniko's API has `did_not_arrive` read-only; the emulator's control route stands in for the UI."""
        r = self.http.post(
            f"{self.emulator_url}/_emulator/individual_appointments/{appointment_id}/attendance",
            json={"did_not_arrive": True},
        )
        r.raise_for_status()

    def close(self) -> None:
        self.http.close()


class Sync:
    """Runs the scheduler against the harness's database, as the worker process would, and reads the outbox."""

    def __init__(self, h: Harness, **config: Any) -> None:
        self.h = h
        self.config = GatewayConfig(
            **{"database_url": h.database_url, "poll_seconds": 0.0, "emr_rate_limits": UNPACED, **config}
        )
        self.seen = 0

    def run(self, work: Callable[[Store, httpx.AsyncClient], Awaitable[T]]) -> T:
        async def go() -> T:
            store = await Store.open(self.h.database_url, self.h.keyring)
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    return await work(store, http)
            finally:
                await store.close()

        return run_sync(go())

    def tick(self, worker_id: str = "worker-1") -> int:
        return self.run(lambda store, http: tick(store, http, self.config, worker_id))

    def location(self, site: int = 0) -> LocationRecord:
        async def get(store: Store, _http: httpx.AsyncClient) -> LocationRecord:
            found = await store.get_location(self.h.sites[site].location_id)
            assert found is not None
            return found

        return self.run(get)

    def events(self) -> list[WebhookEvent]:
        """Every event in the outbox, oldest first."""

        async def read(store: Store, _http: httpx.AsyncClient) -> list[WebhookEvent]:
            async with store.engine.connect() as conn:
                rows = (await conn.execute(select(events.c.payload).order_by(events.c.created_at))).scalars().all()
            return [decode_event(row) for row in rows]

        return self.run(read)

    def build_gateway_writes(self) -> int:
        """What the worker does right after a write through the gateway: build its snapshot and publish its events
        (the harness's gateway runs no worker, so tests do it here)."""

        async def build(store: Store, http: httpx.AsyncClient) -> int:
            runtime = Runtime(self.config, store, http, Metrics())
            total = 0
            while taken := await process_tick(runtime, "test-worker"):
                total += taken
            return total

        return self.run(build)

    def new_events(self) -> list[WebhookEvent]:
        """Events published since the last call (after the gateway's own writes have been built, as the worker
        does within a second of each write)."""
        self.build_gateway_writes()
        found = self.events()
        fresh, self.seen = found[self.seen :], len(found)
        return fresh

    def new_types(self) -> list[tuple[EventType, str]]:
        """(type, location id) of the new events: a compact thing to assert on."""
        return [(e.type, e.location_id) for e in self.new_events()]

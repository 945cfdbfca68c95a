"""The GHL side of a test: the GHL emulator on loopback, a connected location, and the push worker's ticks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import msgspec

from adapters.emulation import ServerThread
from adapters.ghl.emulator import GhlEmulator, GhlLocationSeed
from gateway.config import GatewayConfig
from gateway.ghl.destination import push
from gateway.ghl.destination.connect import Connected, configure, connect
from gateway.ghl.destination.settings import CalendarMode, GhlSettings
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.storage import ghl_destination as db
from gateway.storage.store import Store
from tests.gateway.conftest import Harness, run_sync
from tests.limits import UNPACED
from tests.sync.support import ClinicScreens, Sync

T = TypeVar("T")
FAST_RETRIES = (0.0, 0.05, 0.05, 0.05)


class GhlSide:
    """`emulator` is GHL; `location` its sub-account for harness site 0, with a calendar per practitioner."""

    def __init__(self, h: Harness, emulator: GhlEmulator | None = None, **config: Any) -> None:
        self.h = h
        self.emulator = emulator or GhlEmulator()
        self.thread = ServerThread(self.emulator.app())
        self.url = self.thread.start()
        self.seed: GhlLocationSeed = self.emulator.add_location(
            "North Clinic (GHL)",
            "Australia/Melbourne",
            [("Alice Nguyen", "alice.nguyen@example.com"), ("Ben Carter", "ben.carter@example.com")],
        )
        self.config = GatewayConfig(
            **{
                "database_url": h.database_url,
                "poll_seconds": 0.0,
                "emr_rate_limits": UNPACED,
                "webhook_retry_schedule": FAST_RETRIES,
                "webhook_retry_jitter": 0.0,
                **config,
            }
        )
        self.location_id = h.sites[0].location_id
        self.sync = Sync(h)
        self.clinic = ClinicScreens(h)

    def close(self) -> None:
        self.clinic.close()
        self.thread.stop()

    def run(self, work: Callable[[Runtime], Awaitable[T]], timeout: float = 10.0) -> T:
        async def go() -> T:
            store = await Store.open(self.h.database_url, self.h.keyring)
            try:
                async with httpx.AsyncClient(timeout=timeout) as http:
                    return await work(Runtime(self.config, store, http, Metrics()))
            finally:
                await store.close()

        return run_sync(go())

    # -- setup ------------------------------------------------------------------------------------------------

    def connect(self, settings: GhlSettings | None = None, token: str | None = None) -> Connected:
        return self.run(
            lambda rt: connect(
                rt,
                self.location_id,
                ghl_location_id=self.seed.location_id,
                token=token or self.seed.token,
                base_url=self.url,
                settings=settings,
            )
        )

    def calendars(self, mode: CalendarMode = CalendarMode.APPOINTMENTS) -> None:
        """Alice's calendar for Alice (the clinic's practitioner ids from its own screens)."""
        by_name = {c.name: c.id for c in self.seed.calendars}
        mapping = {
            self.clinic.practitioner_id: by_name["Alice Nguyen"],
            self.clinic.other_practitioner_id: by_name["Ben Carter"],
        }

        async def apply(rt: Runtime) -> None:
            connection = await db.get_connection(rt.store, self.location_id)
            assert connection is not None
            current = msgspec.json.decode(connection.settings_json, type=GhlSettings)
            await configure(
                rt, self.location_id, msgspec.structs.replace(current, calendar_mode=mode, calendars=mapping)
            )

        self.run(apply)

    # -- the worker -------------------------------------------------------------------------------------------

    def poll(self) -> None:
        """The EMR poll and the gateway-write builder, as the worker runs them."""
        self.sync.tick()
        self.sync.build_gateway_writes()

    def push(self, worker: str = "ghl-worker", rounds: int = 50, timeout: float = 10.0) -> int:
        """Push ticks until one claims nothing; returns how many pushes were claimed."""

        async def go(rt: Runtime) -> int:
            total = 0
            for _ in range(rounds):
                taken = await push.tick(rt, worker)
                if not taken:
                    break
                total += taken
            return total

        return self.run(go, timeout)

    def push_together(self, workers: int = 3) -> int:
        """Several workers ticking at once (what replicas sharing a database do)."""

        async def go(rt: Runtime) -> int:
            total = 0
            for _ in range(30):
                taken = sum(await asyncio.gather(*(push.tick(rt, f"w{i}") for i in range(workers))))
                if not taken:
                    break
                total += taken
            return total

        return self.run(go)

    def drain(self, seconds: float = 30.0, timeout: float = 10.0) -> None:
        """Pushes until nothing is pending or retrying (waiting out pauses and retry delays); `timeout` is the HTTP
        client's, so a test can make an answer that is held back count as lost."""
        deadline = time.monotonic() + seconds
        while True:
            self.push(timeout=timeout)
            counts = self.counts()
            if not any(counts.get(state, 0) for state in db.UNFINISHED):
                return
            assert time.monotonic() < deadline, counts
            time.sleep(0.2)

    def counts(self) -> dict[str, int]:
        return self.run(lambda rt: db.counts(rt.store, self.location_id))

    def set_connection(self, **values: Any) -> None:
        async def go(rt: Runtime) -> None:
            await db._set(rt.store, self.location_id, **values)

        self.run(go)

    # -- what GHL holds -----------------------------------------------------------------------------------------

    def contacts(self) -> list[dict[str, Any]]:
        return self.emulator.contact_views(self.seed.location_id)

    def events(self) -> list[dict[str, Any]]:
        return self.emulator.event_views(self.seed.location_id)

    def fields(self, contact: dict[str, Any]) -> dict[str, Any]:
        """A contact's custom field values by the gateway's key."""
        keys = {
            f["id"]: f["fieldKey"].removeprefix("contact.")
            for f in self.emulator.custom_field_views(self.seed.location_id)
        }
        return {keys[item["id"]]: item["value"] for item in contact["customFields"] if item["id"] in keys}

    def api(self, method: str, path: str, version: str = "2021-07-28", **kw: Any) -> httpx.Response:
        """GHL's own API, as the agency (or its other tools) would call it."""
        headers = {"Authorization": f"Bearer {self.seed.token}", "Version": version, "Accept": "application/json"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kw)

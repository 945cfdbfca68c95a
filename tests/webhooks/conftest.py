"""A live gateway with the background worker running, a loopback receiver, and helpers to publish events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import ServerThread
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.crypto import Keyring
from gateway.storage.outbox import new_event_id
from gateway.storage.store import Store
from gateway.webhooks.outbox import publish_now
from schemas.appointments import AppointmentStatus
from schemas.webhooks import AppointmentEventData, AppointmentSummary, EventType, WebhookEvent
from tests.gateway.conftest import Harness, _provision, run_sync, two_business_seed
from tests.limits import UNPACED
from tests.webhooks.receiver import Receiver

# Milliseconds instead of hours: the same schedule shape as production (8 attempts).
FAST = {
    "webhook_retry_schedule": (0.0, 0.01, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02),
    "webhook_retry_jitter": 0.2,
    "webhook_timeout_seconds": 1.0,
    "webhook_poll_interval_seconds": 0.02,
    "webhook_lease_seconds": 5.0,
    "webhook_allowed_subnets": ("127.0.0.0/8",),
}


class WebhookHarness(Harness):
    def publish(self, site: int = 0, event_type: EventType = EventType.APPOINTMENT_BOOKED) -> WebhookEvent:
        event = sample_event(self.sites[site].location_id, event_type)

        async def go() -> None:
            store = await Store.open(self.database_url, self.keyring)
            try:
                await publish_now(store, event)
            finally:
                await store.close()

        run_sync(go())
        return event


def sample_event(location_id: str, event_type: EventType = EventType.APPOINTMENT_BOOKED) -> WebhookEvent:
    now = datetime.now(UTC)
    appointment = AppointmentSummary(
        id="1001",
        status=AppointmentStatus.BOOKED,
        start=now,
        end=now,
        time_zone="Australia/Sydney",
        practitioner_id="p1",
        service_id="s1",
        location_id=location_id,
    )
    return WebhookEvent(
        id=new_event_id(),
        type=event_type,
        timestamp=now,
        location_id=location_id,
        emr="cliniko",
        data=AppointmentEventData(appointment=appointment),
    )


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Waits for an outcome (a bound, not a timed assertion: fast machines just pass sooner)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def wh(database_url: str, keyring: Keyring, request: pytest.FixtureRequest) -> Iterator[WebhookHarness]:
    """The gateway with its in-process worker; `@pytest.mark.gateway_config(...)` overrides FAST."""
    marker = request.node.get_closest_marker("gateway_config")
    overrides = marker.kwargs if marker else {}
    seed = two_business_seed()
    emulator = ClinikoEmulator(seed)
    emulator_thread = ServerThread(emulator.app())
    emulator_url = emulator_thread.start()
    sites = run_sync(_provision(database_url, keyring, emulator, emulator_url, len(seed.businesses), seed.time_zone))
    config = GatewayConfig(
        **{
            "database_url": database_url,
            "rate_limit_per_minute": 100_000,
            "emr_rate_limits": UNPACED,
            **FAST,
            **overrides,
        }
    )
    gateway_thread = ServerThread(create_app(config, keyring, worker=True))
    base_url = gateway_thread.start()
    try:
        yield WebhookHarness(base_url, sites, emulator, emulator_url, database_url, keyring)
    finally:
        gateway_thread.stop()
        emulator_thread.stop()

"""One appointment per request whatever the EMR does late (issue 15, finding 1), through /v1 over real HTTP in front
of the Cliniko emulator, on both backends: a create applied after the gateway gave up is adopted by the reconciler
(and a retry gets it), or cancelled when the caller had already booked again."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapters.emulation import Fault, FaultKind
from gateway.config import GatewayConfig
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.storage import operations as ops
from gateway.storage.store import Store
from gateway.usecases.operations import reconcile_tick
from tests.gateway.conftest import Harness, run_sync
from tests.gateway.test_api import active_appointments

MELBOURNE = ZoneInfo("Australia/Melbourne")
LATE_MS = 2500  # well after the gateway's patience below: it answers 504 before the EMR applies the create


def _body(hour: int) -> dict[str, Any]:
    day = datetime.now(MELBOURNE).date() + timedelta(days=3)
    return {
        "practitioner": {"email": "alice.nguyen@example.com"},
        "service": {"name": "Standard Consultation"},
        "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
        "start": f"{day}T{hour:02d}:00:00",
        "time_zone": "Australia/Melbourne",
    }


def _reconcile(h: Harness, config: Any) -> int:
    async def tick() -> int:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                return await reconcile_tick(Runtime(config, store, http, Metrics()), "test-reconciler")
        finally:
            await store.close()

    return run_sync(tick())


def _operation(h: Harness, operation_id: str) -> ops.OperationRecord:
    async def get() -> ops.OperationRecord:
        store = await Store.open(h.database_url, h.keyring)
        try:
            found = await ops.get(store, operation_id)
            assert found is not None
            return found
        finally:
            await store.close()

    return run_sync(get())


def _settle(h: Harness, config: Any, operation_id: str, state: str) -> None:
    deadline = time.monotonic() + 30
    while _operation(h, operation_id).state != state:
        assert time.monotonic() < deadline, _operation(h, operation_id)
        _reconcile(h, config)
        time.sleep(0.3)


SLOW = {"emr_timeout_seconds": 1.0, "write_patience_seconds": 0.6}


@pytest.mark.gateway_config(**SLOW)
def test_a_create_the_emr_applies_after_504_is_adopted_and_a_retry_gets_it(harness: Harness) -> None:
    harness.emulator.faults.add(Fault(kind=FaultKind.APPLY_LATE, method="POST", delay_ms=LATE_MS))
    with harness.client() as c:
        lost = c.post("/v1/appointments", json=_body(10))
        assert lost.status_code == 504, lost.text
        problem = lost.json()
        assert problem["code"] == "emr_outcome_unknown"
        operation_id = problem["operation_id"]
        assert operation_id.startswith("op_")

        config = GatewayConfig(database_url=harness.database_url, **SLOW)
        _settle(harness, config, operation_id, ops.ADOPTED)
        assert active_appointments(harness) == 1
        adopted = _operation(harness, operation_id).appointment_id

        retry = c.post("/v1/appointments", json=_body(10))  # the caller tries again, without a key
        assert retry.status_code == 201, retry.text
        assert retry.json()["id"] == adopted
        assert retry.json()["operation_id"] == operation_id
        assert active_appointments(harness) == 1


@pytest.mark.gateway_config(**SLOW)
def test_a_late_create_after_the_caller_booked_again_is_cancelled(harness: Harness) -> None:
    harness.emulator.faults.add(Fault(kind=FaultKind.APPLY_LATE, method="POST", delay_ms=LATE_MS))
    with harness.client() as c:
        lost = c.post("/v1/appointments", json=_body(12))
        assert lost.status_code == 504, lost.text
        operation_id = lost.json()["operation_id"]
        again = c.post("/v1/appointments", json=_body(12))  # before the first one has landed
        assert again.status_code == 201, again.text

        config = GatewayConfig(database_url=harness.database_url, **SLOW)
        time.sleep(LATE_MS / 1000 + 0.5)  # the first create lands now
        _settle(harness, config, operation_id, ops.UNDONE)
        assert active_appointments(harness) == 1
        kept = c.get(f"/v1/appointments/{again.json()['id']}").json()
        assert kept["status"] == "booked"

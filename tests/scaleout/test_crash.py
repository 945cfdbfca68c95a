"""A crash mid-booking (kill -9 of `serve` after the EMR applied the create): the retry finds the caller's own
booking instead of `409 slot_unavailable`, and a GoHighLevel cancel of that id works (issue 15, finding 3). Real
`serve` subprocesses in front of the Cliniko emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from adapters.emulation import Fault, FaultKind
from gateway.crypto import generate_key
from tests.ghl.conftest import workflow_body
from tests.scaleout.conftest import READY_TIMEOUT, Replicas, ServeProcess, replica_env, running_replicas

MELBOURNE = ZoneInfo("Australia/Melbourne")
LOCK = "3"  # EGW_IDEMPOTENCY_LOCK_SECONDS: how long a dead request's claim on its key and its operation lasts


def _start(days: int, hour: int) -> str:
    day = datetime.now(MELBOURNE).date() + timedelta(days=days)
    return f"{day}T{hour:02d}:00:00"


def _booking(start: str) -> dict[str, Any]:
    return {
        "practitioner": {"email": "alice.nguyen@example.com"},
        "service": {"name": "Standard Consultation"},
        "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
        "start": start,
        "time_zone": "Australia/Melbourne",
    }


def _crash_mid_create(replicas: Replicas, send: Any) -> ServeProcess:
    """Hold Cliniko's answer to the create after applying it, kill -9 the replica meanwhile, start a new one."""
    emulator = replicas.emulator
    emulator.faults.add(
        Fault(kind=FaultKind.TIMEOUT_AFTER_APPLY, method="POST", path_prefix="/v1/individual_appointments",
              delay_ms=60_000)
    )  # fmt: skip
    before = len(emulator.appointments)
    threading.Thread(target=send, daemon=True).start()
    deadline = time.monotonic() + 30
    while len(emulator.appointments) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(emulator.appointments) == before + 1, "the create never reached the EMR"
    dead = replicas.serves[0]
    dead.process.kill()  # SIGKILL: no cleanup, no outcome recorded
    dead.process.wait(timeout=10)
    emulator.faults.clear()
    env = replica_env(replicas.database_url, replicas.master_key, {"EGW_IDEMPOTENCY_LOCK_SECONDS": LOCK})
    reborn = ServeProcess("serve-reborn", env, dead.log_path.with_name("serve-reborn.log"), worker=True)
    assert reborn.wait_ready(time.monotonic() + READY_TIMEOUT), reborn.tail()
    replicas.serves.append(reborn)
    time.sleep(float(LOCK) + 0.5)  # the dead request's claim lapses
    return reborn


def _post(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the replica is killed under it
        httpx.post(url + path, json=body, headers=headers, timeout=90)


def test_a_retry_after_a_crash_finds_its_own_booking(database_url: str, tmp_path: Path) -> None:
    with running_replicas(
        database_url, generate_key("k1"), tmp_path, count=1, env={"EGW_IDEMPOTENCY_LOCK_SECONDS": LOCK}
    ) as replicas:
        headers = {"x-api-key": replicas.api_key, "Idempotency-Key": "crash-1"}
        body = _booking(_start(3, 10))
        reborn = _crash_mid_create(replicas, lambda: _post(replicas.urls[0], "/v1/appointments", body, headers))

        retry = httpx.post(f"{reborn.url}/v1/appointments", json=body, headers=headers, timeout=60)
        assert retry.status_code == 201, retry.text
        [made] = [a for a in replicas.appointments()]
        assert retry.json()["id"] == made.id
        again = httpx.post(f"{reborn.url}/v1/appointments", json=body, headers=headers, timeout=60)
        assert again.status_code == 201
        assert again.json()["id"] == made.id
        assert len(replicas.appointments()) == 1


def test_a_ghl_cancel_after_a_crash_mid_booking_reaches_the_booking(database_url: str, tmp_path: Path) -> None:
    with running_replicas(
        database_url, generate_key("k1"), tmp_path, count=1, env={"EGW_IDEMPOTENCY_LOCK_SECONDS": LOCK}
    ) as replicas:
        headers = {"x-api-key": replicas.api_key}
        start = _start(4, 11)
        book = workflow_body("ghl-crash-1", start, None, tz="Australia/Melbourne")
        reborn = _crash_mid_create(
            replicas, lambda: _post(replicas.urls[0], "/ghl/v1/appointments/book", book, headers)
        )

        cancel = workflow_body("ghl-crash-1", start, None, tz="Australia/Melbourne")
        cancelled = httpx.post(f"{reborn.url}/ghl/v1/appointments/cancel", json=cancel, headers=headers, timeout=60)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert replicas.appointments() == []
        assert len(replicas.appointments(cancelled=True)) == 1

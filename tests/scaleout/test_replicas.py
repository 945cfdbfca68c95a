"""Two `serve` replicas on one PostgreSQL, no balancer: the test sends to each. A retry or a duplicate that lands on
the other replica must still book once, because the idempotency records live in the shared database.

What is asserted is what a clinic would notice: the appointments in the EMR (the emulator's state).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.emulation import Fault, FaultKind
from tests.ghl.conftest import workflow_body
from tests.scaleout.conftest import Replicas, StartReplicas, fire_together
from tests.webhooks.conftest import wait_until

MELBOURNE = ZoneInfo("Australia/Melbourne")  # the emulator's clinic
CHICAGO = ZoneInfo("America/Chicago")  # GHL's sample sub-account
ROUNDS = 5
# Holds the winner's booking at the EMR long enough that the duplicate surely arrives while it is in flight; rounds
# without it race the two replicas as tightly as they come.
SLOW_BOOKING = Fault(kind=FaultKind.LATENCY, method="POST", path_prefix="/v1/individual_appointments", delay_ms=300)

pytestmark = pytest.mark.postgres


def local_day(zone: ZoneInfo, days: int) -> date:
    return datetime.now(zone).date() + timedelta(days=days)


def booking(start: str) -> dict[str, Any]:
    return {
        "practitioner": {"email": "alice.nguyen@example.com"},
        "service": {"name": "Standard Consultation"},
        "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
        "start": start,
        "time_zone": "Australia/Melbourne",
    }


def replayed(r: httpx.Response) -> bool:
    return bool(r.headers.get("idempotent-replayed") == "true")


def first_of_a_pair(pair: list[httpx.Response], created: int, what: str) -> httpx.Response:
    """The one answer that did the work. The other must be the documented answer to a duplicate: a replay of it
    (the first had finished) or 409 idempotency_in_flight (gateway/idempotency.py: it had not), never a second
    piece of work."""
    originals = [r for r in pair if r.status_code == created and not replayed(r)]
    assert len(originals) == 1, f"{what}: {[(r.status_code, dict(r.headers), r.text) for r in pair]}"
    (original,) = originals
    (other,) = [r for r in pair if r is not original]
    if other.status_code == 409:
        assert other.headers["content-type"].startswith("application/problem+json"), other.text
        assert other.json()["code"] == "idempotency_in_flight", other.text
    else:
        assert other.status_code == created, f"{what}: {other.status_code} {other.text}"
        assert replayed(other), f"{what}: {dict(other.headers)}"
        assert other.json() == original.json(), what
    return original


def test_one_idempotency_key_sent_to_both_replicas_at_once_books_once(replicas: Replicas) -> None:
    day = local_day(MELBOURNE, 3)
    firsts: dict[str, httpx.Response] = {}
    instants: dict[str, datetime] = {}
    bodies: dict[str, dict[str, Any]] = {}
    with replicas.client(0) as a, replicas.client(1) as b:
        for c in (a, b):  # connections open before the race, so both requests leave together
            assert c.get("/healthz").status_code == 200
        for i in range(ROUNDS):
            key = f"scaleout-{i}"
            start = datetime(day.year, day.month, day.day, 9 + i, tzinfo=MELBOURNE)
            body = bodies[key] = booking(start.replace(tzinfo=None).isoformat())
            if i % 2 == 0:
                replicas.emulator.faults.add(SLOW_BOOKING)
            headers = {"Idempotency-Key": key}
            pair = fire_together(
                [
                    partial(a.post, "/v1/appointments", json=body, headers=headers),
                    partial(b.post, "/v1/appointments", json=body, headers=headers),
                ]
            )
            firsts[key] = first_of_a_pair(pair, 201, f"round {i}")
            instants[key] = start.astimezone(UTC)
        replicas.emulator.faults.clear()
        replicas.assert_running()

        for key, first in firsts.items():
            at = replicas.appointments_at(instants[key])
            assert [appt.id for appt in at] == [first.json()["id"]], key
        assert len(replicas.appointments(cancelled=True)) == len(replicas.appointments()) == ROUNDS

        # A later retry to either replica replays the first answer and books nothing.
        for key, first in firsts.items():
            for c in (a, b):
                again = c.post("/v1/appointments", json=bodies[key], headers={"Idempotency-Key": key})
                assert again.status_code == 201, again.text
                assert replayed(again)
                assert again.json() == first.json()
    assert len(replicas.appointments(cancelled=True)) == ROUNDS


def test_a_ghl_workflow_call_and_its_retry_on_the_other_replica_book_once(replicas: Replicas) -> None:
    day = local_day(CHICAGO, 5)
    firsts: dict[str, httpx.Response] = {}
    instants: dict[str, datetime] = {}

    def wall(hour: int) -> str:
        return f"{day.isoformat()}T{hour:02d}:00:00"

    with replicas.client(0) as a, replicas.client(1) as b:
        for c in (a, b):
            assert c.get("/healthz").status_code == 200
        # Both at once. The first round is also the location's first GHL call: both replicas race to create the
        # record that owns its GHL idempotency keys.
        for i in range(ROUNDS):
            ghl_id = f"ghl-both-{i}"
            body = workflow_body(ghl_id, wall(8 + i), None)
            if i % 2 == 0:
                replicas.emulator.faults.add(SLOW_BOOKING)
            pair = fire_together(
                [
                    partial(a.post, "/ghl/v1/appointments/book", json=body),
                    partial(b.post, "/ghl/v1/appointments/book", json=body),
                ]
            )
            firsts[ghl_id] = first_of_a_pair(pair, 201, ghl_id)
            instants[ghl_id] = datetime.fromisoformat(wall(8 + i)).replace(tzinfo=CHICAGO).astimezone(UTC)
        replicas.emulator.faults.clear()

        # GHL retries (it did not see the first answer in time): the retry lands on the other replica.
        for i in range(ROUNDS):
            ghl_id = f"ghl-retry-{i}"
            body = workflow_body(ghl_id, wall(13 + i), None)
            first_replica, other_replica = (a, b) if i % 2 == 0 else (b, a)
            first = first_replica.post("/ghl/v1/appointments/book", json=body)
            assert first.status_code == 201, first.text
            assert not replayed(first)
            retry = other_replica.post("/ghl/v1/appointments/book", json=body)
            assert retry.status_code == 201, retry.text
            assert replayed(retry)
            assert retry.json() == first.json()
            firsts[ghl_id] = first
            instants[ghl_id] = datetime.fromisoformat(wall(13 + i)).replace(tzinfo=CHICAGO).astimezone(UTC)
        replicas.assert_running()

    for ghl_id, first in firsts.items():
        at = replicas.appointments_at(instants[ghl_id])
        assert [appt.id for appt in at] == [first.json()["id"]], ghl_id
    assert len(replicas.appointments(cancelled=True)) == len(replicas.appointments()) == 2 * ROUNDS


# ------------------------------------------------------------------------------------------ shared rate limits

UNKNOWN_ID = "1390053863163199999"  # each GET of it is exactly one Cliniko request (answered 404)


def test_an_api_keys_limit_holds_across_replicas(start_replicas: StartReplicas) -> None:
    replicas = start_replicas(env={"EGW_RATE_LIMIT_PER_MINUTE": "20"})
    with replicas.client(0) as a, replicas.client(1) as b:
        answers = fire_together([partial(c.get, "/v1/services") for _ in range(20) for c in (a, b)])
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    # One minute's allowance for the key, whichever replica answers (two per-process limiters would pass all 40);
    # a token refills every 3 s, so a slow machine may see one more.
    assert 20 <= len(ok) <= 21, [r.status_code for r in answers]
    assert len(ok) + len(refused) == 40
    for r in refused:
        assert r.json()["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1


def _budgeted(
    start_replicas: StartReplicas, *, per_second: float, burst: int, window_limit: int, count: int = 2
) -> Replicas:
    """`count` API replicas and a worker polling every second, sharing one Cliniko budget of `burst` + `per_second`,
    against a Cliniko that allows `window_limit` requests per 1 s window."""
    budget = {"cliniko": [{"per_second": per_second, "burst": burst}]}
    return start_replicas(
        count=count,
        emulator_options={"rate_limit_per_minute": window_limit, "rate_limit_window_seconds": 1.0},
        env={
            "EGW_EMR_RATE_LIMITS": msgspec.json.encode(budget).decode(),
            "EGW_EMR_BUDGET_MAX_WAIT_SECONDS": "120",
            "EGW_POLL_SECONDS": "1",
            "EGW_SYNC_TICK_SECONDS": "0.5",
        },
        serve_worker=False,
        worker=True,
    )


def test_one_emr_budget_for_every_replica_and_worker(start_replicas: StartReplicas) -> None:
    # Cliniko allows 10 requests per 1 s window here; the account's budget sends at most 2 + 4/s = 6 in any second,
    # shared by two API replicas and a worker polling every second. Three processes with a budget each would send
    # up to 18 a second and be answered 429.
    replicas = _budgeted(start_replicas, per_second=4.0, burst=2, window_limit=10)
    emulator = replicas.emulator

    def poll_requests() -> int:  # a poll asks for changed patients and changed appointments
        return sum(1 for e in emulator.exchanges if "updated_at" in e.query)

    wait_until(lambda: poll_requests() >= 2, timeout=60, what="the worker's first poll")
    with replicas.client(0) as a, replicas.client(1) as b:
        answers = fire_together([partial(c.get, f"/v1/appointments/{UNKNOWN_ID}") for _ in range(12) for c in (a, b)])
    assert [r.status_code for r in answers] == [404] * 24  # Cliniko's own answer for every caller, never a 429
    # The worker's next poll queued behind the replicas' requests in the same budget; it goes out after them.
    wait_until(lambda: poll_requests() >= 4, timeout=60, what="the worker's next poll")
    replicas.assert_running()
    assert emulator.stats().rate_limited == 0


def test_four_processes_leasing_budget_batches_never_exceed_the_emr_limit(start_replicas: StartReplicas) -> None:
    """Three API replicas and a worker take the account's tokens in batches (here 4 at a time) and spend them locally;
    together they still never send Cliniko more than its limit: 8 + 8/s is at most 16 in any second, which is what
    this Cliniko allows per 1 s window."""
    replicas = _budgeted(start_replicas, per_second=8.0, burst=8, window_limit=16, count=3)
    emulator = replicas.emulator
    wait_until(lambda: any("updated_at" in e.query for e in emulator.exchanges), timeout=60, what="a first poll")
    clients = [replicas.client(i) for i in range(3)]
    try:
        answers = fire_together([partial(c.get, f"/v1/appointments/{UNKNOWN_ID}") for _ in range(20) for c in clients])
    finally:
        for c in clients:
            c.close()
    assert [r.status_code for r in answers] == [404] * 60  # Cliniko's own answer for every caller, never a 429
    replicas.assert_running()
    assert emulator.stats().rate_limited == 0

"""How long a change takes to reach a subscriber as a signed webhook, and how many deliveries a worker sends a second.

Processes, all on loopback: the Cliniko emulator, the gateway (`emr-gateway serve` with its in-process worker, or
`serve --no-worker` plus `emr-gateway worker` processes for throughput), a webhook receiver (records each arrival's
time and checks its Standard Webhooks signature) and this driver. Arrival times are `time.monotonic()` in the
receiver and change times `time.monotonic()` here: on Linux that is one clock (CLOCK_MONOTONIC) for every process
on the host. Numbers go to a table and to `bench/results/webhooks-<timestamp>.json`; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.overhead import (
    EMR_BUDGETS_OFF,
    HUGE,
    PG_ENVS,
    RESULTS_DIR,
    USER_AGENT,
    ChildProcess,
    EmulatorInfo,
    Fixture,
    Stat,
    _cpu_seconds,
    _direct_appointment,
    _fixture,
    _free_port,
    _percentile,
    _pg_dsn,
    _provision,
    _slot_start,
    _start_emulator,
    _stat,
    database,
    emulator_process,
    machine_info,
    write_report,
)

LOOPBACK = "127.0.0.0/8"
BOOKED, CANCELLED = "appointment.booked", "appointment.cancelled"

# ---------------------------------------------------------------------------------------------- messages


class Arrival(msgspec.Struct, array_like=True):
    """One POST the receiver got."""

    hook: str  # which subscription (the receiver serves one path per subscription)
    webhook_id: str
    type: str
    appointment_id: str | None
    arrived: float  # time.monotonic() in the receiver, before the signature check
    verified: bool  # the signature checked out against that subscription's secret


class Change(msgspec.Struct):
    """One change the driver made, and the event it should cause."""

    event_type: str
    appointment_id: str
    started: float  # time.monotonic() just before the request that made the change
    answered: float  # … and when it answered


class LatencyCase(msgspec.Struct):
    name: str
    source: str  # "emr": edits on the emulator's own API; "gateway": writes through POST /v1/appointments
    env: dict[str, str]  # gateway settings that differ from the defaults
    runs: int
    changes: int  # per run, alternately a booking and the cancellation of that booking
    window_seconds: float  # the changes are spread uniformly at random over this long
    drain_seconds: float  # after the last change, how long its event may take before it counts as missing
    note: str
    # "off": the emulator's limit and the gateway's EMR budget out of reach (measures the gateway alone); "default":
    # Cliniko's 200 requests/min at the emulator and the gateway's own Cliniko budget, as a user's gateway has them.
    emr_budget: str = "off"


class LatencyRun(msgspec.Struct):
    case: str
    backend: str
    run: int
    changes: int
    received: int
    missing: int
    duplicates: int  # arrivals whose webhook-id had already arrived
    unverified: int
    p50_s: float
    p95_s: float
    max_s: float
    mean_s: float
    write_p50_s: float  # the request that made the change, start to answer
    samples_s: list[float]


class LatencySummary(msgspec.Struct):
    case: str
    source: str
    backend: str
    env: dict[str, str]
    runs: int
    changes_per_run: int
    p50_s: Stat
    p95_s: Stat
    max_s: Stat
    write_p50_s: Stat
    missing: int
    duplicates: int
    unverified: int
    note: str


class ThroughputRun(msgspec.Struct):
    backend: str
    workers: int
    run: int
    events: int
    received: int
    duplicates: int
    unverified: int
    preload_s: float  # writing the events and their deliveries (one transaction)
    first_to_last_s: float
    commit_to_last_s: float
    rate: float  # deliveries/s, first arrival to last
    rate_from_commit: float  # deliveries/s, commit to last arrival (includes the worker's idle poll wait)
    worker_cpu_ms_per_delivery: float | None
    receiver_cpu_ms_per_delivery: float | None


class ThroughputSummary(msgspec.Struct):
    backend: str
    workers: int
    runs: int
    events_per_run: int
    rate: Stat
    rate_from_commit: Stat
    missing: int
    duplicates: int
    unverified: int
    worker_cpu_ms_per_delivery: float | None
    receiver_cpu_ms_per_delivery: float | None


class Settings(msgspec.Struct):
    latency_backend: str
    throughput_backend: str
    throughput_workers: list[int]
    worker_env: dict[str, str]  # settings the throughput workers get on top of the gateway's defaults
    quick: bool
    cases: list[LatencyCase]
    throughput_runs: int
    throughput_events: int
    warmup_events: int
    gateway_log_level: str
    seed: int | None
    profile_dir: str | None
    default_poll: bool = False


class Report(msgspec.Struct):
    benchmark: str
    started_at: str
    finished_at: str
    settings: Settings
    machine: dict[str, Any]
    latency_runs: list[LatencyRun]
    latency: list[LatencySummary]
    throughput_runs: list[ThroughputRun]
    throughput: list[ThroughputSummary]


# ---------------------------------------------------------------------------------------------- the receiver


def receiver_process(conn: Connection) -> None:
    """Child process: a bare ASGI app under uvicorn that answers every webhook 200 at once and records it.

    `/hook/{name}` takes deliveries; `POST /_secret/{name}` registers that subscription's secret; `GET
    /_arrivals?after=N` returns the arrivals from the N-th on.
    """
    from urllib.parse import parse_qs

    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError

    from adapters.emulation import ServerThread

    class Envelope(msgspec.Struct):
        type: str = ""
        data: msgspec.Raw = msgspec.Raw(b"null")

    class Inner(msgspec.Struct):
        appointment: dict[str, Any] | None = None

    envelope, inner = msgspec.json.Decoder(Envelope), msgspec.json.Decoder(Inner | None)
    arrivals: list[Arrival] = []
    verifiers: dict[str, Webhook] = {}

    async def answer(send: Any, status: int, body: bytes = b"") -> None:
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"%d" % len(body))]}
        )
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        arrived = time.monotonic()
        body, path = b"".join(chunks), str(scope["path"])
        if path.startswith("/hook/"):
            name = path.removeprefix("/hook/")
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            verified = False
            if name in verifiers:
                with suppress(WebhookVerificationError):
                    verifiers[name].verify(body, headers)
                    verified = True
            event_type, appointment_id = "", None
            with suppress(msgspec.DecodeError):
                env = envelope.decode(body)
                event_type = env.type
                data = inner.decode(env.data) if event_type.startswith("appointment.") else None
                if data is not None and data.appointment is not None:
                    appointment_id = str(data.appointment.get("id"))
            arrivals.append(Arrival(name, headers.get("webhook-id", ""), event_type, appointment_id, arrived, verified))
            await answer(send, 200)
        elif path.startswith("/_secret/"):
            verifiers[path.removeprefix("/_secret/")] = Webhook(body.decode())
            await answer(send, 204)
        elif path == "/_arrivals":
            after = int(parse_qs(scope["query_string"].decode()).get("after", ["0"])[0])
            await answer(send, 200, msgspec.json.encode(arrivals[after:]))
        else:
            await answer(send, 404)

    server = ServerThread(app)
    conn.send_bytes(server.start().encode())
    with suppress(EOFError):
        conn.recv_bytes()
    server.stop()


class Receiver:
    """The driver's side of the receiver: registers secrets, collects arrivals."""

    def __init__(self) -> None:
        self.process = ChildProcess(receiver_process, "bench-receiver")
        if not self.process.conn.poll(60):
            self.process.stop()
            raise RuntimeError("the webhook receiver did not start")
        self.url = self.process.conn.recv_bytes().decode()
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.arrivals: list[Arrival] = []

    def hook_url(self, name: str) -> str:
        return f"{self.url}/hook/{name}"

    def register(self, name: str, secret: str) -> None:
        self.http.post(f"/_secret/{name}", content=secret.encode()).raise_for_status()

    def fetch(self) -> list[Arrival]:
        """Every arrival so far (those not yet fetched are appended)."""
        answer = self.http.get("/_arrivals", params={"after": len(self.arrivals)})
        answer.raise_for_status()
        self.arrivals += msgspec.json.decode(answer.content, type=list[Arrival])
        return self.arrivals

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


# ---------------------------------------------------------------------------------------------- the gateway


class GatewayProcess:
    """`python -m gateway.cli <args>` as a subprocess with its own settings, its log in a file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log_path: Path, profile: Path | None = None) -> None:
        # `serve` stops on SIGINT (as uvicorn expects); `worker` on SIGTERM, after its current batch.
        self.stop_signal = signal.SIGTERM if args[0] == "worker" else signal.SIGINT
        self.log_path = log_path
        self._log = log_path.open("wb")
        prefix = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
        command = [*prefix, "-m", "gateway.cli", *args]
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.process.returncode}):\n{self.tail()}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not become ready in {timeout:.0f}s:\n{self.tail()}")

    def tail(self) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def gateway_env(
    database_url: str, master_key: str, log_level: str, overrides: dict[str, str], *, emr_budget: str = "off"
) -> dict[str, str]:
    """Inherited EGW_* settings are dropped, so "default" means the gateway's defaults (with `emr_budget="default"`
    its EMR budgets too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGW_")}
    budgets = {"EGW_EMR_RATE_LIMITS": EMR_BUDGETS_OFF} if emr_budget == "off" else {}
    return env | {
        "EGW_DATABASE_URL": database_url,
        "EGW_MASTER_KEY": master_key,
        "EGW_RATE_LIMIT_PER_MINUTE": str(HUGE),
        **budgets,
        "EGW_LOG_LEVEL": log_level,
        "EGW_WEBHOOK_ALLOWED_SUBNETS": LOOPBACK,
        **overrides,
    }


CLINIKO_PER_MINUTE = 200  # Cliniko's published limit per user


def budgeted_emulator_process(conn: Connection, port: int) -> None:
    """Child process: as bench.overhead's emulator, but with Cliniko's own rate limit (200 requests/min per user)."""
    emulator_process(conn, port, rate_limit_per_minute=CLINIKO_PER_MINUTE)


def _start_emulator_with(emr_budget: str) -> tuple[ChildProcess, EmulatorInfo]:
    if emr_budget == "off":
        return _start_emulator(0)
    emulator = ChildProcess(budgeted_emulator_process, "bench-emulator", 0)
    if not emulator.conn.poll(60):
        emulator.stop()
        raise RuntimeError("the emulator did not start")
    return emulator, msgspec.json.decode(emulator.conn.recv_bytes(), type=EmulatorInfo)


class Env(msgspec.Struct):
    """One fresh clinic: emulator, database, gateway, and a subscription of the receiver."""

    backend: str
    database_url: str
    master_key: str
    gateway_url: str
    gateway_key: str
    hook: str
    fx: Fixture
    info: EmulatorInfo
    process_env: dict[str, str]
    workdir: str
    prebooked: list[str]  # booked on the emulator before the gateway's first poll


@contextmanager
def environment(
    backend: str,
    receiver: Receiver,
    hook: str,
    overrides: dict[str, str],
    log_level: str,
    *,
    in_process_worker: bool,
    prebook: int = 0,
    emr_budget: str = "off",
) -> Iterator[Env]:
    """`prebook` appointments exist before the first poll: cancelling one in the EMR is an `appointment.cancelled`
    on its own, where a booking cancelled before any poll saw it would surface as that one event instead of two."""
    from gateway.crypto import generate_key

    master_key = generate_key()
    with tempfile.TemporaryDirectory(prefix=f"egw-bench-webhooks-{hook}-") as tmp:
        workdir = Path(tmp)
        emulator, info = _start_emulator_with(emr_budget)
        gateway: GatewayProcess | None = None
        try:
            with database(backend, workdir) as database_url:
                fx = _fixture(info, "", "")
                prebooked = [_emr_book(fx, slot) for slot in range(1, prebook + 1)]
                gateway_key = asyncio.run(_provision(database_url, master_key, info))
                port = _free_port()
                url = f"http://127.0.0.1:{port}"
                env = gateway_env(database_url, master_key, log_level, overrides, emr_budget=emr_budget)
                args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
                gateway = GatewayProcess(args if in_process_worker else [*args, "--no-worker"], env, workdir / "gw.log")
                gateway.wait_ready(url)
                fx.gateway_url, fx.gateway_key = url, gateway_key
                answer = httpx.post(
                    f"{url}/v1/webhooks",
                    json={"url": receiver.hook_url(hook), "description": "bench"},
                    headers={"x-api-key": gateway_key},
                    timeout=10,
                )
                answer.raise_for_status()
                receiver.register(hook, answer.json()["secret"])
                yield Env(
                    backend=backend,
                    database_url=database_url,
                    master_key=master_key,
                    gateway_url=url,
                    gateway_key=gateway_key,
                    hook=hook,
                    fx=fx,
                    info=info,
                    process_env=env,
                    workdir=str(workdir),
                    prebooked=prebooked,
                )
        finally:
            if gateway is not None:
                gateway.stop()
            emulator.stop()


def _emr_book(fx: Fixture, slot: int) -> str:
    practitioner, start = _slot_start(fx, slot)
    headers = {"authorization": fx.authorization, "user-agent": USER_AGENT, "content-type": "application/json"}
    answer = httpx.post(
        f"{fx.emulator_url}/v1/individual_appointments",
        content=_direct_appointment(fx, practitioner, start),
        headers=headers,
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


async def _first_poll_done(env: Env) -> bool:
    """Change detection ignores what happened before a location's first poll: wait for it."""
    from gateway.crypto import Keyring
    from gateway.storage.store import Store
    from gateway.storage.sync import get_state

    store = await Store.open(env.database_url, Keyring.parse(env.master_key))
    try:
        locations = await store.list_locations()
        state = await get_state(store, locations[0].id)
        return state is not None and state.last_poll_at is not None
    finally:
        await store.close()


def wait_first_poll(env: Env, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not asyncio.run(_first_poll_done(env)):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker never polled the location")
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------- making changes


class Clinic:
    """Books and cancels, either in "Cliniko's own screens" (the emulator's API) or through the gateway."""

    def __init__(self, env: Env, source: str) -> None:
        self.env, self.source = env, source
        self.slot = 1 + len(env.prebooked)  # slot 0 holds the fixture's appointment; each booking takes the next slot
        self.cancellable = list(env.prebooked)
        if source == "emr":
            headers = {"authorization": env.fx.authorization, "user-agent": USER_AGENT}
            self.http = httpx.Client(base_url=env.fx.emulator_url, headers=headers, timeout=30)
        else:
            self.http = httpx.Client(base_url=env.gateway_url, headers={"x-api-key": env.gateway_key}, timeout=30)
        self.counter = 0

    def book(self) -> str:
        practitioner, start = _slot_start(self.env.fx, self.slot)
        self.slot += 1
        self.counter += 1
        if self.source == "emr":
            body = _direct_appointment(self.env.fx, practitioner, start)
            answer = self.http.post(
                "/v1/individual_appointments", content=body, headers={"content-type": "application/json"}
            )
        else:
            booking = {
                "practitioner": {"id": practitioner},
                "service": {"id": self.env.fx.service_id},
                "patient": {"id": self.env.fx.patient_id},
                "start": start,
            }
            key = {"Idempotency-Key": f"bench-webhooks-{self.env.hook}-{self.counter}"}
            answer = self.http.post("/v1/appointments", json=booking, headers=key)
        answer.raise_for_status()
        return str(answer.json()["id"])

    def cancel(self, appointment_id: str) -> None:
        self.counter += 1
        if self.source == "emr":
            path = f"/v1/individual_appointments/{appointment_id}/cancel"
            answer = self.http.patch(path, json={"cancellation_reason": 50})
        else:
            key = {"Idempotency-Key": f"bench-webhooks-{self.env.hook}-{self.counter}"}
            answer = self.http.post(f"/v1/appointments/{appointment_id}/cancel", json={}, headers=key)
        answer.raise_for_status()

    def close(self) -> None:
        self.http.close()


def make_changes(clinic: Clinic, count: int, window: float, rng: random.Random) -> list[Change]:
    """`count` changes at uniformly random moments over `window` seconds (never phase-locked to a poll):
    alternately a booking and a cancellation — of a pre-booked appointment when there are some, else of the
    booking just made."""
    offsets = sorted(rng.uniform(0.0, window) for _ in range(count))
    began = time.monotonic()
    changes: list[Change] = []
    booked: str | None = None
    for offset in offsets:
        wait = began + offset - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        started = time.monotonic()
        if booked is None:
            booked = clinic.book()
            changes.append(Change(BOOKED, booked, started, time.monotonic()))
        else:
            target = clinic.cancellable.pop(0) if clinic.cancellable else booked
            clinic.cancel(target)
            changes.append(Change(CANCELLED, target, started, time.monotonic()))
            booked = None
    return changes


def collect(receiver: Receiver, hook: str, changes: Sequence[Change], deadline: float) -> dict[tuple[str, str], float]:
    """Waits until every change's event arrived (or the deadline); returns (type, appointment id) -> first arrival."""
    wanted = {(c.event_type, c.appointment_id) for c in changes}
    found: dict[tuple[str, str], float] = {}
    while True:
        for a in receiver.fetch():
            key = (a.type, a.appointment_id or "")
            if a.hook == hook and key in wanted and key not in found:
                found[key] = a.arrived
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _dup_and_unverified(arrivals: Sequence[Arrival], hook: str, since: int) -> tuple[int, int]:
    """Duplicates among this hook's arrivals from index `since` on (against every earlier one), bad signatures."""
    seen = {a.webhook_id for a in arrivals[:since] if a.hook == hook}
    duplicates = unverified = 0
    for a in arrivals[since:]:
        if a.hook != hook:
            continue
        duplicates += a.webhook_id in seen
        unverified += not a.verified
        seen.add(a.webhook_id)
    return duplicates, unverified


def run_latency_case(
    case: LatencyCase, backend: str, receiver: Receiver, settings: Settings, say: Any
) -> list[LatencyRun]:
    rng = random.Random(settings.seed)
    results: list[LatencyRun] = []
    prebook = case.runs * (case.changes // 2) if case.source == "emr" else 0
    with environment(
        backend,
        receiver,
        case.name,
        case.env,
        settings.gateway_log_level,
        in_process_worker=True,
        prebook=prebook,
        emr_budget=case.emr_budget,
    ) as env:
        wait_first_poll(env, 300.0 if case.emr_budget == "default" else 60.0)
        clinic = Clinic(env, case.source)
        try:
            for run in range(1, case.runs + 1):
                since = len(receiver.fetch())
                changes = make_changes(clinic, case.changes, case.window_seconds, rng)
                found = collect(receiver, case.name, changes, changes[-1].started + case.drain_seconds)
                time.sleep(0.3)  # a late duplicate has a moment to show up
                duplicates, unverified = _dup_and_unverified(receiver.fetch(), case.name, since)
                samples = [
                    found[(c.event_type, c.appointment_id)] - c.started
                    for c in changes
                    if (c.event_type, c.appointment_id) in found
                ]
                ordered = sorted(samples)
                writes = sorted(c.answered - c.started for c in changes)
                result = LatencyRun(
                    case=case.name,
                    backend=backend,
                    run=run,
                    changes=len(changes),
                    received=len(samples),
                    missing=len(changes) - len(samples),
                    duplicates=duplicates,
                    unverified=unverified,
                    p50_s=round(_percentile(ordered, 0.50), 4),
                    p95_s=round(_percentile(ordered, 0.95), 4),
                    max_s=round(ordered[-1], 4) if ordered else float("nan"),
                    mean_s=round(statistics.fmean(ordered), 4) if ordered else float("nan"),
                    write_p50_s=round(_percentile(writes, 0.50), 4),
                    samples_s=[round(s, 4) for s in samples],
                )
                results.append(result)
                say(
                    f"  [{case.name} run {run}] n={result.changes} p50 {result.p50_s:.3f}s p95 {result.p95_s:.3f}s "
                    f"max {result.max_s:.3f}s missing={result.missing} dup={duplicates} bad-sig={unverified}"
                )
        finally:
            clinic.close()
    return results


# ---------------------------------------------------------------------------------------------- throughput


async def _template_event(env: Env, timeout: float = 60.0) -> bytes:
    """A real `appointment.booked` payload (from a gateway booking) to copy: realistic size and content. A worker
    builds it after the booking's answer, so this waits for it."""
    from sqlalchemy import select

    from gateway.crypto import Keyring
    from gateway.storage.store import Store
    from gateway.storage.tables import events

    store = await Store.open(env.database_url, Keyring.parse(env.master_key))
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with store.engine.connect() as conn:
                query = select(events.c.payload).where(events.c.type == BOOKED).limit(1)
                payload: bytes | None = (await conn.execute(query)).scalar_one_or_none()
            if payload is not None:
                return bytes(payload)
            if time.monotonic() > deadline:
                raise RuntimeError("no appointment.booked event: the worker never built the booking's snapshot")
            await asyncio.sleep(0.1)
    finally:
        await store.close()


async def _preload(env: Env, template: bytes, count: int) -> tuple[list[str], float, float]:
    """`count` copies of the template event (fresh ids) and their deliveries, written in ONE transaction through
    gateway.storage.outbox.publish, so they all become due at once. Returns (ids, started, committed)."""
    from gateway.crypto import Keyring
    from gateway.storage.outbox import decode_event, new_event_id, publish
    from gateway.storage.store import Store

    event = decode_event(template)
    copies = [msgspec.structs.replace(event, id=new_event_id()) for _ in range(count)]
    store = await Store.open(env.database_url, Keyring.parse(env.master_key))
    try:
        started = time.monotonic()
        async with store.write() as conn:
            for copy in copies:
                await publish(conn, copy)
        committed = time.monotonic()
    finally:
        await store.close()
    return [c.id for c in copies], started, committed


def _wait_ids(receiver: Receiver, hook: str, ids: Sequence[str], timeout: float) -> dict[str, float]:
    """webhook-id -> first arrival, for those of `ids` that arrived before the timeout."""
    wanted, found = set(ids), dict[str, float]()
    deadline = time.monotonic() + timeout
    scanned = 0
    while True:
        arrivals = receiver.fetch()
        for a in arrivals[scanned:]:
            if a.hook == hook and a.webhook_id in wanted and a.webhook_id not in found:
                found[a.webhook_id] = a.arrived
        scanned = len(arrivals)
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def run_throughput(backend: str, receiver: Receiver, settings: Settings, say: Any) -> list[ThroughputRun]:
    """`serve --no-worker` for the API; `emr-gateway worker` processes do the sending."""
    hook = f"throughput-{backend}"
    results: list[ThroughputRun] = []
    with environment(backend, receiver, hook, {}, settings.gateway_log_level, in_process_worker=False) as env:
        clinic = Clinic(env, "gateway")
        clinic.book()  # its events stay pending until the first worker starts: they are part of its warm-up
        clinic.close()
        template: bytes | None = None
        for count in settings.throughput_workers:
            profiles = Path(settings.profile_dir) if settings.profile_dir else None
            workers = [
                GatewayProcess(
                    ["worker"],
                    env.process_env | settings.worker_env,
                    Path(env.workdir) / f"worker-{count}-{i}.log",
                    profiles / f"worker-{backend}-{count}-{i}.prof" if profiles else None,
                )
                for i in range(count)
            ]
            try:
                if template is None:  # the first workers build the booking's event
                    template = asyncio.run(_template_event(env))
                # Warm-up: imports, connections and first claims happen here, not in the timed part.
                ids, _, _ = asyncio.run(_preload(env, template, settings.warmup_events * count))
                if len(_wait_ids(receiver, hook, ids, 60)) < len(ids):
                    raise RuntimeError(f"warm-up deliveries did not all arrive:\n{workers[0].tail()}")
                for run in range(1, settings.throughput_runs + 1):
                    since = len(receiver.fetch())
                    cpu_before = [_cpu_seconds(w.pid) for w in workers] + [_cpu_seconds(receiver.process.pid)]
                    ids, started, committed = asyncio.run(_preload(env, template, settings.throughput_events))
                    found = _wait_ids(receiver, hook, ids, 120)
                    time.sleep(0.3)  # a late duplicate has a moment to show up
                    cpu_after = [_cpu_seconds(w.pid) for w in workers] + [_cpu_seconds(receiver.process.pid)]
                    duplicates, unverified = _dup_and_unverified(receiver.fetch(), hook, since)
                    n = len(found)
                    first, last = (min(found.values()), max(found.values())) if found else (committed, committed)
                    cpu = [
                        (a - b) * 1000 / n if a is not None and b is not None and n else None
                        for a, b in zip(cpu_after, cpu_before, strict=True)
                    ]
                    worker_cpu = [c for c in cpu[:-1] if c is not None]
                    result = ThroughputRun(
                        backend=backend,
                        workers=count,
                        run=run,
                        events=len(ids),
                        received=n,
                        duplicates=duplicates,
                        unverified=unverified,
                        preload_s=round(committed - started, 3),
                        first_to_last_s=round(last - first, 4),
                        commit_to_last_s=round(last - committed, 4),
                        rate=round((n - 1) / (last - first), 1) if n > 1 and last > first else float("nan"),
                        rate_from_commit=round(n / (last - committed), 1) if last > committed else float("nan"),
                        worker_cpu_ms_per_delivery=round(sum(worker_cpu), 3) if worker_cpu else None,
                        receiver_cpu_ms_per_delivery=round(cpu[-1], 3) if cpu[-1] is not None else None,
                    )
                    results.append(result)
                    say(
                        f"  [throughput {backend} workers={count} run {run}] {n}/{len(ids)} in "
                        f"{result.first_to_last_s:.2f}s: {result.rate:.0f}/s "
                        f"(from commit {result.rate_from_commit:.0f}/s) dup={duplicates} bad-sig={unverified}"
                    )
            finally:
                for w in workers:
                    w.stop()
    return results


# ---------------------------------------------------------------------------------------------- reporting


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarize_latency(cases: Sequence[LatencyCase], runs: Sequence[LatencyRun]) -> list[LatencySummary]:
    out: list[LatencySummary] = []
    for case in cases:
        mine = [r for r in runs if r.case == case.name and r.received]
        if not mine:
            continue
        out.append(
            LatencySummary(
                case=case.name,
                source=case.source,
                backend=mine[0].backend,
                env=case.env,
                runs=len(mine),
                changes_per_run=case.changes,
                p50_s=_stat([r.p50_s for r in mine]),
                p95_s=_stat([r.p95_s for r in mine]),
                max_s=_stat([r.max_s for r in mine]),
                write_p50_s=_stat([r.write_p50_s for r in mine]),
                missing=sum(r.missing for r in mine),
                duplicates=sum(r.duplicates for r in mine),
                unverified=sum(r.unverified for r in mine),
                note=case.note,
            )
        )
    return out


def summarize_throughput(runs: Sequence[ThroughputRun]) -> list[ThroughputSummary]:
    groups: dict[tuple[str, int], list[ThroughputRun]] = {}
    for r in runs:
        groups.setdefault((r.backend, r.workers), []).append(r)
    return [
        ThroughputSummary(
            backend=backend,
            workers=workers,
            runs=len(mine),
            events_per_run=mine[0].events,
            rate=_stat([r.rate for r in mine]),
            rate_from_commit=_stat([r.rate_from_commit for r in mine]),
            missing=sum(r.events - r.received for r in mine),
            duplicates=sum(r.duplicates for r in mine),
            unverified=sum(r.unverified for r in mine),
            worker_cpu_ms_per_delivery=_median_or_none([r.worker_cpu_ms_per_delivery for r in mine]),
            receiver_cpu_ms_per_delivery=_median_or_none([r.receiver_cpu_ms_per_delivery for r in mine]),
        )
        for (backend, workers), mine in groups.items()
    ]


def _fmt(stat: Stat, digits: int) -> str:
    return f"{stat.median:.{digits}f} [{stat.min:.{digits}f}-{stat.max:.{digits}f}]"


def table(latency: Sequence[LatencySummary], throughput: Sequence[ThroughputSummary]) -> str:
    header = (
        f"{'latency case':<24} {'source':<8} {'backend':<8} {'runs':>4} {'n/run':>5} {'p50 s med [min-max]':>23} "
        f"{'p95 s med [min-max]':>23} {'write p50 ms':>12} {'miss/dup/sig':>12}"
    )
    lines = [header, "-" * len(header)]
    for s in latency:
        write_ms = f"{s.write_p50_s.median * 1000:.1f}"
        lines.append(
            f"{s.case:<24} {s.source:<8} {s.backend:<8} {s.runs:>4} {s.changes_per_run:>5} {_fmt(s.p50_s, 3):>23} "
            f"{_fmt(s.p95_s, 3):>23} {write_ms:>12} {f'{s.missing}/{s.duplicates}/{s.unverified}':>12}"
        )
    for s in latency:
        settings = " ".join(f"{k}={v}" for k, v in s.env.items()) or "defaults"
        lines.append(f"  {s.case}: {settings}; {s.note}")
    header = (
        f"{'throughput':<10} {'workers':>7} {'runs':>4} {'events':>6} {'deliveries/s med [min-max]':>27} "
        f"{'from commit /s':>21} {'CPU ms/dlv wk|rcv':>18} {'miss/dup/sig':>12}"
    )
    lines += ["", header, "-" * len(header)]
    for t in throughput:
        wk = f"{t.worker_cpu_ms_per_delivery:.2f}" if t.worker_cpu_ms_per_delivery is not None else "-"
        rc = f"{t.receiver_cpu_ms_per_delivery:.2f}" if t.receiver_cpu_ms_per_delivery is not None else "-"
        lines.append(
            f"{t.backend:<10} {t.workers:>7} {t.runs:>4} {t.events_per_run:>6} {_fmt(t.rate, 0):>27} "
            f"{_fmt(t.rate_from_commit, 0):>21} {f'{wk}|{rc}':>18} {f'{t.missing}/{t.duplicates}/{t.unverified}':>12}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- entry point


def default_poll_case(runs: int) -> LatencyCase:
    """EMR edits with nothing overridden: the poll interval and scheduler tick are the gateway's defaults (which it
    derives from the EMR's budget), Cliniko's 200 requests/min hold at the emulator, the gateway keeps its own
    Cliniko budget. What a user gets; minutes per run."""
    return LatencyCase(
        name="emr-poll-default",
        source="emr",
        env={},
        runs=runs,
        changes=10,
        window_seconds=120.0,
        drain_seconds=90.0,
        note="edits on the emulator's API; the gateway's default poll and tick; Cliniko's 200/min at the emulator",
        emr_budget="default",
    )


def latency_cases(quick: bool, runs: int | None, default_poll: bool = False) -> list[LatencyCase]:
    """The default poll interval gets one run unless --runs says otherwise (minutes of waiting); the short ones get
    several. `default_poll`: the EMR-edit case runs with the defaults instead of a 1 s poll."""
    reps = runs or (1 if quick else 3)
    changes = 10 if quick else 16
    emr_fast = LatencyCase(
        name="emr-poll-1s",
        source="emr",
        env={"EGW_POLL_SECONDS": "1", "EGW_SYNC_TICK_SECONDS": "1"},
        runs=reps,
        changes=changes,
        window_seconds=changes * 0.75,
        drain_seconds=15.0,
        note="edits on the emulator's API; poll every 1 s (the scheduler tick too, else it floors the interval)",
    )
    cases = [
        LatencyCase(
            name="gateway-writes",
            source="gateway",
            env={},
            runs=reps,
            changes=changes,
            window_seconds=changes * 0.75,
            drain_seconds=15.0,
            note="POST /v1/appointments and …/cancel; answered first, snapshot built by the worker; defaults",
        ),
        LatencyCase(
            name="gateway-writes-fast-idle",
            source="gateway",
            env={"EGW_WEBHOOK_POLL_INTERVAL_SECONDS": "0.05"},
            runs=reps,
            changes=changes,
            window_seconds=changes * 0.5,
            drain_seconds=15.0,
            note="as gateway-writes, but the idle delivery worker looks for due deliveries every 50 ms, not 1 s",
        ),
    ]
    if default_poll:
        return [default_poll_case(runs or 1), *cases]
    if quick:
        return [emr_fast, *cases]
    return [default_poll_case(1), emr_fast, *cases]


def parse_args(argv: Sequence[str], *, lenient: bool = False) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.webhooks",
        description="Webhook latency (EMR change / gateway write -> signed webhook at a receiver) and throughput.",
    )
    p.add_argument("--quick", action="store_true", help="smoke run (<~60 s): no default-poll case, 1 run each")
    p.add_argument(
        "--default-poll",
        action="store_true",
        help="the EMR-edit case with NO poll override (the gateway's default poll and tick) against the emulator "
        "with Cliniko's own 200 requests/min, instead of the 1 s poll; --runs runs of it (default 1, minutes each)",
    )
    p.add_argument(
        "--backend",
        choices=["sqlite", "postgres", "all"],
        default="all",
        help="storage: latency cases run on SQLite unless 'postgres'; throughput on PostgreSQL (1 and 2 workers) "
        f"when {' or '.join(PG_ENVS)} is set and the backend allows, else on SQLite with 1 worker",
    )
    p.add_argument("--runs", type=int, help="runs per short latency case (default 3; --quick 1)")
    p.add_argument("--throughput-runs", type=int, help="runs per worker count (default 3; --quick 1)")
    p.add_argument("--events", type=int, help="events per throughput run (default 3000; --quick 600)")
    p.add_argument("--workers", type=int, nargs="+", help="worker counts on PostgreSQL (default 1 2)")
    p.add_argument(
        "--batch-size", type=int, help="the throughput workers' EGW_WEBHOOK_BATCH_SIZE (default: the gateway's)"
    )
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--seed", type=int, help="random seed for the change schedule (default: random)")
    p.add_argument("--gateway-log-level", default="INFO", help="the gateway's EGW_LOG_LEVEL (default INFO)")
    p.add_argument("--profile-dir", help="run the throughput workers under cProfile, writing worker-*.prof there")
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON goes (default bench/results)")
    if lenient:  # under `python -m bench`, other benchmarks' options are theirs
        args, _ = p.parse_known_args(list(argv))
        return args
    return p.parse_args(list(argv))


def settings_from(args: argparse.Namespace) -> Settings:
    pg = _pg_dsn() is not None
    if args.backend == "postgres" and not pg:
        raise SystemExit(f"--backend postgres needs {' or '.join(PG_ENVS)}")
    throughput_pg = pg and args.backend != "sqlite"
    return Settings(
        latency_backend="postgres" if args.backend == "postgres" else "sqlite",
        throughput_backend="postgres" if throughput_pg else "sqlite",
        throughput_workers=(args.workers or [1, 2]) if throughput_pg else [1],  # one worker only on SQLite
        worker_env={"EGW_WEBHOOK_BATCH_SIZE": str(args.batch_size)} if args.batch_size else {},
        quick=args.quick,
        cases=[] if args.skip_latency else latency_cases(args.quick, args.runs, args.default_poll),
        throughput_runs=0 if args.skip_throughput else (args.throughput_runs or (1 if args.quick else 3)),
        throughput_events=args.events or (600 if args.quick else 3000),
        warmup_events=20,
        gateway_log_level=args.gateway_log_level,
        seed=args.seed,
        profile_dir=args.profile_dir,
        default_poll=args.default_poll,
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = os.getloadavg()  # other work on the host skews every figure here: record how busy it was

    def say(line: str) -> None:
        print(line, flush=True)

    say(
        f"webhooks: latency cases {[c.name for c in settings.cases]} on {settings.latency_backend}; throughput "
        f"{settings.throughput_events} events x {settings.throughput_runs} runs, workers {settings.throughput_workers} "
        f"on {settings.throughput_backend}" + (f" with {settings.worker_env}" if settings.worker_env else "")
    )
    if settings.profile_dir:
        Path(settings.profile_dir).mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    latency_runs: list[LatencyRun] = []
    throughput_runs: list[ThroughputRun] = []
    try:
        for case in settings.cases:
            latency_runs += run_latency_case(case, settings.latency_backend, receiver, settings, say)
        if settings.throughput_runs:
            throughput_runs = run_throughput(settings.throughput_backend, receiver, settings, say)
    finally:
        receiver.stop()
    latency = summarize_latency(settings.cases, latency_runs)
    throughput = summarize_throughput(throughput_runs)
    report = Report(
        benchmark="webhooks",
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        settings=settings,
        machine=machine_info() | {"load_average_at_start": load_at_start},
        latency_runs=latency_runs,
        latency=latency,
        throughput_runs=throughput_runs,
        throughput=throughput,
    )
    path = write_report(args.out, "webhooks", started, report)
    say("")
    say(table(latency, throughput))
    if throughput and settings.worker_env:
        say("  throughput workers: " + " ".join(f"{k}={v}" for k, v in settings.worker_env.items()))
    say(f"\nwrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


def main_shared(argv: Sequence[str]) -> int:
    """For `python -m bench`: the options every benchmark gets may include ones only another benchmark knows."""
    return run(parse_args(argv, lenient=True))


if __name__ == "__main__":
    sys.exit(main())

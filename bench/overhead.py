"""What the gateway adds on top of the EMR: the same operations sent to the gateway and straight to the emulator.

Three processes besides this one, so the load generator is never the process under test: the Cliniko emulator
(uvicorn, own process), the gateway (`emr-gateway serve`, own process, SQLite or PostgreSQL) and the load generator
(httpx, N concurrent clients). For each operation and concurrency, phases alternate direct / gateway so drift in the
emulator's state (it keeps every booking) hits both sides alike. Numbers go to a table and to
`bench/results/overhead-<timestamp>.json`. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import enum
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PG_ENVS = ("EGW_BENCH_POSTGRES_DSN", "EGW_TEST_POSTGRES_DSN")
USER_AGENT = "EMR Gateway bench (bench@example.com)"
HUGE = 10**9  # rate limits: off, in effect
BENCH_PATIENTS = 300
# The adapters' EMR budgets (Cliniko: 20 + 3 requests/s) would pace the gateway path to a few requests/s. This
# measures the gateway's own cost, so they are out of reach, like the emulator's own limit.
EMR_BUDGETS_OFF = msgspec.json.encode({"cliniko": [{"per_second": HUGE, "burst": HUGE}]}).decode()


class Op(enum.StrEnum):
    GET = "get"
    AVAILABILITY = "availability"
    BOOK = "book"


class Target(enum.StrEnum):
    DIRECT = "direct"
    GATEWAY = "gateway"


# ---------------------------------------------------------------------------------------------- messages


class EmulatorInfo(msgspec.Struct):
    """What the emulator process reports once it listens."""

    base_url: str
    settings_json: bytes
    credentials_json: bytes
    api_key: str
    business_id: str
    practitioner_ids: list[str]
    service_id: str
    service_minutes: int
    patient_id: str
    time_zone: str
    open_from: str
    open_until: str
    patient_ids: list[str] = msgspec.field(default_factory=list)


class Fixture(msgspec.Struct):
    """Everything the load generator needs to build requests for both targets."""

    gateway_url: str
    gateway_key: str
    emulator_url: str
    authorization: str
    business_id: str
    availability_practitioner: str
    booking_practitioners: list[str]  # others, when the seed has them, so bookings never slow availability down
    service_id: str
    service_minutes: int
    patient_id: str
    appointment_id: str
    availability_day: str
    first_booking_day: str
    time_zone: str
    open_from: str
    slots_per_day: int
    # Bookings rotate over these: a clinic's bookings are spread over its patients, and after each booking the
    # gateway re-reads the patient's appointments (for its webhooks), which one ever-growing patient would distort.
    patient_ids: list[str] = msgspec.field(default_factory=list)


class PhaseSpec(msgspec.Struct):
    op: Op
    target: Target
    concurrency: int
    requests: int
    warmup: int
    seconds: float
    slot_offset: int  # bookings use slots slot_offset … slot_offset + warmup + requests - 1


class PhaseResult(msgspec.Struct):
    backend: str
    repetition: int
    op: Op
    target: Target
    concurrency: int
    requests: int  # measured requests completed (may be below the asked count when the time bound hit)
    sent: int  # including warm-up
    ok: int
    conflicts: int  # 409s (a booking whose slot was taken)
    errors: dict[str, int]  # other statuses / exception names -> count
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    emr_calls_per_request: float | None = None
    cpu_ms_per_request: dict[str, float] = msgspec.field(default_factory=dict)


class Stat(msgspec.Struct):
    median: float
    min: float
    max: float


class Summary(msgspec.Struct):
    backend: str
    op: Op
    concurrency: int
    target: Target
    repetitions: int
    requests: int
    rps: Stat
    p50_ms: Stat
    p95_ms: Stat
    p99_ms: Stat
    conflicts: int
    errors: int
    emr_calls_per_request: float | None
    cpu_ms_per_request: dict[str, float]


class Comparison(msgspec.Struct):
    backend: str
    op: Op
    concurrency: int
    added_p50_ms: float  # gateway p50 - direct p50 (medians over repetitions)
    added_p50_ms_min: float  # per repetition, the smallest and largest difference
    added_p50_ms_max: float
    rps_ratio: float  # gateway rps / direct rps (medians)


class TargetCheck(msgspec.Struct):
    """One of issue 16's targets against this run's medians (`met` is None when the run lacks the phase)."""

    backend: str
    target: str
    measured: float | None
    limit: str
    met: bool | None


class Report(msgspec.Struct):
    benchmark: str
    started_at: str
    finished_at: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    backends: list[str]
    phases: list[PhaseResult]
    summary: list[Summary]
    comparisons: list[Comparison]
    targets: list[TargetCheck] = msgspec.field(default_factory=list)


# ---------------------------------------------------------------------------------------------- servers


def _listening_socket() -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets it knows are TCP (else 40 ms Nagle stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _free_port() -> int:
    with _listening_socket() as sock:
        return int(sock.getsockname()[1])


def emulator_process(conn: Connection, port: int, rate_limit_per_minute: int = HUGE) -> None:
    """Child process: serve a fresh Cliniko emulator on `port` (0: any) until the parent says stop (or goes away).

    Ids are deterministic, so a fresh emulator on the same port is the same account to the gateway, only emptier.
    The emulator's own limit is out of reach unless `rate_limit_per_minute` says otherwise (bench.webhooks gives it
    Cliniko's 200).
    """
    from adapters.cliniko.emulator import ClinikoEmulator
    from adapters.emulation import SeedPatient, ServerThread, default_seed

    seed = default_seed()
    seed.patients += [
        SeedPatient(first_name=f"Bench{i}", last_name="Patient", email=f"bench{i}@example.com")
        for i in range(BENCH_PATIENTS)
    ]
    emulator = ClinikoEmulator(seed, rate_limit_per_minute=rate_limit_per_minute)
    server = ServerThread(emulator.app(), port=port)
    base_url = server.start()
    settings, credentials = emulator.location_config(base_url)
    service_name = seed.services[0].name
    service = next(t for t in emulator.appointment_types.values() if t.name == service_name)
    info = EmulatorInfo(
        base_url=base_url,
        settings_json=settings,
        credentials_json=credentials,
        api_key=msgspec.json.decode(credentials)["api_key"],
        business_id=emulator.business_ids()[0],
        practitioner_ids=list(emulator.practitioners),
        service_id=service.id,
        service_minutes=seed.services[0].duration_minutes,
        patient_id=next(iter(emulator.patients)),
        time_zone=seed.time_zone,
        open_from=seed.open_from,
        open_until=seed.open_until,
        patient_ids=list(emulator.patients),
    )
    conn.send_bytes(msgspec.json.encode(info))
    with suppress(EOFError):
        conn.recv_bytes()
    server.stop()


class ChildProcess:
    """A multiprocessing child driven over a pipe, stopped by message (then by signal if it hangs)."""

    def __init__(self, target: Any, name: str, *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child_end, *args), name=name, daemon=True)
        self.process.start()
        child_end.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def stop(self) -> None:
        with suppress(OSError):
            self.conn.send_bytes(b"stop")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


class Gateway:
    """`emr-gateway serve` as a subprocess, with its log in the work directory."""

    def __init__(
        self,
        database_url: str,
        master_key: str,
        workdir: Path,
        log_level: str,
        profile: Path | None,
        worker: bool = False,
    ):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "gateway.log"
        env = {
            **os.environ,
            "EGW_DATABASE_URL": database_url,
            "EGW_MASTER_KEY": master_key,
            "EGW_RATE_LIMIT_PER_MINUTE": str(HUGE),
            "EGW_EMR_RATE_LIMITS": EMR_BUDGETS_OFF,
            "EGW_LOG_LEVEL": log_level,
        }
        env.pop("EGW_MASTER_KEY_FILE", None)
        prefix = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
        command = [*prefix, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if not worker:
            command.append("--no-worker")  # an API replica, as in the production layout: the worker runs apart
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.process.returncode}):\n{self._tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not become ready in {timeout:.0f}s:\n{self._tail()}")

    def _tail(self) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # graceful: lets cProfile write its file
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# ---------------------------------------------------------------------------------------------- databases


def _pg_dsn() -> str | None:
    for name in PG_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh, migrated database URL; a PostgreSQL one is dropped afterwards."""
    from gateway.storage.migrate import upgrade

    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        upgrade(url)
        yield url
        return
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = _pg_dsn()
    if dsn is None:
        raise RuntimeError(f"PostgreSQL needs {' or '.join(PG_ENVS)}")
    name = f"egw_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    def with_db(db: str) -> str:
        return make_url(dsn).set(drivername="postgresql", database=db).render_as_string(hide_password=False)

    admin = with_db("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_db(name)
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _provision(database_url: str, master_key: str, info: EmulatorInfo) -> str:
    """One location on the emulator's business and one API key for it; returns the key."""
    from gateway.crypto import Keyring
    from gateway.storage.store import Store

    store = await Store.open(database_url, Keyring.parse(master_key))
    try:
        location = await store.create_location(
            emr="cliniko",
            name="Bench Clinic",
            settings_json=info.settings_json,
            credentials_json=info.credentials_json,
            time_zone=info.time_zone,
        )
        issued = await store.issue_key(location.id)
        return issued.secret
    finally:
        await store.close()


# ---------------------------------------------------------------------------------------------- requests


def _basic(api_key: str) -> str:
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()


def _slot_start(fx: Fixture, index: int) -> tuple[str, str]:
    """(practitioner id, UTC start) of booking slot `index`: back-to-back slots, practitioner by practitioner,
    day after day from `first_booking_day`, so no two bookings of a run collide."""
    practitioners = len(fx.booking_practitioners)
    practitioner = fx.booking_practitioners[index % practitioners]
    rest = index // practitioners
    day = datetime.date.fromisoformat(fx.first_booking_day) + datetime.timedelta(days=rest // fx.slots_per_day)
    opening = datetime.datetime.combine(day, datetime.time.fromisoformat(fx.open_from), ZoneInfo(fx.time_zone))
    start = opening + datetime.timedelta(minutes=fx.service_minutes * (rest % fx.slots_per_day))
    return practitioner, start.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _booking_patient(fx: Fixture, index: int) -> str:
    return fx.patient_ids[index % len(fx.patient_ids)] if fx.patient_ids else fx.patient_id


def _calendar_query(fx: Fixture, practitioner: str, start: str) -> list[tuple[str, str | int | float | bool | None]]:
    begins = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    ends = begins + datetime.timedelta(minutes=fx.service_minutes)
    return [
        ("q[]", f"practitioner_id:={practitioner}"),
        ("q[]", f"starts_at:<{ends.isoformat().replace('+00:00', 'Z')}"),
        ("q[]", f"ends_at:>{start}"),
    ]


def _direct_appointment(fx: Fixture, practitioner: str, start: str, patient: str | None = None) -> bytes:
    return msgspec.json.encode(
        {
            "patient_id": patient or fx.patient_id,
            "practitioner_id": practitioner,
            "appointment_type_id": fx.service_id,
            "business_id": fx.business_id,
            "starts_at": start,
        }
    )


async def _send(client: httpx.AsyncClient, fx: Fixture, spec: PhaseSpec, index: int, run_id: str) -> int:
    """One request of the phase; returns the HTTP status."""
    direct = spec.target is Target.DIRECT
    if spec.op is Op.GET:
        path = f"/v1/individual_appointments/{fx.appointment_id}" if direct else f"/v1/appointments/{fx.appointment_id}"
        return (await client.get(path)).status_code
    if spec.op is Op.AVAILABILITY:
        day = fx.availability_day
        if direct:
            path = (
                f"/v1/businesses/{fx.business_id}/practitioners/{fx.availability_practitioner}"
                f"/appointment_types/{fx.service_id}/available_times"
            )
            return (await client.get(path, params={"from": day, "to": day})).status_code
        params = {"practitioner_id": fx.availability_practitioner, "service_id": fx.service_id, "from": day, "to": day}
        return (await client.get("/v1/availability", params=params)).status_code
    practitioner, start = _slot_start(fx, spec.slot_offset + index)
    patient = _booking_patient(fx, spec.slot_offset + index)
    if direct:
        # What the Cliniko adapter's booking needs, sent by the load generator itself: the practitioner's calendar,
        # the create, the post-write conflicts check (the gateway must be compared with the same three calls).
        await client.get("/v1/individual_appointments", params=_calendar_query(fx, practitioner, start))
        body = _direct_appointment(fx, practitioner, start, patient)
        created = await client.post("/v1/individual_appointments", content=body)
        if created.status_code != 201:
            return created.status_code
        conflicts = await client.get(f"/v1/individual_appointments/{created.json()['id']}/conflicts")
        return created.status_code if conflicts.status_code == 200 else conflicts.status_code
    book = {
        "practitioner": {"id": practitioner},
        "service": {"id": fx.service_id},
        "patient": {"id": patient},
        "start": start,
    }
    headers = {"Idempotency-Key": f"bench-{run_id}-{spec.slot_offset + index}"}
    return (await client.post("/v1/appointments", content=msgspec.json.encode(book), headers=headers)).status_code


def _client(fx: Fixture, target: Target, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"accept": "application/json", "content-type": "application/json"}
    if target is Target.DIRECT:
        headers |= {"authorization": fx.authorization, "user-agent": USER_AGENT}
        base = fx.emulator_url
    else:
        headers |= {"x-api-key": fx.gateway_key}
        base = fx.gateway_url
    return httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30)


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def run_phase(fx: Fixture, spec: PhaseSpec) -> PhaseResult:
    """Warm up (unmeasured), then `concurrency` workers share `requests` until done or `seconds` have passed."""
    run_id = uuid.uuid4().hex[:12]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    async with _client(fx, spec.target, spec.concurrency) as client:

        async def worker(indices: Iterator[int], measured: bool, deadline: float) -> None:
            for index in indices:  # shared by the workers: each index is sent once
                if measured and time.perf_counter() > deadline:
                    return
                began = time.perf_counter()
                try:
                    status = str(await _send(client, fx, spec, index, run_id))
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if measured:
                    latencies.append(time.perf_counter() - began)
                    statuses[status] = statuses.get(status, 0) + 1

        warmup = iter(range(spec.warmup))
        await asyncio.gather(*(worker(warmup, False, 0.0) for _ in range(spec.concurrency)))
        measured = iter(range(spec.warmup, spec.warmup + spec.requests))
        began = time.perf_counter()
        deadline = began + spec.seconds
        await asyncio.gather(*(worker(measured, True, deadline) for _ in range(spec.concurrency)))
        elapsed = time.perf_counter() - began
    ordered = sorted(ms * 1000 for ms in latencies)
    ok = sum(n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300)
    conflicts = statuses.get("409", 0)
    errors = {s: n for s, n in statuses.items() if not (s.isdigit() and 200 <= int(s) < 300) and s != "409"}
    return PhaseResult(
        backend="",
        repetition=0,
        op=spec.op,
        target=spec.target,
        concurrency=spec.concurrency,
        requests=len(ordered),
        sent=spec.warmup + len(ordered),
        ok=ok,
        conflicts=conflicts,
        errors=errors,
        seconds=round(elapsed, 4),
        rps=round(len(ordered) / elapsed, 2) if elapsed > 0 else 0.0,
        p50_ms=round(_percentile(ordered, 0.50), 3),
        p95_ms=round(_percentile(ordered, 0.95), 3),
        p99_ms=round(_percentile(ordered, 0.99), 3),
        mean_ms=round(statistics.fmean(ordered), 3) if ordered else float("nan"),
    )


def loadgen_process(conn: Connection) -> None:
    """Child process: receive the fixture, then run each phase spec it is sent and answer its result."""
    fx = msgspec.json.decode(conn.recv_bytes(), type=Fixture)
    while True:
        try:
            raw = conn.recv_bytes()
        except EOFError:
            return
        if raw == b"stop":
            return
        spec = msgspec.json.decode(raw, type=PhaseSpec)
        conn.send_bytes(msgspec.json.encode(asyncio.run(run_phase(fx, spec))))


# ---------------------------------------------------------------------------------------------- measurement helpers


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all its threads), from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _emulator_requests(client: httpx.Client, emulator_url: str) -> int:
    return int(client.get(f"{emulator_url}/_emulator/stats").json()["requests"])


def _first_open_day(time_zone: str, offset_days: int) -> datetime.date:
    return datetime.datetime.now(ZoneInfo(time_zone)).date() + datetime.timedelta(days=offset_days)


def _slots_per_day(info: EmulatorInfo) -> int:
    opening = datetime.datetime.combine(datetime.date(2000, 1, 3), datetime.time.fromisoformat(info.open_from))
    closing = datetime.datetime.combine(datetime.date(2000, 1, 3), datetime.time.fromisoformat(info.open_until))
    return int((closing - opening).total_seconds() // 60) // info.service_minutes


# ---------------------------------------------------------------------------------------------- one backend


class Settings(msgspec.Struct):
    backends: list[str]
    concurrency: list[int]
    repetitions: int
    requests: int
    seconds: float
    warmup: int
    ops: list[Op]
    gateway_log_level: str
    profile_dir: str | None
    py_spy_dir: str | None = None
    gateway_worker: bool = False
    wrk: bool = False


def run_backend(backend: str, settings: Settings, say: Any) -> list[PhaseResult]:
    """Fresh emulator, database and gateway; every phase of every repetition; then tear it all down."""
    from gateway.crypto import generate_key

    results: list[PhaseResult] = []
    master_key = generate_key()
    with tempfile.TemporaryDirectory(prefix=f"egw-bench-{backend}-") as tmp:
        workdir = Path(tmp)
        emulator, info = _start_emulator(0)
        gateway: Gateway | None = None
        loadgen: ChildProcess | None = None
        try:
            with database(backend, workdir) as database_url:
                gateway_key = asyncio.run(_provision(database_url, master_key, info))
                profile = Path(settings.profile_dir) / f"gateway-{backend}.prof" if settings.profile_dir else None
                gateway = Gateway(
                    database_url, master_key, workdir, settings.gateway_log_level, profile, settings.gateway_worker
                )
                gateway.wait_ready()
                fx = _fixture(info, gateway.url, gateway_key)
                loadgen = ChildProcess(loadgen_process, "bench-loadgen")
                loadgen.conn.send_bytes(msgspec.json.encode(fx))
                with httpx.Client(timeout=10) as probe:
                    for repetition in range(1, settings.repetitions + 1):
                        if repetition > 1:
                            # The emulator keeps every booking and some of its queries scan them all: start each
                            # repetition from the same empty state so repetitions measure noise, not growth.
                            emulator.stop()
                            emulator, again = _start_emulator(int(info.base_url.rsplit(":", 1)[1]))
                            if again != info or _seed_appointment(fx) != fx.appointment_id:
                                raise RuntimeError("the restarted emulator is not the same account")
                        pids = {"gateway": gateway.pid, "emulator": emulator.pid, "loadgen": loadgen.pid}
                        slot = 1  # slot 0 holds the appointment the GET phases read
                        for concurrency in settings.concurrency:
                            for op in settings.ops:
                                for target in (Target.DIRECT, Target.GATEWAY):
                                    spec = PhaseSpec(
                                        op=op,
                                        target=target,
                                        concurrency=concurrency,
                                        requests=settings.requests,
                                        warmup=max(settings.warmup, concurrency * 2),
                                        seconds=settings.seconds,
                                        slot_offset=slot,
                                    )
                                    slot += spec.warmup + spec.requests
                                    py_spy = None
                                    if settings.py_spy_dir and target is Target.GATEWAY:
                                        name = f"gateway-{backend}-{op}-c{concurrency}-r{repetition}.raw"
                                        py_spy = Path(settings.py_spy_dir) / name
                                    wrk = (fx, workdir) if settings.wrk else None
                                    result = _measured(loadgen, spec, pids, probe, info.base_url, py_spy, wrk)
                                    result.backend, result.repetition = backend, repetition
                                    results.append(result)
                                    say(_phase_line(result))
        finally:
            if loadgen is not None:
                loadgen.stop()
            if gateway is not None:
                gateway.stop()
            emulator.stop()
    return results


def _start_emulator(port: int) -> tuple[ChildProcess, EmulatorInfo]:
    emulator = ChildProcess(emulator_process, "bench-emulator", port)
    if not emulator.conn.poll(60):
        emulator.stop()
        raise RuntimeError("the emulator did not start")
    return emulator, msgspec.json.decode(emulator.conn.recv_bytes(), type=EmulatorInfo)


def _fixture(info: EmulatorInfo, gateway_url: str, gateway_key: str) -> Fixture:
    fx = Fixture(
        gateway_url=gateway_url,
        gateway_key=gateway_key,
        emulator_url=info.base_url,
        authorization=_basic(info.api_key),
        business_id=info.business_id,
        availability_practitioner=info.practitioner_ids[0],
        booking_practitioners=info.practitioner_ids[1:] or info.practitioner_ids,
        service_id=info.service_id,
        service_minutes=info.service_minutes,
        patient_id=info.patient_id,
        appointment_id="",
        availability_day=_first_open_day(info.time_zone, 1).isoformat(),
        first_booking_day=_first_open_day(info.time_zone, 2).isoformat(),
        time_zone=info.time_zone,
        open_from=info.open_from,
        slots_per_day=_slots_per_day(info),
        patient_ids=info.patient_ids,
    )
    fx.appointment_id = _seed_appointment(fx)
    return fx


def _seed_appointment(fx: Fixture) -> str:
    """Books the appointment the GET phases read (slot 0) straight on the emulator; returns its id."""
    practitioner, start = _slot_start(fx, 0)
    headers = {"authorization": fx.authorization, "user-agent": USER_AGENT, "content-type": "application/json"}
    answer = httpx.post(
        f"{fx.emulator_url}/v1/individual_appointments",
        content=_direct_appointment(fx, practitioner, start),
        headers=headers,
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def _sampler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the gateway for one phase (collapsed stacks, `--idle` excluded), if py-spy is installed."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    command = [exe, "record", "-p", str(pid), "-r", "200", "--nonblocking", "--gil", "-f", "raw", "-o", str(out)]
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the phase starts
    return sampler


WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, '
    .. '"p50": %f, "p95": %f, "p99": %f, "mean": %f}\\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


def _wrk_command(fx: Fixture, spec: PhaseSpec, workdir: Path, seconds: float) -> list[str]:
    """wrk's command line for one read phase (C, ~20 µs a request, so the generator never limits the direct path)."""
    direct = spec.target is Target.DIRECT
    if direct:
        url = f"{fx.emulator_url}/v1/individual_appointments/{fx.appointment_id}"
        headers = [f"authorization: {fx.authorization}", f"user-agent: {USER_AGENT}"]
    else:
        url = f"{fx.gateway_url}/v1/appointments/{fx.appointment_id}"
        headers = [f"x-api-key: {fx.gateway_key}"]
    script = workdir / "report.lua"
    script.write_text(WRK_REPORT)
    threads = 1 if spec.concurrency < 4 else 2
    command = ["wrk", "-t", str(threads), "-c", str(spec.concurrency), "-d", f"{max(1.0, seconds):.0f}s"]
    command += ["-s", str(script), "--timeout", "30s", "-H", "accept: application/json"]
    for header in headers:
        command += ["-H", header]
    return [*command, url]


def _wrk_warm_up(fx: Fixture, spec: PhaseSpec, workdir: Path) -> None:
    """One second of the same load before the counters are read, as the Python generator warms up too."""
    subprocess.run(_wrk_command(fx, spec, workdir, 1.0), capture_output=True, check=True)


def _wrk_phase(fx: Fixture, spec: PhaseSpec, workdir: Path) -> tuple[PhaseResult, float]:
    """A read phase sent by wrk; returns the result and wrk's CPU seconds."""
    warmed = os.times()
    done = subprocess.run(_wrk_command(fx, spec, workdir, spec.seconds), capture_output=True, check=True, text=True)
    finished = os.times()
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("{"))
    report = msgspec.json.decode(line)
    cpu = (finished.children_user + finished.children_system) - (warmed.children_user + warmed.children_system)
    seconds = report["duration_us"] / 1e6
    requests = int(report["requests"])
    bad = int(report["errors"]) + int(report["non2xx"])
    result = PhaseResult(
        backend="",
        repetition=0,
        op=spec.op,
        target=spec.target,
        concurrency=spec.concurrency,
        requests=requests,
        sent=requests,
        ok=requests - bad,
        conflicts=0,
        errors={"wrk": bad} if bad else {},
        seconds=round(seconds, 4),
        rps=round(requests / seconds, 2) if seconds > 0 else 0.0,
        p50_ms=round(report["p50"] / 1000, 3),
        p95_ms=round(report["p95"] / 1000, 3),
        p99_ms=round(report["p99"] / 1000, 3),
        mean_ms=round(report["mean"] / 1000, 3),
    )
    return result, cpu


def _measured(
    loadgen: ChildProcess,
    spec: PhaseSpec,
    pids: dict[str, int],
    probe: httpx.Client,
    emulator_url: str,
    py_spy: Path | None = None,
    wrk: tuple[Fixture, Path] | None = None,
) -> PhaseResult:
    """Run one phase in the load generator (wrk for reads when it is installed), with the EMR calls and CPU time
    each process spent on it."""
    use_wrk = wrk is not None and spec.op is Op.GET
    if use_wrk:
        assert wrk is not None
        _wrk_warm_up(wrk[0], spec, wrk[1])
    calls_before = _emulator_requests(probe, emulator_url)
    sampler = _sampler(pids["gateway"], py_spy) if py_spy is not None else None
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items() if not (use_wrk and name == "loadgen")}
    if use_wrk:
        assert wrk is not None
        result, wrk_cpu = _wrk_phase(wrk[0], spec, wrk[1])
    else:
        loadgen.conn.send_bytes(msgspec.json.encode(spec))
        result = msgspec.json.decode(loadgen.conn.recv_bytes(), type=PhaseResult)
    cpu_after = {name: _cpu_seconds(pid) for name, pid in pids.items() if name in cpu_before}
    if use_wrk and result.sent:
        result.cpu_ms_per_request["loadgen (wrk)"] = round(wrk_cpu * 1000 / result.sent, 3)
    if sampler is not None:
        sampler.send_signal(signal.SIGINT)
        sampler.wait(timeout=30)
    calls = _emulator_requests(probe, emulator_url) - calls_before  # control routes are not counted
    if result.sent:
        result.emr_calls_per_request = round(calls / result.sent, 2)
        for name, before in cpu_before.items():
            after = cpu_after[name]
            if before is not None and after is not None:
                result.cpu_ms_per_request[name] = round((after - before) * 1000 / result.sent, 3)
    return result


# ---------------------------------------------------------------------------------------------- reporting


def _phase_line(r: PhaseResult) -> str:
    extra = f" 409={r.conflicts}" if r.conflicts else ""
    extra += f" errors={r.errors}" if r.errors else ""
    return (
        f"  [{r.backend} rep {r.repetition}] {r.op:<12} c={r.concurrency:<3} {r.target:<7} n={r.requests:<5} "
        f"{r.rps:8.1f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms{extra}"
    )


def _stat(values: Sequence[float]) -> Stat:
    return Stat(median=round(statistics.median(values), 3), min=round(min(values), 3), max=round(max(values), 3))


def summarize(phases: Sequence[PhaseResult]) -> tuple[list[Summary], list[Comparison]]:
    groups: dict[tuple[str, Op, int, Target], list[PhaseResult]] = {}
    for p in phases:
        groups.setdefault((p.backend, p.op, p.concurrency, p.target), []).append(p)
    summaries: list[Summary] = []
    for (backend, op, concurrency, target), runs in groups.items():
        calls = [r.emr_calls_per_request for r in runs if r.emr_calls_per_request is not None]
        cpu_names = {name for r in runs for name in r.cpu_ms_per_request}
        summaries.append(
            Summary(
                backend=backend,
                op=op,
                concurrency=concurrency,
                target=target,
                repetitions=len(runs),
                requests=sum(r.requests for r in runs),
                rps=_stat([r.rps for r in runs]),
                p50_ms=_stat([r.p50_ms for r in runs]),
                p95_ms=_stat([r.p95_ms for r in runs]),
                p99_ms=_stat([r.p99_ms for r in runs]),
                conflicts=sum(r.conflicts for r in runs),
                errors=sum(sum(r.errors.values()) for r in runs),
                emr_calls_per_request=round(statistics.median(calls), 2) if calls else None,
                cpu_ms_per_request={
                    name: round(statistics.median([r.cpu_ms_per_request[name] for r in runs]), 3)
                    for name in sorted(cpu_names)
                    if all(name in r.cpu_ms_per_request for r in runs)
                },
            )
        )
    by_key = {(s.backend, s.op, s.concurrency, s.target): s for s in summaries}
    comparisons: list[Comparison] = []
    for (backend, op, concurrency, target), runs in groups.items():
        if target is not Target.GATEWAY or (backend, op, concurrency, Target.DIRECT) not in groups:
            continue
        direct_runs = groups[(backend, op, concurrency, Target.DIRECT)]
        gw = by_key[(backend, op, concurrency, Target.GATEWAY)]
        dr = by_key[(backend, op, concurrency, Target.DIRECT)]
        deltas = [g.p50_ms - d.p50_ms for g, d in zip(runs, direct_runs, strict=False)]
        comparisons.append(
            Comparison(
                backend=backend,
                op=op,
                concurrency=concurrency,
                added_p50_ms=round(gw.p50_ms.median - dr.p50_ms.median, 3),
                added_p50_ms_min=round(min(deltas), 3),
                added_p50_ms_max=round(max(deltas), 3),
                rps_ratio=round(gw.rps.median / dr.rps.median, 3) if dr.rps.median else float("nan"),
            )
        )
    return summaries, comparisons


def check_targets(summaries: Sequence[Summary], comparisons: Sequence[Comparison]) -> list[TargetCheck]:
    """The request-path targets: reads at >= 0.5x direct with <= 2 ms added at 1 client and p99 <= 4x p50 at 10,
    <= 1.5 ms gateway CPU a read, and a booking making exactly the adapter's minimum of EMR calls at >= 0.5x a direct
    client making the same calls."""
    checks: list[TargetCheck] = []
    for backend in sorted({s.backend for s in summaries}):
        mine = [s for s in summaries if s.backend == backend and s.target is Target.GATEWAY]
        checks += _targets_for(backend, mine, [c for c in comparisons if c.backend == backend])
    return checks


def _targets_for(backend: str, gateway: Sequence[Summary], comparisons: Sequence[Comparison]) -> list[TargetCheck]:
    from adapters.cliniko.adapter import ClinikoAdapter

    minimum = ClinikoAdapter.min_booking_calls
    checks: list[TargetCheck] = []

    def summary(op: Op, c: int) -> Summary | None:
        return next((x for x in gateway if (x.op, x.concurrency) == (op, c)), None)

    def ratio(op: Op, c: int) -> float | None:
        found = next((x for x in comparisons if (x.op, x.concurrency) == (op, c)), None)
        return found.rps_ratio if found else None

    def add(target: str, measured: float | None, limit: str, ok: Callable[[float], bool]) -> None:
        value = None if measured is None or measured != measured else round(measured, 3)
        checks.append(TargetCheck(backend, target, value, limit, None if value is None else ok(value)))

    for c in (1, 10):
        add(f"get c={c} gateway/direct req/s", ratio(Op.GET, c), ">= 0.5", lambda v: v >= 0.5)
    added = next((x for x in comparisons if (x.op, x.concurrency) == (Op.GET, 1)), None)
    add("get c=1 added p50 ms", added.added_p50_ms if added else None, "<= 2", lambda v: v <= 2)
    busy = summary(Op.GET, 10)
    spread = busy.p99_ms.median / busy.p50_ms.median if busy and busy.p50_ms.median else None
    add("get c=10 p99/p50", spread, "<= 4", lambda v: v <= 4)
    read = summary(Op.GET, 1)
    add(
        "get c=1 gateway CPU ms/read",
        read.cpu_ms_per_request.get("gateway") if read else None,
        "<= 1.5",
        lambda v: v <= 1.5,
    )
    book = summary(Op.BOOK, 10)
    calls = book.emr_calls_per_request if book else None
    add("book c=10 EMR calls/booking", calls, f"= {minimum} (Cliniko's min_booking_calls)", lambda v: v == minimum)
    add("book c=10 gateway/direct req/s", ratio(Op.BOOK, 10), ">= 0.5", lambda v: v >= 0.5)
    return checks


def targets_table(checks: Sequence[TargetCheck]) -> str:
    lines = [f"{'backend':<8} {'target':<32} {'measured':>9}  {'limit':<44} met"]
    for c in checks:
        measured = "-" if c.measured is None else f"{c.measured:.3f}"
        met = "-" if c.met is None else ("yes" if c.met else "NO")
        lines.append(f"{c.backend:<8} {c.target:<32} {measured:>9}  {c.limit:<44} {met}")
    return "\n".join(lines)


def _fmt(stat: Stat, digits: int = 1) -> str:
    return f"{stat.median:.{digits}f} [{stat.min:.{digits}f}-{stat.max:.{digits}f}]"


def table(summaries: Sequence[Summary], comparisons: Sequence[Comparison]) -> str:
    header = (
        f"{'backend':<8} {'op':<12} {'c':>3} {'target':<7} {'n':>6} {'req/s med [min-max]':>24} "
        f"{'p50 ms':>20} {'p95 ms':>20} {'p99 ms':>20} {'EMR/req':>7} {'CPU ms/req gw|emu|load':>24} {'409/err':>8}"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        cpu = "|".join(f"{s.cpu_ms_per_request.get(n, float('nan')):.2f}" for n in ("gateway", "emulator", "loadgen"))
        calls = f"{s.emr_calls_per_request:.2f}" if s.emr_calls_per_request is not None else "-"
        lines.append(
            f"{s.backend:<8} {s.op:<12} {s.concurrency:>3} {s.target:<7} {s.requests:>6} {_fmt(s.rps):>24} "
            f"{_fmt(s.p50_ms, 2):>20} {_fmt(s.p95_ms, 2):>20} {_fmt(s.p99_ms, 2):>20} {calls:>7} {cpu:>24} "
            f"{f'{s.conflicts}/{s.errors}':>8}"
        )
    lines += ["", f"{'backend':<8} {'op':<12} {'c':>3} {'added p50 ms med [min-max]':>28} {'gateway/direct req/s':>21}"]
    for c in comparisons:
        added = f"{c.added_p50_ms:.2f} [{c.added_p50_ms_min:.2f}-{c.added_p50_ms_max:.2f}]"
        lines.append(f"{c.backend:<8} {c.op:<12} {c.concurrency:>3} {added:>28} {c.rps_ratio:>21.3f}")
    return "\n".join(lines)


def _git_state() -> dict[str, Any] | None:
    """The commit measured and whether the tree had local changes (numbers move with the code)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10).stdout

    try:
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(git("status", "--porcelain").strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def write_report(out_dir: str | Path, benchmark: str, started: datetime.datetime, report: msgspec.Struct) -> Path:
    """`<benchmark>-<UTC start>.json` and `<benchmark>-latest.json` (the same bytes) under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoded = msgspec.json.format(msgspec.json.encode(report), indent=2)
    path = out / f"{benchmark}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_bytes(encoded)
    (out / f"{benchmark}-latest.json").write_bytes(encoded)
    return path


def machine_info() -> dict[str, Any]:
    import importlib.metadata
    import importlib.util

    model: str | None = None
    with suppress(OSError):
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            None,
        )
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    versions: dict[str, str | None] = {}
    for package in ("litestar", "uvicorn", "httpx", "msgspec", "sqlalchemy", "aiosqlite", "psycopg"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "git": _git_state(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "uvicorn_http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "uvicorn_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "packages": versions,
    }


# ---------------------------------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.overhead", description="Gateway overhead vs. the Cliniko emulator directly."
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke run (~30 s): 1 repetition, few requests")
    size.add_argument("--full", action="store_true", help="also concurrency 50")
    p.add_argument("--concurrency", type=int, nargs="+", help="client counts (default 1 10; --full adds 50)")
    p.add_argument("--repetitions", type=int, help="repetitions per phase (default 3; --quick 1)")
    p.add_argument("--requests", type=int, help="measured requests per phase (default 300; --quick 60)")
    p.add_argument("--seconds", type=float, help="time bound per phase (default 2; --quick 1)")
    p.add_argument("--ops", nargs="+", choices=[o.value for o in Op], help="operations (default: all)")
    p.add_argument(
        "--backend",
        choices=["sqlite", "postgres", "all"],
        default="all",
        help=f"storage (default all: SQLite, and PostgreSQL when {' or '.join(PG_ENVS)} is set)",
    )
    p.add_argument("--gateway-log-level", default="INFO", help="the gateway's EGW_LOG_LEVEL (default INFO, as served)")
    p.add_argument("--profile-dir", help="run the gateway under cProfile and write gateway-<backend>.prof there")
    p.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="reads: wrk (C; default when installed: the Python generator saturates first) or the Python one",
    )
    p.add_argument(
        "--gateway-worker",
        action="store_true",
        help="run the gateway with its in-process worker (default: `serve --no-worker`, an API replica)",
    )
    p.add_argument(
        "--py-spy-dir",
        help="sample the gateway with py-spy during each gateway phase; collapsed stacks go there (one file a phase)",
    )
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON goes (default bench/results)")
    return p.parse_args(list(argv))


def settings_from(args: argparse.Namespace) -> Settings:
    everything = ["sqlite", "postgres"] if _pg_dsn() else ["sqlite"]
    backends = everything if args.backend == "all" else [args.backend]
    if "postgres" in backends and not _pg_dsn():
        raise SystemExit(f"--backend postgres needs {' or '.join(PG_ENVS)}")
    default_concurrency = [1, 10, 50] if args.full else [1, 10]
    return Settings(
        backends=backends,
        concurrency=args.concurrency or default_concurrency,
        repetitions=args.repetitions or (1 if args.quick else 3),
        requests=args.requests or (60 if args.quick else 300),
        seconds=args.seconds or (1.0 if args.quick else 2.0),
        warmup=5 if args.quick else 10,
        ops=[Op(o) for o in args.ops] if args.ops else list(Op),
        gateway_log_level=args.gateway_log_level,
        profile_dir=args.profile_dir,
        py_spy_dir=args.py_spy_dir,
        gateway_worker=args.gateway_worker,
        wrk=args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk") is not None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_from(args)
    started = datetime.datetime.now(datetime.UTC)
    for directory in (settings.profile_dir, settings.py_spy_dir):
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(line, flush=True)

    say(
        f"gateway overhead: backends={','.join(settings.backends)} concurrency={settings.concurrency} "
        f"repetitions={settings.repetitions} requests/phase={settings.requests} (≤{settings.seconds:g}s each)"
    )
    phases: list[PhaseResult] = []
    for backend in settings.backends:
        phases += run_backend(backend, settings, say)
    summaries, comparisons = summarize(phases)
    report = Report(
        benchmark="overhead",
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        settings=msgspec.to_builtins(settings),
        machine=machine_info(),
        backends=settings.backends,
        phases=phases,
        summary=summaries,
        comparisons=comparisons,
        targets=check_targets(summaries, comparisons),
    )
    path = write_report(args.out, "overhead", started, report)
    say("")
    say(table(summaries, comparisons))
    say(f"\nreads sent by {'wrk' if settings.wrk else 'the Python generator'}; targets (issue 16):")
    say(targets_table(report.targets))
    say(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

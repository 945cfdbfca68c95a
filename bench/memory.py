"""Resident memory of `emr-gateway serve`: idle, after a warm-up, and at checkpoints up to 100 000 requests.

The question is whether the process grows without bound under a steady mix of traffic (reads, bookings with
unique Idempotency-Keys and their cancellations, 404s, 401s, several API keys): it may grow while caches, pools and
allocator arenas fill up, but after that its RSS should stay flat. So the figure to read is the slope over the
second half of the run, next to the growth since the warm-up and the idle baseline of the same run.

Processes, all on loopback: the Cliniko emulator (own process), the gateway (`emr-gateway serve`, the process
under test, on a fresh database), a load generator (httpx, N concurrent clients, own process, keeps its
connections across checkpoints) and this driver, which reads VmRSS/VmHWM from /proc between load chunks. Numbers go
to a table and to `bench/results/memory-<timestamp>.json`; nothing here asserts a size.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.overhead import (
    EMR_BUDGETS_OFF,
    PG_ENVS,
    RESULTS_DIR,
    USER_AGENT,
    ChildProcess,
    EmulatorInfo,
    Fixture,
    Gateway,
    Stat,
    _basic,
    _cpu_seconds,
    _fixture,
    _percentile,
    _pg_dsn,
    _provision,
    _slot_start,
    _start_emulator,
    _stat,
    database,
    machine_info,
    write_report,
)

# One cycle of the mix: 100 requests in 90 operations (a booking is followed by its cancellation, so it sends 2).
MIX: dict[str, int] = {
    "get": 30,  # GET /v1/appointments/{id}: one of the recent bookings (or the seeded appointment)
    "availability": 20,  # GET /v1/availability, one day, rotating over a week
    "practitioners": 15,  # GET /v1/practitioners (the cached catalog)
    "not_found": 10,  # GET /v1/appointments/{unknown id} -> 404
    "unauthorized": 5,  # GET /v1/practitioners with a fresh unknown key -> 401
    "book": 10,  # POST /v1/appointments (unique Idempotency-Key), then POST …/cancel (its own key)
}
CYCLE_REQUESTS = sum(MIX.values()) + MIX["book"]
EXPECTED: dict[str, int] = {
    "get": 200,
    "availability": 200,
    "practitioners": 200,
    "not_found": 404,
    "unauthorized": 401,
    "book": 201,
    "cancel": 200,
}
RECENT_IDS = 100  # GETs read the last N appointments booked


def _cycle() -> list[str]:
    """The operations of one cycle, each kind spread evenly over it (not in blocks)."""
    placed = [((k + 0.5) / weight, index, op) for index, (op, weight) in enumerate(MIX.items()) for k in range(weight)]
    return [op for _, _, op in sorted(placed)]


CYCLE = _cycle()


# ---------------------------------------------------------------------------------------------- messages


class LoadPlan(msgspec.Struct):
    """What the load generator needs once: where to send, with which keys, for whom to book."""

    fixture: Fixture
    api_keys: list[str]  # requests rotate over these (valid) keys
    patient_ids: list[str]  # bookings rotate over these, so no patient's appointment list grows long
    slot_cycle: int  # booking n takes slot 1 + n % slot_cycle (cancelled at once, so slots are reused)
    concurrency: int
    run_id: str


class Chunk(msgspec.Struct):
    cycles: int


class ChunkResult(msgspec.Struct):
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    p50_ms_by_op: dict[str, float]
    statuses: dict[str, dict[str, int]]  # op -> status (or exception name) -> count
    unexpected: int  # responses whose status is not the op's expected one


class Memory(msgspec.Struct):
    """From /proc/<pid>/status, in KiB; `fds` from /proc/<pid>/fd."""

    rss_kib: int
    hwm_kib: int
    anon_kib: int
    file_kib: int
    threads: int
    fds: int


class Checkpoint(msgspec.Struct):
    label: str  # "idle", "warm-up", or the requests since the warm-up
    requests: int  # requests since the warm-up ended (0 for idle and warm-up)
    at_seconds: float  # since the gateway started listening
    gateway: Memory
    emulator: Memory
    chunk: ChunkResult | None = None
    gateway_cpu_ms_per_request: float | None = None


class RunResult(msgspec.Struct):
    backend: str
    run: int
    requests: int  # measured (after the warm-up)
    seconds: float  # the measured requests' wall time (readings excluded)
    rps: float
    chunk_rps: Stat  # over the checkpoint chunks
    idle_kib: int
    warm_kib: int
    final_kib: int
    peak_kib: int  # VmHWM at the end
    growth_kib: int  # final - warm-up
    slope_kib_per_10k: float  # least squares over the checkpoints of the second half
    second_half_steps_kib_per_10k: Stat  # checkpoint-to-checkpoint growth in the second half, per 10 000
    bytes_per_request: float  # slope_kib_per_10k in bytes per request
    emulator_idle_kib: int
    emulator_final_kib: int
    unexpected: int
    checkpoints: list[Checkpoint]


class Summary(msgspec.Struct):
    backend: str
    runs: int
    requests: int
    rps: Stat
    idle_kib: Stat
    warm_kib: Stat
    final_kib: Stat
    peak_kib: Stat
    growth_kib: Stat
    slope_kib_per_10k: Stat
    emulator_final_kib: Stat


class Settings(msgspec.Struct):
    backends: list[str]
    requests: int  # measured, after the warm-up (rounded up to whole cycles)
    warmup: int
    checkpoints: int
    concurrency: int
    runs: int
    api_keys: int
    patients: int
    slot_cycle: int
    idle_seconds: float  # after the gateway listens, before the idle reading (its worker's first sync tick is 5 s)
    settle_seconds: float  # after each chunk, before its reading
    gateway_log_level: str


class Report(msgspec.Struct):
    benchmark: str
    started_at: str
    finished_at: str
    settings: Settings
    mix: dict[str, int]
    machine: dict[str, Any]
    gateway_env: dict[str, str]  # set by this benchmark, besides overhead's Gateway (rate limit, log level)
    runs: list[RunResult]
    summary: list[Summary]


# ---------------------------------------------------------------------------------------------- /proc


def memory_of(pid: int) -> Memory:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()

    def kib(name: str) -> int:
        return int(fields.get(name, "0 kB").split()[0])

    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return Memory(
        rss_kib=kib("VmRSS"),
        hwm_kib=kib("VmHWM"),
        anon_kib=kib("RssAnon"),
        file_kib=kib("RssFile"),
        threads=int(fields.get("Threads", "0")),
        fds=fds,
    )


# ---------------------------------------------------------------------------------------------- load generator


class _LoadState:
    """Counters that carry over from chunk to chunk, so keys, slots and ids never repeat within a run."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.op_index = 0
        self.bookings = 0
        self.unknown = 0
        self.recent: list[str] = []


async def _request(client: httpx.AsyncClient, state: _LoadState, op: str, n: int) -> list[tuple[str, str, float]]:
    """One operation (a booking sends two requests); returns (op, status, seconds) per request."""
    plan, fx = state.plan, state.plan.fixture
    key = {"x-api-key": plan.api_keys[n % len(plan.api_keys)]}
    out: list[tuple[str, str, float]] = []

    async def send(name: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            out.append((name, type(exc).__name__, time.perf_counter() - began))
            return None
        out.append((name, str(response.status_code), time.perf_counter() - began))
        return response

    if op == "get":
        ident = state.recent[n % len(state.recent)] if state.recent else fx.appointment_id
        await send(op, "GET", f"/v1/appointments/{ident}", headers=key)
    elif op == "availability":
        day = datetime.date.fromisoformat(fx.availability_day) + datetime.timedelta(days=n % 7)
        params = {
            "practitioner_id": fx.availability_practitioner,
            "service_id": fx.service_id,
            "from": day.isoformat(),
            "to": day.isoformat(),
        }
        await send(op, "GET", "/v1/availability", params=params, headers=key)
    elif op == "practitioners":
        await send(op, "GET", "/v1/practitioners", headers=key)
    elif op == "not_found":
        state.unknown += 1
        await send(op, "GET", f"/v1/appointments/{9_000_000_000 + state.unknown}", headers=key)
    elif op == "unauthorized":
        await send(op, "GET", "/v1/practitioners", headers={"x-api-key": "egw_live_" + secrets.token_hex(26)})
    elif op == "book":
        booking = state.bookings
        state.bookings += 1
        practitioner, start = _slot_start(fx, 1 + booking % plan.slot_cycle)  # slot 0: the seeded appointment
        body = {
            "practitioner": {"id": practitioner},
            "service": {"id": fx.service_id},
            "patient": {"id": plan.patient_ids[booking % len(plan.patient_ids)]},
            "start": start,
        }
        idem = f"mem-{plan.run_id}-{booking}"
        booked = await send(op, "POST", "/v1/appointments", json=body, headers={**key, "Idempotency-Key": idem})
        if booked is not None and booked.status_code == 201:
            ident = str(booked.json()["id"])
            state.recent = [*state.recent[-(RECENT_IDS - 1) :], ident]
            await send(
                "cancel",
                "POST",
                f"/v1/appointments/{ident}/cancel",
                json={},
                headers={**key, "Idempotency-Key": f"{idem}-cancel"},
            )
    else:
        raise ValueError(op)
    return out


async def _run_chunk(client: httpx.AsyncClient, state: _LoadState, chunk: Chunk) -> ChunkResult:
    total = chunk.cycles * len(CYCLE)
    first = state.op_index
    state.op_index += total
    indices = iter(range(first, first + total))  # shared by the workers: each operation is sent once
    samples: list[tuple[str, str, float]] = []

    async def worker() -> None:
        for n in indices:
            samples.extend(await _request(client, state, CYCLE[n % len(CYCLE)], n))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(state.plan.concurrency)))
    elapsed = time.perf_counter() - began
    statuses: dict[str, dict[str, int]] = {}
    for op, status, _ in samples:
        counts = statuses.setdefault(op, {})
        counts[status] = counts.get(status, 0) + 1
    unexpected = sum(1 for op, status, _ in samples if status != str(EXPECTED[op]))
    ordered = sorted(seconds * 1000 for _, _, seconds in samples)
    by_op: dict[str, list[float]] = {}
    for op, _, seconds in samples:
        by_op.setdefault(op, []).append(seconds * 1000)
    return ChunkResult(
        requests=len(samples),
        seconds=round(elapsed, 3),
        rps=round(len(samples) / elapsed, 2) if elapsed > 0 else 0.0,
        p50_ms=round(_percentile(ordered, 0.50), 3),
        p99_ms=round(_percentile(ordered, 0.99), 3),
        p50_ms_by_op={op: round(_percentile(sorted(ms), 0.50), 3) for op, ms in sorted(by_op.items())},
        statuses=statuses,
        unexpected=unexpected,
    )


async def _serve_load(conn: Connection) -> None:
    plan = msgspec.json.decode(await asyncio.to_thread(conn.recv_bytes), type=LoadPlan)
    state = _LoadState(plan)
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    headers = {"accept": "application/json"}
    async with httpx.AsyncClient(base_url=plan.fixture.gateway_url, headers=headers, limits=limits, timeout=60) as c:
        while True:
            try:
                raw = await asyncio.to_thread(conn.recv_bytes)
            except EOFError:
                return
            if raw == b"stop":
                return
            result = await _run_chunk(c, state, msgspec.json.decode(raw, type=Chunk))
            conn.send_bytes(msgspec.json.encode(result))


def loadgen_process(conn: Connection) -> None:
    """Child process: one event loop and one connection pool for the whole run, a chunk of cycles per message."""
    asyncio.run(_serve_load(conn))


# ---------------------------------------------------------------------------------------------- set-up


async def _more_keys(database_url: str, master_key: str, first_key: str, count: int) -> list[str]:
    """`count` keys for the location `first_key` belongs to, `first_key` included."""
    from gateway.crypto import Keyring
    from gateway.storage.store import Store

    store = await Store.open(database_url, Keyring.parse(master_key))
    try:
        record = await store.authenticate(first_key)
        assert record is not None
        keys = [first_key]
        for _ in range(count - 1):
            keys.append((await store.issue_key(record.location_id)).secret)
        return keys
    finally:
        await store.close()


def _create_patients(info: EmulatorInfo, count: int) -> list[str]:
    """Patients made straight on the emulator: each booking re-reads its patient's appointments (change detection),
    so spreading bookings over many patients keeps that read one page long, as at a real clinic."""
    headers = {"authorization": _basic(info.api_key), "user-agent": USER_AGENT}
    ids: list[str] = []
    with httpx.Client(base_url=info.base_url, headers=headers, timeout=10) as client:
        for i in range(count):
            body = {"first_name": "Bench", "last_name": f"Patient {i:04d}", "email": f"bench.{i:04d}@example.com"}
            answer = client.post("/v1/patients", json=body)
            answer.raise_for_status()
            ids.append(str(answer.json()["id"]))
    return ids


def _wait_listening(gateway: Gateway, timeout: float = 60.0) -> None:
    """Ready = the port accepts a connection; no HTTP request, so the idle reading comes before any request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"the gateway exited ({gateway.process.returncode}):\n{gateway._tail()}")
        try:
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the gateway did not listen within {timeout:.0f}s:\n{gateway._tail()}")


# ---------------------------------------------------------------------------------------------- one run


def _slope_per_10k(points: Sequence[tuple[int, int]]) -> float:
    """Least-squares KiB per 10 000 requests through (requests, rss_kib) points."""
    if len(points) < 2:
        return float("nan")
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 10_000


def run_once(backend: str, run: int, settings: Settings, say: Any) -> RunResult:
    """Fresh emulator, database and gateway; idle reading, warm-up, then a reading after each chunk."""
    from gateway.crypto import generate_key

    master_key = generate_key()
    with tempfile.TemporaryDirectory(prefix=f"egw-bench-memory-{backend}-") as tmp:
        workdir = Path(tmp)
        emulator, info = _start_emulator(0)
        gateway: Gateway | None = None
        loadgen: ChildProcess | None = None
        try:
            with database(backend, workdir) as database_url:
                first_key = asyncio.run(_provision(database_url, master_key, info))
                keys = asyncio.run(_more_keys(database_url, master_key, first_key, settings.api_keys))
                patients = _create_patients(info, settings.patients)
                gateway = Gateway(database_url, master_key, workdir, settings.gateway_log_level, None)
                _wait_listening(gateway)
                rig = _Rig(backend, run, settings, say, gateway.pid, emulator.pid)
                fx = _fixture(info, gateway.url, first_key)  # books the seeded appointment on the emulator
                loadgen = ChildProcess(loadgen_process, "bench-memory-loadgen")
                plan = LoadPlan(
                    fixture=fx,
                    api_keys=keys,
                    patient_ids=patients,
                    slot_cycle=settings.slot_cycle,
                    concurrency=settings.concurrency,
                    run_id=uuid.uuid4().hex[:12],
                )
                loadgen.conn.send_bytes(msgspec.json.encode(plan))
                return rig.measure(loadgen)
        finally:
            if loadgen is not None:
                loadgen.stop()
            if gateway is not None:
                gateway.stop()
            emulator.stop()


class _Rig:
    """The readings of one run: the processes are up, the load generator has its plan."""

    def __init__(self, backend: str, run: int, settings: Settings, say: Any, gateway_pid: int, emulator_pid: int):
        self.backend, self.run, self.settings, self.say = backend, run, settings, say
        self.gateway_pid, self.emulator_pid = gateway_pid, emulator_pid
        self.listening = time.monotonic()

    def reading(self, label: str, requests: int, chunk: ChunkResult | None, cpu: float | None) -> Checkpoint:
        point = Checkpoint(
            label=label,
            requests=requests,
            at_seconds=round(time.monotonic() - self.listening, 1),
            gateway=memory_of(self.gateway_pid),
            emulator=memory_of(self.emulator_pid),
            chunk=chunk,
            gateway_cpu_ms_per_request=cpu,
        )
        self.say(_checkpoint_line(self.backend, self.run, point))
        return point

    def load(self, loadgen: ChildProcess, cycles: int) -> tuple[ChunkResult, float | None]:
        """One chunk of whole cycles, then a pause so in-flight background work (sync, webhooks) settles."""
        before = _cpu_seconds(self.gateway_pid)
        loadgen.conn.send_bytes(msgspec.json.encode(Chunk(cycles=cycles)))
        result = msgspec.json.decode(loadgen.conn.recv_bytes(), type=ChunkResult)
        after = _cpu_seconds(self.gateway_pid)
        cpu = None
        if before is not None and after is not None and result.requests:
            cpu = round((after - before) * 1000 / result.requests, 3)
        time.sleep(self.settings.settle_seconds)
        return result, cpu

    def measure(self, loadgen: ChildProcess) -> RunResult:
        settings = self.settings
        cycles_total = -(-settings.requests // CYCLE_REQUESTS)
        chunks = [
            cycles_total * (i + 1) // settings.checkpoints - cycles_total * i // settings.checkpoints
            for i in range(settings.checkpoints)
        ]
        time.sleep(max(0.0, settings.idle_seconds - (time.monotonic() - self.listening)))
        points = [self.reading("idle", 0, None, None)]
        warm, cpu = self.load(loadgen, max(1, -(-settings.warmup // CYCLE_REQUESTS)))
        points.append(self.reading("warm-up", 0, warm, cpu))
        done = 0
        seconds = 0.0
        for cycles in chunks:
            chunk, cpu = self.load(loadgen, cycles)
            done += chunk.requests
            seconds += chunk.seconds
            points.append(self.reading(f"{done}", done, chunk, cpu))
        return _run_result(self.backend, self.run, points, done, seconds)


def _run_result(backend: str, run: int, points: list[Checkpoint], done: int, seconds: float) -> RunResult:
    idle, warm, measured = points[0], points[1], points[2:]
    half = [(p.requests, p.gateway.rss_kib) for p in measured if p.requests >= done / 2]
    steps = [
        (b.gateway.rss_kib - a.gateway.rss_kib) * 10_000 / (b.requests - a.requests)
        for a, b in itertools.pairwise(measured)
        if a.requests >= done / 2 and b.requests > a.requests
    ]
    slope = _slope_per_10k(half)
    final = measured[-1]
    chunk_rps = [p.chunk.rps for p in measured if p.chunk is not None]
    return RunResult(
        backend=backend,
        run=run,
        requests=done,
        seconds=round(seconds, 1),
        rps=round(done / seconds, 1) if seconds else 0.0,
        chunk_rps=_stat(chunk_rps),
        idle_kib=idle.gateway.rss_kib,
        warm_kib=warm.gateway.rss_kib,
        final_kib=final.gateway.rss_kib,
        peak_kib=final.gateway.hwm_kib,
        growth_kib=final.gateway.rss_kib - warm.gateway.rss_kib,
        slope_kib_per_10k=round(slope, 1),
        second_half_steps_kib_per_10k=_stat(steps)
        if steps
        else Stat(median=float("nan"), min=float("nan"), max=float("nan")),
        bytes_per_request=round(slope * 1024 / 10_000, 2),
        emulator_idle_kib=idle.emulator.rss_kib,
        emulator_final_kib=final.emulator.rss_kib,
        unexpected=sum(p.chunk.unexpected for p in points if p.chunk is not None),
        checkpoints=points,
    )


def summarize(runs: Sequence[RunResult]) -> list[Summary]:
    by_backend: dict[str, list[RunResult]] = {}
    for r in runs:
        by_backend.setdefault(r.backend, []).append(r)
    return [
        Summary(
            backend=backend,
            runs=len(group),
            requests=group[0].requests,
            rps=_stat([r.rps for r in group]),
            idle_kib=_stat([r.idle_kib for r in group]),
            warm_kib=_stat([r.warm_kib for r in group]),
            final_kib=_stat([r.final_kib for r in group]),
            peak_kib=_stat([r.peak_kib for r in group]),
            growth_kib=_stat([r.growth_kib for r in group]),
            slope_kib_per_10k=_stat([r.slope_kib_per_10k for r in group]),
            emulator_final_kib=_stat([r.emulator_final_kib for r in group]),
        )
        for backend, group in by_backend.items()
    ]


# ---------------------------------------------------------------------------------------------- reporting


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _checkpoint_line(backend: str, run: int, p: Checkpoint) -> str:
    chunk = ""
    if p.chunk is not None:
        c = p.chunk
        chunk = f"  {c.rps:7.1f} req/s  p50 {c.p50_ms:7.1f} ms  p99 {c.p99_ms:7.1f} ms"
        if c.unexpected:
            chunk += f"  unexpected={c.unexpected} {c.statuses}"
    g, e = p.gateway, p.emulator
    return (
        f"  [{backend} run {run}] {p.label:>8} t={p.at_seconds:7.1f}s  gateway RSS {_mib(g.rss_kib):>6} MiB "
        f"(anon {_mib(g.anon_kib)}, peak {_mib(g.hwm_kib)}, {g.threads} threads, {g.fds} fds)  "
        f"emulator {_mib(e.rss_kib):>6} MiB{chunk}"
    )


def _fmt(stat: Stat, scale: float = 1.0, digits: int = 1) -> str:
    if stat.min == stat.max:
        return f"{stat.median / scale:.{digits}f}"
    return f"{stat.median / scale:.{digits}f} [{stat.min / scale:.{digits}f}-{stat.max / scale:.{digits}f}]"


def table(runs: Sequence[RunResult], summaries: Sequence[Summary]) -> str:
    lines: list[str] = []
    for r in runs:
        header = (
            f"{'backend':<8} {'run':>3} {'after':>8} {'RSS MiB':>8} {'Δ warm KiB':>11} {'anon MiB':>9} "
            f"{'peak MiB':>9} {'thr':>4} {'fds':>4} {'emu MiB':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>8} "
            f"{'gw CPU ms/req':>13} {'unexp':>5}"
        )
        lines += [header, "-" * len(header)]
        warm = r.warm_kib
        for p in r.checkpoints:
            c = p.chunk
            delta = "" if p.label == "idle" else f"{p.gateway.rss_kib - warm:+d}"
            cpu = f"{p.gateway_cpu_ms_per_request:.2f}" if p.gateway_cpu_ms_per_request is not None else ""
            lines.append(
                f"{r.backend:<8} {r.run:>3} {p.label:>8} {_mib(p.gateway.rss_kib):>8} {delta:>11} "
                f"{_mib(p.gateway.anon_kib):>9} {_mib(p.gateway.hwm_kib):>9} {p.gateway.threads:>4} "
                f"{p.gateway.fds:>4} {_mib(p.emulator.rss_kib):>8} "
                f"{(f'{c.rps:.1f}' if c else ''):>7} {(f'{c.p50_ms:.1f}' if c else ''):>7} "
                f"{(f'{c.p99_ms:.1f}' if c else ''):>8} {cpu:>13} {(str(c.unexpected) if c else ''):>5}"
            )
        steps = r.second_half_steps_kib_per_10k
        lines += [
            f"  growth warm-up -> {r.requests}: {r.growth_kib:+d} KiB; second-half slope {r.slope_kib_per_10k:+.1f} "
            f"KiB per 10 000 requests ({r.bytes_per_request:+.2f} B/request; steps {_fmt(steps)}); "
            f"{r.rps:.1f} req/s (chunks {_fmt(r.chunk_rps)})",
            "",
        ]
    header = (
        f"{'backend':<8} {'runs':>4} {'requests':>8} {'idle MiB':>9} {'warm MiB':>9} {'final MiB':>10} "
        f"{'peak MiB':>9} {'growth KiB':>11} {'slope KiB/10k (2nd half)':>25} {'emu final MiB':>13} {'req/s':>16}"
    )
    lines += [header, "-" * len(header)]
    for s in summaries:
        lines.append(
            f"{s.backend:<8} {s.runs:>4} {s.requests:>8} {_fmt(s.idle_kib, 1024):>9} {_fmt(s.warm_kib, 1024):>9} "
            f"{_fmt(s.final_kib, 1024):>10} {_fmt(s.peak_kib, 1024):>9} {_fmt(s.growth_kib, 1, 0):>11} "
            f"{_fmt(s.slope_kib_per_10k):>25} {_fmt(s.emulator_final_kib, 1024):>13} {_fmt(s.rps):>16}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- entry point


def _parser(*, shared_only: bool) -> argparse.ArgumentParser:
    """`shared_only`: the options `python -m bench` gives every benchmark; others there (--requests, --concurrency)
    are overhead's and mean something else, so this benchmark keeps its defaults for them."""
    p = argparse.ArgumentParser(
        prog="python -m bench.memory", description="Resident memory of `emr-gateway serve` under a steady mix."
    )
    p.add_argument("--quick", action="store_true", help="10 000 requests instead of 100 000 (~3.5 min per backend)")
    p.add_argument(
        "--backend",
        choices=["sqlite", "postgres", "all"],
        default="all",
        help=f"storage (default all: SQLite, and PostgreSQL when {' or '.join(PG_ENVS)} is set)",
    )
    p.add_argument("--gateway-log-level", default="INFO", help="the gateway's EGW_LOG_LEVEL (default INFO, as served)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON goes (default bench/results)")
    if shared_only:
        return p
    p.add_argument("--requests", type=int, help="measured requests after the warm-up (default 100 000)")
    p.add_argument("--warmup", type=int, default=1000, help="requests before the baseline reading (default 1000)")
    p.add_argument("--checkpoints", type=int, default=10, help="readings spread over the requests (default 10)")
    p.add_argument("--concurrency", type=int, default=10, help="concurrent clients (default 10)")
    p.add_argument("--runs", type=int, default=1, help="whole runs per backend, each from scratch (default 1)")
    p.add_argument("--api-keys", type=int, default=4, help="valid API keys the requests rotate over (default 4)")
    p.add_argument("--patients", type=int, default=200, help="patients the bookings rotate over (default 200)")
    return p


def parse_args(argv: Sequence[str], *, lenient: bool = False) -> argparse.Namespace:
    if not lenient:
        return _parser(shared_only=False).parse_args(list(argv))
    shared, _ = _parser(shared_only=True).parse_known_args(list(argv))
    return argparse.Namespace(**{**vars(_parser(shared_only=False).parse_args([])), **vars(shared)})


def settings_from(args: argparse.Namespace) -> Settings:
    everything = ["sqlite", "postgres"] if _pg_dsn() else ["sqlite"]
    backends = everything if args.backend == "all" else [args.backend]
    if "postgres" in backends and not _pg_dsn():
        raise SystemExit(f"--backend postgres needs {' or '.join(PG_ENVS)}")
    requests = args.requests or (10_000 if args.quick else 100_000)
    return Settings(
        backends=backends,
        requests=requests,
        warmup=args.warmup,
        checkpoints=max(2, min(args.checkpoints, requests // CYCLE_REQUESTS)),
        concurrency=args.concurrency,
        runs=args.runs,
        api_keys=max(1, args.api_keys),
        patients=max(1, args.patients),
        slot_cycle=1000,
        idle_seconds=10.0,
        settle_seconds=1.0,
        gateway_log_level=args.gateway_log_level,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


def main_shared(argv: Sequence[str]) -> int:
    """For `python -m bench`: the options every benchmark gets may include ones only another benchmark knows."""
    return run(parse_args(argv, lenient=True))


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = list(os.getloadavg())  # on a shared 2-core box every figure but the RSS moves with it

    def say(line: str) -> None:
        print(line, flush=True)

    say(
        f"gateway memory: backends={','.join(settings.backends)} requests={settings.requests} "
        f"(+{settings.warmup} warm-up) checkpoints={settings.checkpoints} concurrency={settings.concurrency} "
        f"runs={settings.runs}"
    )
    runs: list[RunResult] = []
    for backend in settings.backends:
        for number in range(1, settings.runs + 1):
            runs.append(run_once(backend, number, settings, say))
    summaries = summarize(runs)
    report = Report(
        benchmark="memory",
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        settings=settings,
        mix=MIX,
        machine={**machine_info(), "loadavg_at_start": load_at_start},
        gateway_env={"EGW_EMR_RATE_LIMITS": EMR_BUDGETS_OFF},  # what `Gateway` sets (bench/overhead.py)
        runs=runs,
        summary=summaries,
    )
    path = write_report(args.out, "memory", started, report)
    say("")
    say(table(runs, summaries))
    say(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

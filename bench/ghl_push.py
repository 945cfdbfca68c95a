"""What pushing EMR patients into GoHighLevel costs: GHL requests, EMR requests and seconds per patient.

One process. A Cliniko emulator (`default_seed()` plus N generated patients, one future appointment each through the
emulator's own create method) and a GHL emulator location with a calendar per practitioner, both served by uvicorn on
loopback in threads; a fresh SQLite store (tempdir) holding one gateway location, connected with
`gateway.ghl.destination.connect.connect`, calendar mode `appointments` mapped per practitioner (by name, as `ghl
calendars --auto` does), facts stored with `sync_location(full=True)` (`emr-gateway sync --full`). Then, with the
gateway's own code: the first backfill (`emr-gateway ghl sync`), a second one with nothing changed, the baseline of a
sync with no diff (the same backfill after every link's stored digest is cleared: every contact and event rewritten),
and the steady state (K appointments moved in the EMR's own API, one poll, the push queue drained). Twice: under GHL's
real limit (100 requests per 10 s per location, the gateway's own pacing as shipped) and with both out of reach, so
the gateway's own cost shows. Requests are counted by the emulators (`traffic`), GHL's also by path. Numbers go to a
table and to `bench/results/ghl_push-<timestamp>.json`; nothing here asserts a count or a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
from sqlalchemy import update

from adapters.cliniko import wire as cliniko_wire
from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import EmulatorSeed, SeedPatient, ServerThread, default_seed
from adapters.ghl.emulator import GhlEmulator, GhlLocationSeed
from adapters.pacing import RateLimit
from bench.overhead import HUGE, RESULTS_DIR, machine_info, write_report
from gateway.config import GatewayConfig
from gateway.crypto import Keyring, generate_key
from gateway.ghl.destination import push
from gateway.ghl.destination.backfill import Progress, backfill
from gateway.ghl.destination.connect import configure, connect
from gateway.ghl.destination.settings import CalendarMode
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.storage import ghl_destination as ghl_db
from gateway.storage.migrate import upgrade
from gateway.storage.store import Store
from gateway.storage.tables import ghl_contact_links, ghl_event_links
from gateway.sync.full import sync_location
from gateway.sync.scheduler import tick

UTC = datetime.UTC
GHL_BURST, GHL_WINDOW = 100, 10.0  # "100 API requests per 10 seconds ... per resource" (GHL's documented limit)
SEED_AGE = datetime.timedelta(days=30)  # seeded records are stamped this long ago, so no poll cursor re-reads them
FIRST_DAY, DAYS, SLOTS_PER_DAY = 2, 60, 16  # appointments from 2 days ahead over 60 days, 30-minute slots from 09:00
MOVE = datetime.timedelta(days=1)  # the steady state's moves: a day later, same time
DRAIN_SECONDS = 120.0
WORKER = "bench-ghl"
USER_AGENT = "EMR Gateway bench (bench@example.com)"
# Out of reach for the unlimited run, with the batch sizes `LeasedBudget` takes from the shared (database) bucket
# unchanged (burst // 2: 5 and 1 tokens per round trip, as production's 9/s and 2/s give), so the gateway's own
# budget work per request stays what it is in production.
GHL_UNPACED = (RateLimit(per_second=float(HUGE), burst=10), RateLimit(per_second=float(HUGE), burst=2))
_GHL_ID = re.compile(r"^[A-Za-z0-9]{20}$")


# ---------------------------------------------------------------------------------------------- messages


class Phase(msgspec.Struct, kw_only=True):
    """One measured step of one run."""

    run: str  # "ghl-limit" or "unlimited"
    name: str  # first-backfill, second-backfill, naive-repush, steady-state
    patients: int  # patients the location pushes (those with an appointment)
    seconds: float
    ghl_requests: int  # the GHL emulator's count, 429s included
    ghl_429: int
    emr_requests: int  # the Cliniko emulator's count
    gateway_cpu_seconds: float  # this process minus both emulators' server threads
    ghl_by_path: dict[str, int]  # "METHOD /path/{id}" -> requests
    emr_by_path: dict[str, int]
    pushed: int | None = None  # backfill outcomes (Progress), or the drained queue's states
    skipped: int | None = None
    failed: int | None = None
    gateway_counted: int | None = None  # the gateway's own count of GHL calls (Progress.ghl_calls, the sync log)
    changed: int | None = None  # steady state: appointments moved
    poll_seconds: float | None = None
    poll_emr_requests: int | None = None
    pushes: int | None = None  # steady state: pushes the poll queued (claimed by the drain)
    drained: bool | None = None
    rate_waits_seconds: float | None = None  # time spent waiting out 429 windows is inside `seconds`

    @property
    def per_patient(self) -> float:
        return self.ghl_requests / self.patients if self.patients else 0.0


class RunInfo(msgspec.Struct, kw_only=True):
    run: str
    patients: int
    ghl_limit: str
    gateway_pacing: str
    setup_seconds: float
    connect_ghl_requests: int  # get location, custom fields listed and created, calendars listed
    full_sync_emr_requests: int
    first_poll_emr_requests: int  # the worker's first poll after the full sync (not measured as a phase)
    ghl_contacts: int  # what GHL holds at the end
    ghl_events: int


class Settings(msgspec.Struct, kw_only=True):
    patients: int
    limited_patients: int
    moves: int
    appointment_days: list[int]


class Report(msgspec.Struct, kw_only=True):
    benchmark: str
    started_at: str
    finished_at: str
    settings: Settings
    machine: dict[str, Any]
    runs: list[RunInfo]
    phases: list[Phase]


# ---------------------------------------------------------------------------------------------- the EMR side


class ShiftedClock:
    """The Cliniko emulator's clock: seeding runs SEED_AGE in the past (as bench/sync_efficiency does)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def seed_of(size: int) -> EmulatorSeed:
    base = default_seed()
    patients = [
        SeedPatient(
            first_name=f"Bench{i}",
            last_name=f"Patient{i:05d}",
            email=f"bench.patient{i}@example.com",
            phone=f"04{i:08d}",
            date_of_birth=datetime.date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
        )
        for i in range(size)
    ]
    return msgspec.structs.replace(base, patients=base.patients + patients)


class Clinic:
    """The Cliniko emulator with one appointment per generated patient, served on loopback."""

    def __init__(self, size: int) -> None:
        self.clock = ShiftedClock()
        self.seed = seed_of(size)
        # Patients an hour before the appointments, each appointment a second after the one before: the newest
        # stamp belongs to one record, as in a real account, so a poll's `>=` cursor re-reads one record, not the
        # whole seed (the Cliniko cursor is the newest stamp read; stamps are whole seconds).
        self.clock.offset = -(SEED_AGE + datetime.timedelta(hours=1)).total_seconds()
        self.em = ClinikoEmulator(self.seed, rate_limit_per_minute=HUGE, clock=self.clock, max_exchanges=50_000)
        business = self.em.business_ids()[0]
        self.practitioners = list(self.em.practitioners)
        service = next(iter(self.em.appointment_types))
        zone = ZoneInfo(self.seed.time_zone)
        today = datetime.datetime.now(zone).date()
        opening = datetime.time.fromisoformat(self.seed.open_from)
        self.appointments: list[tuple[str, datetime.datetime]] = []  # (id, start), in patient order
        generated = list(self.em.patients)[len(self.seed.patients) - size :]
        for i, patient_id in enumerate(generated):
            self.clock.offset = i - SEED_AGE.total_seconds()
            day = today + datetime.timedelta(days=FIRST_DAY + i % DAYS)
            slot = (i // DAYS) % SLOTS_PER_DAY
            start = datetime.datetime.combine(day, opening, zone) + datetime.timedelta(minutes=30 * slot)
            body = cliniko_wire.IndividualAppointmentCreate(
                patient_id=patient_id,
                practitioner_id=self.practitioners[i % len(self.practitioners)],
                appointment_type_id=service,
                business_id=business,
                starts_at=start.astimezone(UTC),
            )
            self.appointments.append((self.em.create_appointment("http://seed", msgspec.json.encode(body))[1], start))
        self.clock.offset = 0.0
        self.server = ServerThread(self.em.app())
        self.base_url = self.server.start()
        self.tid = self.server._thread.native_id
        self.settings_json, self.credentials_json = self.em.location_config(self.base_url)
        key = msgspec.json.decode(self.credentials_json)["api_key"]
        self.screens = httpx.AsyncClient(
            base_url=f"{self.base_url}/v1", auth=(key, ""), headers={"User-Agent": USER_AGENT}, timeout=30
        )

    def practitioner_names(self) -> dict[str, str]:
        return {p.id: f"{p.first_name} {p.last_name}" for p in self.em.practitioners.values()}

    async def move(self, appointment_id: str, start: datetime.datetime) -> None:
        """As a receptionist moves it in Cliniko's own screens (its API)."""
        stamp = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        answer = await self.screens.patch(
            f"/individual_appointments/{appointment_id}", json={"starts_at": stamp, "ends_at": None}
        )
        answer.raise_for_status()

    async def close(self) -> None:
        await self.screens.aclose()
        self.server.stop()


# ---------------------------------------------------------------------------------------------- measuring


def _thread_cpu_seconds(tid: int | None) -> float:
    """User + system CPU of one thread of this process, from /proc (0 where there is none)."""
    if tid is None:
        return 0.0
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def endpoint(method: str, path: str) -> str:
    """The request with record ids replaced, so requests group by endpoint (GHL ids: 20 letters and digits;
    Cliniko's: long numbers)."""
    parts = ["{id}" if _GHL_ID.match(part) or (part.isdigit() and len(part) > 6) else part for part in path.split("/")]
    return f"{method} {'/'.join(parts).rstrip('/') or '/'}"  # a 429 is answered before routing drops the slash


class Counters:
    """Both emulators' request counts and this process's CPU, taken around a phase."""

    def __init__(self, clinic: Clinic, ghl: GhlEmulator, ghl_tid: int | None) -> None:
        self.clinic = clinic
        self.ghl = ghl
        self.ghl_tid = ghl_tid

    def take(self) -> tuple[int, int, int, int, int, float, float]:
        return (
            self.ghl.traffic.requests,
            self.ghl.traffic.rate_limited,
            len(self.ghl.traffic.exchanges),
            self.clinic.em.traffic.requests,
            len(self.clinic.em.traffic.exchanges),
            time.process_time() - _thread_cpu_seconds(self.clinic.tid) - _thread_cpu_seconds(self.ghl_tid),
            time.perf_counter(),
        )

    def since(self, before: tuple[int, int, int, int, int, float, float]) -> dict[str, Any]:
        ghl, limited, ghl_seen, emr, emr_seen, cpu, began = before
        now = self.take()
        return {
            "seconds": round(now[6] - began, 3),
            "ghl_requests": now[0] - ghl,
            "ghl_429": now[1] - limited,
            "emr_requests": now[3] - emr,
            "gateway_cpu_seconds": round(now[5] - cpu, 3),
            "ghl_by_path": _by_path(list(self.ghl.traffic.exchanges)[ghl_seen:]),
            "emr_by_path": _by_path(list(self.clinic.em.traffic.exchanges)[emr_seen:]),
        }


def _by_path(exchanges: Sequence[Any]) -> dict[str, int]:
    counted: Counter[str] = Counter()
    for exchange in exchanges:
        counted[endpoint(exchange.method, exchange.path) + (" (429)" if exchange.status == 429 else "")] += 1
    return dict(counted.most_common())


@contextlib.contextmanager
def ghl_pacing(limits: tuple[RateLimit, ...] | None) -> Iterator[None]:
    """The gateway's GHL pacing for one run: as shipped (None), or replaced (restored afterwards)."""
    shipped = push.GHL_LIMITS
    if limits is not None:
        push.GHL_LIMITS = limits  # type: ignore[assignment]
    try:
        yield
    finally:
        push.GHL_LIMITS = shipped


# ---------------------------------------------------------------------------------------------- one run


async def _settle_tasks(timeout: float = 5.0) -> None:
    """Tasks the gateway left behind (the budget's lease returns, ~1 s later) finish before the store closes."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if others:
        await asyncio.wait(others, timeout=timeout)


class World:
    """One run's clinic, GHL, store and connected location."""

    def __init__(self, name: str, size: int, limited: bool, say: Callable[[str], None]) -> None:
        self.name = name
        self.size = size
        self.limited = limited
        self.say = say
        self.phases: list[Phase] = []

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[World]:
        began = time.perf_counter()
        self.clinic = Clinic(self.size)
        if self.limited:
            self.ghl = GhlEmulator(GHL_BURST, GHL_WINDOW, max_exchanges=100_000)
        else:
            self.ghl = GhlEmulator(burst_limit=HUGE, daily_limit=HUGE, max_exchanges=100_000)
        names = self.clinic.practitioner_names()
        people = {p.email: f"{p.first_name} {p.last_name}" for p in self.clinic.seed.practitioners}
        self.ghl_seed: GhlLocationSeed = self.ghl.add_location(
            "Demo Clinic (GHL)", self.clinic.seed.time_zone, [(name, email) for email, name in people.items()]
        )
        ghl_server = ServerThread(self.ghl.app())
        self.ghl_url = ghl_server.start()
        self.counters = Counters(self.clinic, self.ghl, ghl_server._thread.native_id)
        try:
            with tempfile.TemporaryDirectory(prefix="egw-bench-ghl-") as tmp:
                url = f"sqlite:///{Path(tmp) / 'ghl.db'}"
                upgrade(url)
                self.store = await Store.open(url, Keyring.parse(generate_key()))
                unpaced = (RateLimit(per_second=float(HUGE), burst=HUGE),)
                self.config = GatewayConfig(database_url=url, poll_seconds=0.0, emr_rate_limits={"cliniko": unpaced})
                try:
                    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=5.0)) as http:
                        self.http = http
                        self.runtime = Runtime(self.config, self.store, http, Metrics())
                        await self._setup(names)
                        self.setup_seconds = time.perf_counter() - began
                        yield self
                        await _settle_tasks()
                finally:
                    await self.store.close()
        finally:
            ghl_server.stop()
            await self.clinic.close()

    async def _setup(self, names: dict[str, str]) -> None:
        self.location = await self.store.create_location(
            emr="cliniko",
            name="Bench clinic",
            settings_json=self.clinic.settings_json,
            credentials_json=self.clinic.credentials_json,
            time_zone=self.clinic.seed.time_zone,
        )
        before = self.ghl.traffic.requests
        connected = await connect(
            self.runtime,
            self.location.id,
            ghl_location_id=self.ghl_seed.location_id,
            token=self.ghl_seed.token,
            base_url=self.ghl_url,
        )
        self.connect_requests = self.ghl.traffic.requests - before
        calendars = {c.name: c.id for c in connected.calendars}
        mapping = {pid: calendars[name] for pid, name in names.items() if name in calendars}
        if len(mapping) != len(names):
            raise RuntimeError(f"calendars not matched by name: {sorted(set(names.values()) - set(calendars))}")
        await configure(
            self.runtime,
            self.location.id,
            msgspec.structs.replace(connected.settings, calendar_mode=CalendarMode.APPOINTMENTS, calendars=mapping),
        )
        before = self.clinic.em.traffic.requests
        done = await sync_location(self.store, self.http, self.config, self.location, full=True)
        self.full_sync_requests = self.clinic.em.traffic.requests - before
        if not done.facts_complete or done.appointments < self.size:
            raise RuntimeError(f"the full sync stored {done.appointments} appointments of {self.size}")
        # The worker's first poll after the listing (from the listing's cursor), so the steady state's poll is a
        # later one, as in a location the worker has been polling.
        before = self.clinic.em.traffic.requests
        if await tick(self.store, self.http, self.config, WORKER) != 1:
            raise RuntimeError("the location was not polled")
        self.first_poll_requests = self.clinic.em.traffic.requests - before
        queued = await ghl_db.counts(self.store, self.location.id)
        if sum(queued.values()):
            raise RuntimeError(f"the first poll queued pushes: {queued}")
        await asyncio.sleep(1.05 - time.time() % 1.0)  # the moves fall in a later second than that poll's cursor

    async def settle(self) -> None:
        """Under GHL's limit, a phase starts in a fresh window (as a later, separate run would)."""
        if self.limited:
            await asyncio.sleep(GHL_WINDOW + 0.5)

    async def backfill(self, name: str) -> Phase:
        await self.settle()
        before = self.counters.take()
        progress: Progress = await backfill(self.runtime, self.location.id, restart=True)
        measured = self.counters.since(before)
        phase = Phase(
            run=self.name,
            name=name,
            patients=progress.total,
            pushed=progress.pushed,
            skipped=progress.skipped,
            failed=progress.failed,
            gateway_counted=progress.ghl_calls,
            **measured,
        )
        self._note(phase)
        return phase

    async def forget_digests(self) -> None:
        """What a sync with no diff behaves like: nothing remembered of what was last written."""
        async with self.store.write() as conn:
            k, e = ghl_contact_links.c, ghl_event_links.c
            await conn.execute(update(ghl_contact_links).where(k.location_id == self.location.id).values(digest=None))
            await conn.execute(update(ghl_event_links).where(e.location_id == self.location.id).values(digest=None))

    async def steady(self, moves: int) -> Phase:
        await self.settle()
        state = await ghl_db.counts(self.store, self.location.id)
        before = self.counters.take()
        chosen = self.clinic.appointments[:moves]
        for appointment_id, start in chosen:
            await self.clinic.move(appointment_id, start + MOVE)
        polled_at = time.perf_counter()
        emr_before = self.clinic.em.traffic.requests
        if await tick(self.store, self.http, self.config, WORKER) != 1:
            raise RuntimeError("the location was not polled")
        poll_emr = self.clinic.em.traffic.requests - emr_before
        poll_end = time.perf_counter()
        claimed, drained = await self._drain()
        drained_at = time.perf_counter()
        measured = self.counters.since(before)
        after = await ghl_db.counts(self.store, self.location.id)
        measured["seconds"] = round(drained_at - poll_end, 3)  # poll end -> queue drained
        phase = Phase(
            run=self.name,
            name="steady-state",
            patients=len(chosen),
            changed=len(chosen),
            poll_seconds=round(poll_end - polled_at, 3),
            poll_emr_requests=poll_emr,
            pushes=claimed,
            drained=drained,
            pushed=after.get(ghl_db.PUSHED, 0) - state.get(ghl_db.PUSHED, 0),
            skipped=after.get(ghl_db.SKIPPED, 0) - state.get(ghl_db.SKIPPED, 0),
            failed=sum(after.get(s, 0) - state.get(s, 0) for s in (ghl_db.FAILED, ghl_db.DEAD)),
            **measured,
        )
        # The moves are the EMR's own API: not the gateway's EMR requests. The poll's are counted apart.
        phase.emr_requests = poll_emr
        phase.emr_by_path = {k: v for k, v in phase.emr_by_path.items() if not k.startswith("PATCH ")}
        self._note(phase)
        return phase

    async def _drain(self) -> tuple[int, bool]:
        """Push ticks until nothing is pending, pushing or waiting for a retry (429 pauses waited out)."""
        deadline = time.monotonic() + DRAIN_SECONDS
        claimed = 0
        while True:
            taken = await push.tick(self.runtime, WORKER)
            claimed += taken
            if taken:
                continue
            counts = await ghl_db.counts(self.store, self.location.id)
            if not any(counts.get(s, 0) for s in ghl_db.UNFINISHED):
                return claimed, True
            if time.monotonic() > deadline:
                return claimed, False
            await asyncio.sleep(0.05)

    def _note(self, phase: Phase) -> None:
        self.phases.append(phase)
        self.say(
            f"    {phase.name:<15} {phase.seconds:8.2f} s  GHL {phase.ghl_requests} ({phase.ghl_429} x 429)  "
            f"EMR {phase.emr_requests}  gateway CPU {phase.gateway_cpu_seconds:.2f} s"
        )

    def info(self, ghl_limit: str, pacing: str) -> RunInfo:
        return RunInfo(
            run=self.name,
            patients=self.size,
            ghl_limit=ghl_limit,
            gateway_pacing=pacing,
            setup_seconds=round(self.setup_seconds, 2),
            connect_ghl_requests=self.connect_requests,
            full_sync_emr_requests=self.full_sync_requests,
            first_poll_emr_requests=self.first_poll_requests,
            ghl_contacts=len(self.ghl.contact_views(self.ghl_seed.location_id)),
            ghl_events=len(self.ghl.event_views(self.ghl_seed.location_id)),
        )


async def run_world(
    name: str, size: int, limited: bool, moves: int, say: Callable[[str], None]
) -> tuple[RunInfo, list[Phase]]:
    if limited:
        shipped_limits = "; ".join(f"{r.per_second:g}/s burst {r.burst}" for r in push.GHL_LIMITS)
        ghl_limit, pacing = f"{GHL_BURST} / {GHL_WINDOW:g} s", f"as shipped ({shipped_limits})"
    else:
        ghl_limit, pacing = "none (10^9)", "out of reach (same batch sizes)"
    world = World(name, size, limited, say)
    with ghl_pacing(None if limited else GHL_UNPACED):
        async with world.opened():
            say(
                f"  {name}: N={size}, GHL limit {ghl_limit}, gateway pacing {pacing}; setup {world.setup_seconds:.1f} s"
            )
            await world.backfill("first-backfill")
            await world.backfill("second-backfill")
            await world.forget_digests()
            await world.backfill("naive-repush")
            await world.steady(min(moves, size))
            info = world.info(ghl_limit, pacing)
    return info, world.phases


# ---------------------------------------------------------------------------------------------- reporting


def table(phases: Sequence[Phase], runs: Sequence[RunInfo]) -> str:
    header = (
        f"{'run':<10} {'N':>4} {'phase':<15} {'seconds':>8} {'pat/s':>6} {'GHL req':>8} {'429':>4} {'GHL/pat':>9} "
        f"{'gw count':>8} {'@10/s':>7} {'EMR req':>7} {'gw CPU s':>8} {'pushed/skip/fail':>16}"
    )
    lines = [header, "-" * len(header)]
    for p in phases:
        rate = f"{p.patients / p.seconds:.1f}" if p.seconds > 0 and p.changed is None else "-"
        outcome = f"{p.pushed}/{p.skipped}/{p.failed}"
        per = f"{p.per_patient:.2f}" + ("/chg" if p.changed is not None else "")
        counted = str(p.gateway_counted) if p.gateway_counted is not None else "-"
        at_limit = f"{p.ghl_requests / (GHL_BURST / GHL_WINDOW):.1f} s"
        lines.append(
            f"{p.run:<10} {p.patients:>4} {p.name:<15} {p.seconds:>8.2f} {rate:>6} {p.ghl_requests:>8} "
            f"{p.ghl_429:>4} {per:>9} {counted:>8} {at_limit:>7} {p.emr_requests:>7} {p.gateway_cpu_seconds:>8.2f} "
            f"{outcome:>16}"
        )
    lines.append("")
    for r in runs:
        lines.append(
            f"{r.run}: N={r.patients}, GHL limit {r.ghl_limit}, gateway pacing {r.gateway_pacing}; connect "
            f"{r.connect_ghl_requests} GHL requests; full sync {r.full_sync_emr_requests} and first poll "
            f"{r.first_poll_emr_requests} EMR requests; setup {r.setup_seconds:.1f} s; GHL holds {r.ghl_contacts} "
            f"contacts, {r.ghl_events} events"
        )
    for p in phases:
        if p.changed is None:
            continue
        lines.append(
            f"{p.run} steady state: {p.changed} appointments moved; the poll took {p.poll_seconds:.2f} s and "
            f"{p.poll_emr_requests} EMR requests and queued {p.pushes} pushes; seconds = poll end -> queue drained"
            + ("" if p.drained else " (NOT drained)")
        )
    lines += [
        "GHL req: the GHL emulator's count, 429s included; GHL/pat: per patient pushed (steady state: per changed "
        "appointment); gw count: the gateway's own count (backfill Progress.ghl_calls, what the sync log records);",
        "@10/s: GHL req at GHL's sustained 10 a second (a fresh window takes 100 at once); EMR req: the Cliniko "
        "emulator's count; gw CPU: this process minus both emulators' server threads;",
        "naive-repush: the baseline, a sync with no diff (ClinicSync-style, every run rewrites every contact): the "
        "backfill again after every link's stored digest was cleared.",
    ]
    if any(r.patients != runs[-1].patients for r in runs):
        lines.append(
            "ghl-limit runs fewer patients (--limited-patients): at GHL's ~10 requests/s and 8 a patient, every "
            "100 patients of a first backfill take about 80 s."
        )
    return "\n".join(lines)


def paths_table(phases: Sequence[Phase]) -> str:
    lines = ["GHL requests by path (per patient, or per changed appointment in the steady state):"]
    for p in phases:
        if not p.ghl_requests:
            continue
        lines.append(f"  {p.run} {p.name} ({p.ghl_requests}):")
        for path, n in p.ghl_by_path.items():
            lines.append(f"    {n:>6} {n / p.patients:6.2f}  {path}")
    emr = [p for p in phases if p.emr_requests]
    if emr:
        lines.append("EMR requests by path:")
        for p in emr:
            listed = ", ".join(f"{n} x {path}" for path, n in p.emr_by_path.items())
            lines.append(f"  {p.run} {p.name}: {listed}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str], *, lenient: bool = False) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ghl_push", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--patients", type=int, default=200, help="patients of the unlimited run (default 200)")
    p.add_argument(
        "--limited-patients",
        type=int,
        default=50,
        help="patients of the run under GHL's 100 requests / 10 s (default 50: ~8 requests a patient at ~10/s)",
    )
    p.add_argument("--moves", type=int, default=20, help="appointments moved in the steady state (default 20)")
    p.add_argument("--skip-limited", action="store_true", help="only the unlimited run")
    p.add_argument("--quick", action="store_true", help="N = 50, 20 under the limit, 10 moves")
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON goes (default bench/results)")
    args = p.parse_known_args(list(argv))[0] if lenient else p.parse_args(list(argv))
    if args.quick:
        args.patients, args.limited_patients, args.moves = 50, 20, 10
    if args.patients < 1 or args.limited_patients < 1 or args.moves < 1:
        raise SystemExit("--patients, --limited-patients and --moves must be positive")
    return args


def run(args: argparse.Namespace) -> int:
    started = datetime.datetime.now(UTC)

    def say(line: str) -> None:
        print(line, flush=True)

    say(
        f"GHL push: {args.patients} patients unlimited"
        + ("" if args.skip_limited else f", {args.limited_patients} under GHL's limit")
        + f", {args.moves} moves"
    )
    plans = [] if args.skip_limited else [("ghl-limit", args.limited_patients, True)]
    plans.append(("unlimited", args.patients, False))
    runs: list[RunInfo] = []
    phases: list[Phase] = []
    for name, size, limited in plans:
        info, measured = asyncio.run(run_world(name, size, limited, args.moves, say))
        runs.append(info)
        phases += measured
    report = Report(
        benchmark="ghl_push",
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.datetime.now(UTC).isoformat(timespec="seconds"),
        settings=Settings(
            patients=args.patients,
            limited_patients=args.limited_patients,
            moves=args.moves,
            appointment_days=[FIRST_DAY, FIRST_DAY + DAYS - 1],
        ),
        machine=machine_info(),
        runs=runs,
        phases=phases,
    )
    path = write_report(args.out, "ghl_push", started, report)
    say("")
    say(table(phases, runs))
    say("")
    say(paths_table(phases))
    say(f"\nwrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


def main_shared(argv: Sequence[str]) -> int:
    """For `python -m bench`: the options every benchmark gets may include ones only another benchmark knows."""
    return run(parse_args(argv, lenient=True))


if __name__ == "__main__":
    sys.exit(main())

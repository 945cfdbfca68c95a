"""Adaptive polling on one Cliniko account: how much of its budget polls spend, and how fast an EMR edit is seen.

Scenarios, each on a fresh SQLite store and one Cliniko emulator (200 requests/minute per user, as documented) served
over loopback: `locations` gateway locations, each a business of one Cliniko account, all using the same API key (one
Cliniko user, so one shared budget), polled by the gateway's own scheduler (`gateway.sync.scheduler.tick`, as
`emr-gateway worker` runs it) with the default settings: no EGW_POLL_SECONDS, the interval derived from the budget.
Requests are counted by the emulator. Every few seconds a receptionist moves an appointment in location 0's business
(the emulator's own API), and the time until the move's event is in the gateway's outbox is measured (delivery to a
receiver adds the webhook worker's ~0.05 s, see bench/webhooks). Baseline in the same run: the interval the gateway
used before issue 17 (Cliniko's fixed 60 s) for the same locations and edits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
from sqlalchemy import select

from adapters.cliniko import wire as cliniko_wire
from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import SeedBusiness, ServerThread, default_seed
from bench.overhead import RESULTS_DIR, machine_info, write_report
from gateway.config import GatewayConfig
from gateway.crypto import Keyring, generate_key
from gateway.storage import sync as db
from gateway.storage.migrate import upgrade
from gateway.storage.outbox import decode_event
from gateway.storage.store import Store
from gateway.storage.tables import events
from gateway.sync.scheduler import tick
from schemas.webhooks import AppointmentEventData, EventType

UTC = datetime.UTC
CLINIKO_PER_MINUTE = 200


class Scenario(msgspec.Struct, kw_only=True):
    name: str
    locations: int
    poll_seconds: float | None  # None: derived from the budget (the default)
    seconds: float
    edits: int
    requests: int
    requests_per_minute: float
    budget_used: float  # of Cliniko's 200/minute
    budget_free: float
    latency_p50: float | None
    latency_p95: float | None
    latency_max: float | None
    seen: int  # edits whose event reached the outbox before the scenario ended
    intervals: list[float]  # the derived interval per location at the end (distinct values)


class Report(msgspec.Struct, kw_only=True):
    benchmark: str
    started_at: str
    finished_at: str
    machine: dict[str, Any]
    scenarios: list[Scenario]


async def scenario(
    name: str, locations: int, poll_seconds: float | None, seconds: float, edit_every: float
) -> Scenario:
    # One Cliniko user (one API key, one 200/minute budget) with a business per location, as a group practice has.
    seed = msgspec.structs.replace(
        default_seed(), businesses=[SeedBusiness(name=f"Clinic {i}") for i in range(locations)]
    )
    emulator = ClinikoEmulator(seed, rate_limit_per_minute=CLINIKO_PER_MINUTE)
    server = ServerThread(emulator.app())
    base = server.start()
    settings_json, credentials_json = emulator.location_config(base)
    key = msgspec.json.decode(credentials_json)["api_key"]
    screens = httpx.AsyncClient(base_url=f"{base}/v1", auth=(key, ""), headers={"User-Agent": "bench (b@example.com)"})
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        store = await Store.open(url, Keyring.parse(generate_key()))
        config = GatewayConfig(database_url=url, poll_seconds=poll_seconds)
        try:
            ids = [
                (
                    await store.create_location(
                        emr="cliniko",
                        name=f"Clinic {i}",
                        settings_json=emulator.location_config(base, i)[0],
                        credentials_json=credentials_json,
                        time_zone="Australia/Melbourne",
                    )
                ).id
                for i in range(locations)
            ]
            stop = asyncio.Event()
            async with httpx.AsyncClient(timeout=20) as http:

                async def worker() -> None:
                    while not stop.is_set():
                        await tick(store, http, config, "bench-worker")
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), config.sync_tick_seconds)

                running = asyncio.create_task(worker())
                await asyncio.sleep(config.sync_tick_seconds * 2)  # every location has its cursor
                # Booked after tracking began, so the gateway knows it (its first sight is `booked`) before the moves.
                appointment = await _book(screens, settings_json)
                await asyncio.sleep(config.sync_tick_seconds)
                before = await _requests(base)
                began = time.monotonic()
                moves: list[tuple[float, datetime.datetime]] = []
                while time.monotonic() - began < seconds - edit_every:
                    await asyncio.sleep(edit_every)
                    start = await _move(screens, appointment, len(moves) + 1)  # a new start each time
                    moves.append((time.time(), start))
                await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))
                elapsed = time.monotonic() - began
                used = await _requests(base) - before
                stop.set()
                await running
            seen_at = await _seen(store, ids[0], appointment)
            latencies = _latencies(moves, seen_at)
            intervals = sorted(
                {round(s.poll_interval_seconds or 0.0, 1) for i in ids if (s := await db.get_state(store, i))}
            )
        finally:
            await store.close()
            await screens.aclose()
            server.stop()
    per_minute = used * 60 / elapsed
    latencies.sort()
    return Scenario(
        name=name,
        locations=locations,
        poll_seconds=poll_seconds,
        seconds=round(elapsed, 1),
        edits=len(moves),
        requests=used,
        requests_per_minute=round(per_minute, 1),
        budget_used=round(per_minute / CLINIKO_PER_MINUTE, 3),
        budget_free=round(1 - per_minute / CLINIKO_PER_MINUTE, 3),
        latency_p50=round(statistics.median(latencies), 2) if latencies else None,
        latency_p95=round(latencies[max(0, round(0.95 * len(latencies)) - 1)], 2) if latencies else None,
        latency_max=round(latencies[-1], 2) if latencies else None,
        seen=len(latencies),
        intervals=intervals,
    )


async def _book(screens: httpx.AsyncClient, settings_json: bytes) -> str:
    business = msgspec.json.decode(settings_json)["business_id"]
    patient = (await screens.get("/patients")).json()["patients"][0]["id"]
    practitioner = (await screens.get("/practitioners")).json()["practitioners"][0]["id"]
    kind = (await screens.get("/appointment_types")).json()["appointment_types"][0]["id"]
    day = datetime.datetime.now(UTC) + datetime.timedelta(days=3)
    body = cliniko_wire.IndividualAppointmentCreate(
        patient_id=patient,
        practitioner_id=practitioner,
        appointment_type_id=kind,
        business_id=business,
        starts_at=day.replace(hour=0, minute=0, second=0, microsecond=0),
    )
    answer = await screens.post("/individual_appointments", content=msgspec.json.encode(body))
    answer.raise_for_status()
    return str(answer.json()["id"])


async def _move(screens: httpx.AsyncClient, appointment: str, number: int) -> datetime.datetime:
    day = (datetime.datetime.now(UTC) + datetime.timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day + datetime.timedelta(minutes=5 * number)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    answer = await screens.patch(f"/individual_appointments/{appointment}", json={"starts_at": stamp, "ends_at": None})
    answer.raise_for_status()
    return start


async def _requests(base: str) -> int:
    async with httpx.AsyncClient() as control:
        answer = await control.get(f"{base}/_emulator/stats")
        answer.raise_for_status()
        return int(answer.json()["requests"])


def _latencies(moves: list[tuple[float, datetime.datetime]], seen_at: dict[datetime.datetime, float]) -> list[float]:
    """Per move: until the outbox held an event showing it or a later move (moves between two polls are one change
    to a subscriber: the newest state is what must arrive)."""
    found: list[float] = []
    for index, (at, _start) in enumerate(moves):
        times = [seen_at[start] for _at, start in moves[index:] if start in seen_at and seen_at[start] >= at]
        if times:
            found.append(min(times) - at)
    return found


async def _seen(store: Store, location_id: str, appointment: str) -> dict[datetime.datetime, float]:
    """When each start of the appointment first reached the outbox (epoch seconds), in its `booked` (first sight)
    or `rescheduled` event."""
    found: dict[datetime.datetime, float] = {}
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(events.c.payload, events.c.created_at).where(events.c.location_id == location_id)
        )
        for payload, created in rows:
            event = decode_event(payload)
            data = event.data
            moved = event.type in {EventType.APPOINTMENT_RESCHEDULED, EventType.APPOINTMENT_BOOKED}
            if moved and isinstance(data, AppointmentEventData) and data.appointment.id == appointment:
                found.setdefault(data.appointment.start, created.timestamp())
    return found


def table(scenarios: list[Scenario]) -> str:
    header = (
        f"{'scenario':<26} {'locs':>4} {'poll':>8} {'req/min':>8} {'budget free':>11} {'edits':>5} {'seen':>4} "
        f"{'p50 s':>6} {'p95 s':>6} {'max s':>6}  intervals s"
    )
    lines = [header, "-" * len(header)]
    for s in scenarios:
        poll = "derived" if s.poll_seconds is None else f"{s.poll_seconds:g} s"
        lat = [f"{v:.2f}" if v is not None else "-" for v in (s.latency_p50, s.latency_p95, s.latency_max)]
        lines.append(
            f"{s.name:<26} {s.locations:>4} {poll:>8} {s.requests_per_minute:>8.1f} {s.budget_free:>10.1%} "
            f"{s.edits:>5} {s.seen:>4} {lat[0]:>6} {lat[1]:>6} {lat[2]:>6}  {', '.join(f'{i:g}' for i in s.intervals)}"
        )
    lines.append("(budget: Cliniko's 200 requests/minute per user, shared by every location on the key)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, lenient: bool = False) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.polling_budget", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiplies each scenario's length (120, 180, 360 s)")
    p.add_argument("--quick", action="store_true", help="a third of the default lengths")
    p.add_argument("--out", default=str(RESULTS_DIR))
    args = p.parse_known_args(argv)[0] if lenient else p.parse_args(argv)
    scale = args.scale / 3 if args.quick else args.scale
    started = datetime.datetime.now(UTC)
    # Long enough for several polls at each interval: 50 locations poll every ~220 s each.
    plans = [
        ("1 location, derived", 1, None, 120.0, 7.0),
        ("1 location, fixed 60 s (before)", 1, 60.0, 180.0, 7.0),
        ("50 locations, derived", 50, None, 360.0, 7.0),
    ]
    scenarios: list[Scenario] = []
    for name, count, poll, length, every in plans:
        seconds = length * scale
        print(f"  {name}: {seconds:g} s ...", flush=True)
        scenarios.append(asyncio.run(scenario(name, count, poll, seconds, every)))
    print(table(scenarios))
    report = Report(
        benchmark="polling_budget",
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine_info(),
        scenarios=scenarios,
    )
    print(f"wrote {write_report(args.out, 'polling_budget', started, report)}")
    return 0


def main_shared(argv: Sequence[str]) -> int:
    """For `python -m bench`: the options every benchmark gets may include ones only another benchmark knows."""
    return main(argv, lenient=True)


if __name__ == "__main__":
    sys.exit(main())

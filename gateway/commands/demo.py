"""`emr-gateway demo`: the gateway on SQLite in front of every built-in EMR emulator, one demo location each."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import socket
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import msgspec
import uvicorn

from adapters.emulation import EmulatorSeed, ServerThread, default_seed
from adapters.emulators import EMULATORS
from adapters.ghl.emulator import GhlEmulator
from adapters.registry import get_adapter_class
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.crypto import Keyring
from gateway.logging_setup import configure_logging
from gateway.storage.migrate import upgrade
from gateway.storage.store import Store
from gateway.usecases.operators import add_operator, generate_password


class DemoLocation(msgspec.Struct):
    emr: str
    location_id: str
    api_key: str
    ghl_location_id: str | None = None  # its sub-account in the GoHighLevel emulator


class DemoInfo(msgspec.Struct):
    base_url: str
    locations: list[DemoLocation]
    ghl_base_url: str | None = None  # the GoHighLevel emulator (contacts: /_emulator/ghl/locations/{id}/contacts)
    console_url: str | None = None  # the operator console; sign in with the demo operator below
    operator_email: str | None = None
    operator_password: str | None = None  # random per run (the demo's database is recreated each run)


DEMO_OPERATOR = "operator@demo.example"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the gateway against the built-in EMR emulators")
    p.add_argument("--port", type=int, default=8000, help="gateway port (0 picks a free one)")
    p.add_argument("--dir", default=".egw-demo", help="where the demo database lives (recreated each run)")
    p.add_argument("--json", action="store_true", help="first stdout line: one JSON object with keys and ids")
    p.set_defaults(handler=run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _next_weekday(tz: str, seed: EmulatorSeed) -> date:
    day = datetime.now(ZoneInfo(tz)).date() + timedelta(days=1)
    while day.weekday() not in seed.open_weekdays:
        day += timedelta(days=1)
    return day


async def _connect_ghl(store: Store, ghl: GhlEmulator, ghl_base: str, loc: DemoLocation, seed: EmulatorSeed) -> str:
    """A GHL sub-account per demo location, connected, with one calendar per practitioner mapped by name: a
    booking made in the EMR shows up in GHL as a contact and a calendar event."""
    from gateway.ghl.destination.connect import configure, connect
    from gateway.ghl.destination.push import Pusher
    from gateway.ghl.destination.settings import CalendarMode
    from gateway.metrics import Metrics
    from gateway.runtime import Runtime

    calendars = [(f"{p.first_name} {p.last_name}", p.email) for p in seed.practitioners]
    sub = ghl.add_location(f"Demo {get_adapter_class(loc.emr).display_name}", seed.time_zone, calendars)
    async with httpx.AsyncClient(timeout=30.0) as http:
        runtime = Runtime(GatewayConfig(database_url="sqlite://"), store, http, Metrics())
        await connect(runtime, loc.location_id, ghl_location_id=sub.location_id, token=sub.token, base_url=ghl_base)
        pusher = await Pusher.open(runtime, loc.location_id)
        assert pusher is not None
        by_name = {c.name.lower(): c.id for c in sub.calendars}
        catalog = await pusher.catalog()
        mapping = {p.id: by_name[p.name.lower()] for p in catalog.practitioners if p.name.lower() in by_name}
        settings = msgspec.structs.replace(pusher.settings, calendar_mode=CalendarMode.APPOINTMENTS, calendars=mapping)
        await configure(runtime, loc.location_id, settings)
    return sub.location_id


async def _seed(
    db_url: str,
    keyring: Keyring,
    started: list[tuple[str, str, bytes, bytes]],
    tz: str,
    ghl: tuple[GhlEmulator, str, EmulatorSeed] | None = None,
) -> list[DemoLocation]:
    store = await Store.open(db_url, keyring)
    try:
        out = []
        for slug, _base, settings, credentials in started:
            name = f"Demo {get_adapter_class(slug).display_name}"
            loc = await store.create_location(
                emr=slug, name=name, settings_json=settings, credentials_json=credentials, time_zone=tz
            )
            issued = await store.issue_key(loc.id, test=True)
            demo = DemoLocation(emr=slug, location_id=loc.id, api_key=issued.secret)
            if ghl is not None:
                demo.ghl_location_id = await _connect_ghl(store, ghl[0], ghl[1], demo, ghl[2])
            out.append(demo)
        return out
    finally:
        await store.close()


async def _add_operator(db_url: str, keyring: Keyring, password: str) -> None:
    """The demo operator, for the console (`emr-gateway operators add` in a real deployment)."""
    store = await Store.open(db_url, keyring)
    try:
        await add_operator(store, DEMO_OPERATOR, password)
    finally:
        await store.close()


def _curl(method: str, url: str, api_key: str, body: object, *extra: str) -> str:
    headers = [f"x-api-key: {api_key}", "content-type: application/json", *extra]
    parts = ["curl", "-s", "-X", method, url, *[f"-H {shlex.quote(h)}" for h in headers]]
    parts.append(f"-d {shlex.quote(json.dumps(body))}")
    return " ".join(parts)


def curl_lines(base_url: str, loc: DemoLocation, seed: EmulatorSeed) -> list[str]:
    """Book tomorrow (or the next open day) at 10:00 local, move it to 11:00, cancel it."""
    day = _next_weekday(seed.time_zone, seed)
    practitioner, service, patient = seed.practitioners[0], seed.services[0], seed.patients[0]
    book = {
        "practitioner": {"email": practitioner.email},
        "service": {"name": service.name},
        "patient": {"email": patient.email, "first_name": patient.first_name, "last_name": patient.last_name},
        "start": f"{day.isoformat()}T10:00:00",
        "time_zone": seed.time_zone,
        "notes": "Booked from the demo",
    }
    move = {"start": f"{day.isoformat()}T11:00:00", "time_zone": seed.time_zone}
    appointments = f"{base_url}/v1/appointments"
    return [
        _curl("POST", appointments, loc.api_key, book, f"Idempotency-Key: demo-{loc.emr}-1"),
        'ID=...   # the "id" the booking returned',
        _curl("PATCH", f"{appointments}/$ID", loc.api_key, move),
        _curl("POST", f"{appointments}/$ID/cancel", loc.api_key, {"reason": "other", "note": "demo"}),
    ]


def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db_url = f"sqlite:///{db.resolve()}"
    keyring = Keyring.generate()
    seed = default_seed()
    threads: list[ServerThread] = []
    started: list[tuple[str, str, bytes, bytes]] = []
    for slug, factory in sorted(EMULATORS.items()):
        emulator = factory(seed)
        thread = ServerThread(emulator.app())
        base = thread.start()
        threads.append(thread)
        settings, credentials = emulator.location_config(base)
        started.append((slug, base, settings, credentials))
    ghl = GhlEmulator()
    ghl_thread = ServerThread(ghl.app())
    ghl_base = ghl_thread.start()
    threads.append(ghl_thread)
    upgrade(db_url)
    locations = asyncio.run(_seed(db_url, keyring, started, seed.time_zone, (ghl, ghl_base, seed)))
    password = generate_password()
    asyncio.run(_add_operator(db_url, keyring, password))
    port = args.port or _free_port()
    base_url = f"http://127.0.0.1:{port}"
    info = DemoInfo(
        base_url=base_url,
        locations=locations,
        ghl_base_url=ghl_base,
        console_url=f"{base_url}/console",
        operator_email=DEMO_OPERATOR,
        operator_password=password,
    )
    if args.json:
        sys.stdout.write(msgspec.json.encode(info).decode() + "\n")
    else:
        print(f"EMR Gateway demo on {base_url}  (OpenAPI UI: {base_url}/schema/swagger)\n")
        for loc in locations:
            print(f"[{loc.emr}] location {loc.location_id}\n  api key: {loc.api_key}")
            print(f"  GoHighLevel contacts: curl -s {ghl_base}/_emulator/ghl/locations/{loc.ghl_location_id}/contacts")
            for line in curl_lines(base_url, loc, seed):
                print("  " + line)
            print()
        print(f"Operator console: {base_url}/console")
        print(f"  sign in as {DEMO_OPERATOR} with the password {password}  (a new one each run)\n")
        print(
            'Webhooks: POST /v1/webhooks with {"url": "http://127.0.0.1:<port>/hook"} to receive signed\n'
            "patient updates (loopback is allowed in the demo). Ctrl-C stops the gateway and the emulators."
        )
    sys.stdout.flush()
    # The demo runs the webhook worker too, and lets webhooks reach loopback so a local receiver can subscribe.
    config = GatewayConfig(database_url=db_url, webhook_allowed_subnets=("127.0.0.0/8", "::1/128"))
    try:
        app = create_app(config, keyring, worker=True)
        uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
    finally:
        for thread in threads:
            thread.stop()
    return 0

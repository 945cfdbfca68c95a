"""`emr-gateway ghl connect|disconnect|calendars|sync|status|replay`: GoHighLevel as a destination.

Secrets travel in a file (`--token-file`, or `-` for stdin), never in argv."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import msgspec

from gateway.commands import (
    CommandError,
    Subparsers,
    actor,
    add_json_flag,
    database_url,
    emit,
    load_keyring,
    open_store,
    read_secret_file,
)

DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("ghl", help="GoHighLevel as a destination: connect, map calendars, backfill")
    actions = parser.add_subparsers(dest="ghl_action", metavar="{connect,disconnect,calendars,sync,status,replay}")
    actions.required = True

    connect = actions.add_parser("connect", help="store a Private Integration token, check it, provision fields")
    connect.add_argument("location", metavar="LOCATION", help="gateway location id (loc_…)")
    connect.add_argument("--ghl-location-id", required=True, help="the GHL sub-account's locationId")
    connect.add_argument("--token-file", required=True, help="file holding the token (pit-…), or - for stdin")
    connect.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"GHL's API host (default {DEFAULT_BASE_URL})")
    connect.add_argument("--tag-prefix", help="prefix of the gateway-owned tags (default emr:)")
    connect.add_argument("--lapsed-days", type=int, help="days without a visit before `lapsed` (default 180)")
    connect.add_argument(
        "--include", action="append", default=None, metavar="FIELD", help="opt-in contact data: date_of_birth"
    )
    add_json_flag(connect)
    connect.set_defaults(handler=run_connect)

    disconnect = actions.add_parser("disconnect", help="stop pushing to GHL (queued pushes wait for a reconnect)")
    disconnect.add_argument("location", metavar="LOCATION")
    add_json_flag(disconnect)
    disconnect.set_defaults(handler=run_disconnect)

    calendars = actions.add_parser("calendars", help="mirror appointments (or busy time) into GHL calendars")
    calendars.add_argument("location", metavar="LOCATION")
    calendars.add_argument("--mode", choices=["off", "appointments", "busy"], required=True)
    calendars.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="PRACTITIONER=CALENDAR",
        help="EMR practitioner id = GHL calendar id",
    )
    calendars.add_argument(
        "--auto", action="store_true", help="map every practitioner whose name equals a GHL calendar's name"
    )
    calendars.add_argument("--notify", action="store_true", help="let GHL's automations run on mirrored appointments")
    add_json_flag(calendars)
    calendars.set_defaults(handler=run_calendars)

    sync = actions.add_parser("sync", help="push every current patient now (resumable)")
    sync.add_argument("location", metavar="LOCATION")
    sync.add_argument("--restart", action="store_true", help="start from the first patient, not where it stopped")
    add_json_flag(sync)
    sync.set_defaults(handler=run_sync)

    status = actions.add_parser("status", help="the connection, its queue and its last pushes")
    status.add_argument("location", metavar="LOCATION")
    add_json_flag(status)
    status.set_defaults(handler=run_status)

    replay = actions.add_parser("replay", help="queue dead pushes again")
    replay.add_argument("location", metavar="LOCATION")
    replay.add_argument("--since", required=True, help="RFC 3339 time: dead pushes created since then")
    add_json_flag(replay)
    replay.set_defaults(handler=run_replay)


@contextlib.asynccontextmanager
async def _runtime() -> AsyncIterator[Any]:
    from gateway.config import load_config
    from gateway.metrics import Metrics
    from gateway.runtime import Runtime

    config = load_config()
    store = await open_store(database_url(), load_keyring())
    try:
        timeout = httpx.Timeout(config.emr_timeout_seconds, connect=config.emr_connect_timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
            yield Runtime(config, store, http, Metrics())
    finally:
        await store.close()


def _failed(exc: Exception) -> CommandError:
    from adapters.errors import AdapterError, AuthFailed

    if isinstance(exc, AuthFailed):
        return CommandError(f"ghl_auth_failed: {exc.message} (HTTP {exc.emr_status})")
    if isinstance(exc, AdapterError):
        return CommandError(f"GoHighLevel: {exc.message} ({exc.emr_message or type(exc).__name__})")
    return CommandError(str(exc))


# -- connect / disconnect --------------------------------------------------------------------------------------------


async def _connect(args: argparse.Namespace) -> Any:
    from adapters.errors import AdapterError
    from gateway.ghl.destination.connect import connect
    from gateway.ghl.destination.settings import ExtraField, GhlSettings
    from gateway.ghl.store import GhlLinkConflict
    from gateway.storage import ghl_destination as db
    from gateway.storage.errors import UnknownLocation

    token = read_secret_file(args.token_file, "token").decode().strip()
    if not token:
        raise CommandError("the token file is empty", 2)
    async with _runtime() as runtime:
        previous = await db.get_connection(runtime.store, args.location)
        base = msgspec.json.decode(previous.settings_json, type=GhlSettings) if previous is not None else GhlSettings()
        changes: dict[str, Any] = {}
        if args.tag_prefix is not None:
            changes["tag_prefix"] = args.tag_prefix
        if args.lapsed_days is not None:
            changes["lapsed_days"] = args.lapsed_days
        if args.include is not None:
            try:
                changes["extra_fields"] = [ExtraField(name) for name in args.include]
            except ValueError:
                raise CommandError(f"--include takes: {', '.join(f.value for f in ExtraField)}", 2) from None
        try:
            settings = msgspec.convert({**msgspec.to_builtins(base), **msgspec.to_builtins(changes)}, GhlSettings)
        except msgspec.ValidationError as exc:
            raise CommandError(f"invalid setting: {exc}", 2) from None
        try:
            result = await connect(
                runtime,
                args.location,
                ghl_location_id=args.ghl_location_id,
                token=token,
                base_url=args.base_url,
                settings=settings,
            )
        except UnknownLocation:
            raise CommandError(f"no location {args.location!r} (see `emr-gateway locations list`)", 2) from None
        except GhlLinkConflict as exc:
            raise CommandError(f"GHL location {args.ghl_location_id} is already linked to location {exc}", 2) from None
        except AdapterError as exc:
            raise _failed(exc) from None
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach GoHighLevel ({type(exc).__name__})") from None
        await runtime.store.audit(
            location_id=args.location, actor=actor(), action="ghl.connect", target=args.ghl_location_id
        )
        return result


def run_connect(args: argparse.Namespace) -> int:
    result = asyncio.run(_connect(args))
    human = (
        f"connected {result.location_id} to GHL location {result.ghl_location_id} ({result.ghl_location_name}); "
        f"fields created {len(result.fields_created)}, found {len(result.fields_found)}; "
        f"calendars: {', '.join(f'{c.name} ({c.id})' for c in result.calendars) or 'none'}"
    )
    emit(args, result, human)
    return 0


class Switched(msgspec.Struct, kw_only=True):
    location_id: str
    enabled: bool


async def _disconnect(args: argparse.Namespace) -> Switched:
    from gateway.storage import ghl_destination as db

    store = await open_store(database_url(), load_keyring(required=False))
    try:
        if not await db.set_enabled(store, args.location, False):
            raise CommandError(f"location {args.location!r} is not connected to GoHighLevel", 2)
        await store.audit(location_id=args.location, actor=actor(), action="ghl.disconnect", target=args.location)
    finally:
        await store.close()
    return Switched(location_id=args.location, enabled=False)


def run_disconnect(args: argparse.Namespace) -> int:
    result = asyncio.run(_disconnect(args))
    emit(args, result, f"{result.location_id}: GoHighLevel sync stopped (reconnect with `ghl connect`)")
    return 0


# -- calendars -------------------------------------------------------------------------------------------------------


async def _calendars(args: argparse.Namespace) -> Any:
    from adapters.errors import AdapterError
    from gateway.ghl.destination.connect import configure
    from gateway.ghl.destination.push import Pusher
    from gateway.ghl.destination.settings import CalendarMode

    async with _runtime() as runtime:
        pusher = await Pusher.open(runtime, args.location)
        if pusher is None:
            raise CommandError(f"location {args.location!r} is not connected to GoHighLevel (run `ghl connect`)", 2)
        mapping = dict(pusher.settings.calendars)
        for pair in args.map:
            practitioner, _, calendar = pair.partition("=")
            if not practitioner or not calendar:
                raise CommandError(f"--map takes PRACTITIONER=CALENDAR, not {pair!r}", 2)
            mapping[practitioner] = calendar
        try:
            if args.auto:
                calendars = {(c.name or "").strip().lower(): c.id for c in await pusher.client.list_calendars()}
                catalog = await pusher.catalog()
                for practitioner in catalog.practitioners:
                    found = calendars.get(practitioner.name.strip().lower())
                    if found is not None:
                        mapping.setdefault(practitioner.id, found)
        except AdapterError as exc:
            raise _failed(exc) from None
        settings = msgspec.structs.replace(
            pusher.settings, calendar_mode=CalendarMode(args.mode), calendars=mapping, to_notify=bool(args.notify)
        )
        await configure(runtime, args.location, settings)
        await runtime.store.audit(location_id=args.location, actor=actor(), action="ghl.calendars", target=args.mode)
        return settings


def run_calendars(args: argparse.Namespace) -> int:
    settings = asyncio.run(_calendars(args))
    pairs = ", ".join(f"{p} -> {c}" for p, c in sorted(settings.calendars.items())) or "no practitioner mapped"
    emit(args, settings, f"calendar mode {settings.calendar_mode.value}: {pairs}")
    return 0


# -- sync ------------------------------------------------------------------------------------------------------------


async def _sync(args: argparse.Namespace) -> Any:
    from adapters.errors import AdapterError
    from gateway.ghl.destination.backfill import Progress, backfill
    from gateway.storage.errors import UnknownLocation

    bar: Any = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(desc=f"ghl sync {args.location}", unit="patient", file=sys.stderr)

    def observe(progress: Progress) -> None:
        if args.json:
            sys.stdout.write(msgspec.json.encode(progress).decode() + "\n")
            sys.stdout.flush()
        elif bar is not None:
            bar.total = progress.total
            bar.n = progress.done
            bar.set_postfix_str(f"pushed {progress.pushed} skipped {progress.skipped} failed {progress.failed}")

    async with _runtime() as runtime:
        try:
            result = await backfill(runtime, args.location, restart=args.restart, observe=observe)
        except UnknownLocation:
            raise CommandError(
                f"location {args.location!r} is not connected to GoHighLevel (run `ghl connect`)", 2
            ) from None
        except AdapterError as exc:
            raise _failed(exc) from None
        finally:
            if bar is not None:
                bar.close()
        await runtime.store.audit(location_id=args.location, actor=actor(), action="ghl.sync", target=args.location)
        return result


def run_sync(args: argparse.Namespace) -> int:
    result = asyncio.run(_sync(args))
    if args.json:
        sys.stdout.write(msgspec.json.encode({"finished": True, **msgspec.to_builtins(result)}).decode() + "\n")
    else:
        sys.stdout.write(
            f"{result.done} patients: {result.pushed} pushed, {result.skipped} unchanged, {result.failed} failed "
            f"({result.ghl_calls} GoHighLevel requests)\n"
        )
    return 0 if result.failed == 0 else 1


# -- status / replay -------------------------------------------------------------------------------------------------


class Status(msgspec.Struct, kw_only=True):
    location_id: str
    ghl_location_id: str
    enabled: bool
    status: str
    status_detail: str | None
    paused_until: datetime | None
    daily_remaining: int | None
    settings: msgspec.Raw
    queue: dict[str, int]


async def _status(args: argparse.Namespace) -> Status:
    from gateway.storage import ghl_destination as db

    store = await open_store(database_url(), load_keyring(required=False))
    try:
        connection = await db.get_connection(store, args.location)
        if connection is None:
            raise CommandError(f"location {args.location!r} is not connected to GoHighLevel", 2)
        return Status(
            location_id=connection.location_id,
            ghl_location_id=connection.ghl_location_id,
            enabled=connection.enabled,
            status=connection.status,
            status_detail=connection.status_detail,
            paused_until=connection.paused_until,
            daily_remaining=connection.daily_remaining,
            settings=msgspec.Raw(connection.settings_json),
            queue=await db.counts(store, args.location),
        )
    finally:
        await store.close()


def run_status(args: argparse.Namespace) -> int:
    status = asyncio.run(_status(args))
    queue = ", ".join(f"{k} {v}" for k, v in sorted(status.queue.items())) or "empty"
    emit(args, status, f"{status.location_id} -> {status.ghl_location_id}: {status.status}; queue: {queue}")
    return 0


class Replayed(msgspec.Struct, kw_only=True):
    location_id: str
    queued: int


async def _replay(args: argparse.Namespace) -> Replayed:
    from gateway.storage import ghl_destination as db

    try:
        since = datetime.fromisoformat(args.since)
    except ValueError:
        raise CommandError("--since takes an RFC 3339 time, e.g. 2026-11-30T00:00:00Z", 2) from None
    if since.tzinfo is None:
        raise CommandError("--since needs an offset (Z or +hh:mm)", 2)
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        queued = await db.replay(store, args.location, since)
        await store.audit(location_id=args.location, actor=actor(), action="ghl.replay", target=str(queued))
    finally:
        await store.close()
    return Replayed(location_id=args.location, queued=queued)


def run_replay(args: argparse.Namespace) -> int:
    result = asyncio.run(_replay(args))
    emit(args, result, f"{result.queued} dead pushes queued again")
    return 0

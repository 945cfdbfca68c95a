"""`emr-gateway locations add|list|set-credentials`: a clinic site, its EMR settings and (encrypted) credentials."""

from __future__ import annotations

import argparse
import asyncio
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from gateway.commands import (
    CommandError,
    LocationView,
    Subparsers,
    actor,
    add_json_flag,
    database_url,
    emit,
    load_keyring,
    open_store,
    read_secret_file,
)

CHECK_TIMEOUT_SECONDS = 30.0


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("locations", help="add or list locations")
    actions = parser.add_subparsers(dest="locations_action", metavar="{add,list,set-credentials}", required=True)

    add = actions.add_parser("add", help="add a location (credentials from a file or stdin)")
    add.add_argument("--emr", required=True, help="EMR slug, e.g. cliniko")
    add.add_argument("--name", required=True, help="display name of the location")
    add.add_argument("--settings", required=True, help="the EMR's non-secret settings as a JSON object")
    add.add_argument(
        "--credentials-file", required=True, metavar="PATH", help="JSON credentials file, or - to read stdin"
    )
    add.add_argument("--time-zone", metavar="AREA/CITY", help="IANA zone; default: the EMR's first location's zone")
    add.add_argument("--no-check", action="store_true", help="do not call the EMR to prove the credentials work")
    add_json_flag(add)
    add.set_defaults(handler=run_add)

    renew = actions.add_parser(
        "set-credentials", help="replace a location's credentials, e.g. a renewed Jane or SimplePractice session"
    )
    renew.add_argument("location", metavar="LOCATION")
    renew.add_argument(
        "--credentials-file", required=True, metavar="PATH", help="JSON credentials file, or - to read stdin"
    )
    renew.add_argument("--no-check", action="store_true", help="do not call the EMR to prove the credentials work")
    add_json_flag(renew)
    renew.set_defaults(handler=run_set_credentials)

    listing = actions.add_parser("list", help="list locations (never credentials)")
    add_json_flag(listing)
    listing.set_defaults(handler=run_list)


def _valid_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CommandError(f"unknown time zone {name!r} (expected an IANA name like Australia/Sydney)", 2) from None
    return name


async def _check(emr: str, settings: bytes, credentials: bytes, time_zone: str | None) -> str:
    """Proves the credentials against the EMR; returns the zone to store (the EMR's own unless one was given)."""
    from adapters.errors import AdapterError
    from gateway.emr import build_adapter

    try:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as http:
            adapter = build_adapter(
                emr, settings, credentials, http=http, location_id="pending", time_zone=time_zone or "UTC"
            )
            await adapter.check()
            if time_zone:
                return time_zone
            found = await adapter.list_locations()
    except AdapterError as exc:
        raise CommandError(f"EMR check failed ({type(exc).__name__}): {exc.message}") from None
    except httpx.HTTPError as exc:
        raise CommandError(f"EMR check failed: cannot reach the EMR ({type(exc).__name__})") from None
    zones = [loc.time_zone for loc in found if loc.time_zone]
    if not zones:
        raise CommandError("the EMR reports no location with a time zone: pass --time-zone", 2)
    return zones[0]


async def _add(args: argparse.Namespace) -> LocationView:
    # Imported here: the adapter registry loads third-party entry points, which only this command needs.
    from gateway.emr import ConfigError, decode_settings

    settings = args.settings.encode()
    credentials = read_secret_file(args.credentials_file, "credentials")
    if args.time_zone:
        _valid_zone(args.time_zone)
    try:
        decode_settings(args.emr, settings, credentials)
    except KeyError as exc:
        raise CommandError(str(exc.args[0]) if exc.args else "unknown EMR", 2) from None
    except ConfigError as exc:
        raise CommandError(f"invalid {exc}", 2) from None
    if args.no_check:
        if not args.time_zone:
            raise CommandError("--time-zone is required with --no-check (it is otherwise read from the EMR)", 2)
        time_zone = args.time_zone
    else:
        time_zone = _valid_zone(await _check(args.emr, settings, credentials, args.time_zone))
    store = await open_store(database_url(), load_keyring())
    try:
        record = await store.create_location(
            emr=args.emr, name=args.name, settings_json=settings, credentials_json=credentials, time_zone=time_zone
        )
        await store.audit(location_id=record.id, actor=actor(), action="location.create", target=record.id)
    finally:
        await store.close()
    return LocationView.of(record)


def run_add(args: argparse.Namespace) -> int:
    view = asyncio.run(_add(args))
    emit(args, view, f"{view.id}  {view.emr}  {view.name}  ({view.time_zone})")
    return 0


async def _list() -> list[LocationView]:
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        return [LocationView.of(record) for record in await store.list_locations()]
    finally:
        await store.close()


def run_list(args: argparse.Namespace) -> int:
    views = asyncio.run(_list())
    human = "\n".join(f"{v.id}  {v.emr}  {v.name}  ({v.time_zone})" for v in views) or "no locations"
    emit(args, views, human)
    return 0


async def _set_credentials(args: argparse.Namespace) -> LocationView:
    from gateway.emr import ConfigError, decode_settings

    credentials = read_secret_file(args.credentials_file, "credentials")
    store = await open_store(database_url(), load_keyring())
    try:
        record = await store.get_location(args.location)
        if record is None:
            raise CommandError(f"no location {args.location}", 2)
        try:
            decode_settings(record.emr, record.settings_json, credentials)
        except ConfigError as exc:
            raise CommandError(f"invalid {exc}", 2) from None
        if not args.no_check:
            await _check(record.emr, record.settings_json, credentials, record.time_zone)
        await store.set_credentials(record.id, credentials)
        await store.audit(location_id=record.id, actor=actor(), action="location.credentials", target=record.id)
    finally:
        await store.close()
    return LocationView.of(record)


def run_set_credentials(args: argparse.Namespace) -> int:
    view = asyncio.run(_set_credentials(args))
    emit(args, view, f"{view.id}  credentials replaced (running gateways pick them up within 30 s)")
    return 0

"""`emr-gateway locations add|list|set-credentials|verify`: a clinic site, its EMR settings and (encrypted)
credentials, and read-only probes of the live account before it books."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msgspec

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
from schemas.verify import VerifyReport

if TYPE_CHECKING:
    from gateway.emr import AnyAdapter

CHECK_TIMEOUT_SECONDS = 30.0


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("locations", help="add or list locations")
    actions = parser.add_subparsers(dest="locations_action", metavar="{add,list,set-credentials,verify}", required=True)

    add = actions.add_parser("add", help="add a location (credentials from a file or stdin)")
    add.add_argument("--emr", required=True, help="EMR slug, e.g. cliniko")
    add.add_argument("--name", required=True, help="display name of the location")
    add.add_argument("--settings", required=True, help="the EMR's non-secret settings as a JSON object")
    add.add_argument(
        "--credentials-file", required=True, metavar="PATH", help="JSON credentials file, or - to read stdin"
    )
    add.add_argument("--time-zone", metavar="AREA/CITY", help="IANA zone; default: the EMR's first location's zone")
    add.add_argument(
        "--no-check", action="store_true", help="do not call the EMR (skips `locations verify`'s read-only probes)"
    )
    add_json_flag(add)
    add.set_defaults(handler=run_add)

    verify = actions.add_parser(
        "verify", help="read-only probes of the live EMR account: auth, catalog, lists, availability, a read"
    )
    verify.add_argument("location", metavar="LOCATION")
    add_json_flag(verify)
    verify.set_defaults(handler=run_verify)

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


def _adapter(emr: str, settings: bytes, credentials: bytes, time_zone: str, http: httpx.AsyncClient) -> AnyAdapter:
    from gateway.emr import build_adapter

    return build_adapter(emr, settings, credentials, http=http, location_id="pending", time_zone=time_zone)


async def _zone_of(emr: str, settings: bytes, credentials: bytes) -> str:
    """The zone of the EMR's first location, for `add` without --time-zone."""
    from adapters.errors import AdapterError

    try:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as http:
            adapter = _adapter(emr, settings, credentials, "UTC", http)
            await adapter.check()
            found = await adapter.list_locations()
    except AdapterError as exc:
        raise CommandError(f"EMR check failed ({type(exc).__name__}): {exc.message}") from None
    except httpx.HTTPError as exc:
        raise CommandError(f"EMR check failed: cannot reach the EMR ({type(exc).__name__})") from None
    zones = [loc.time_zone for loc in found if loc.time_zone]
    if not zones:
        raise CommandError("the EMR reports no location with a time zone: pass --time-zone", 2)
    return zones[0]


async def _verify(emr: str, settings: bytes, credentials: bytes, time_zone: str) -> VerifyReport:
    """`EMRAdapter.verify()` against the live account; transport failures become a failed probe, not a crash."""
    try:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as http:
            return await _adapter(emr, settings, credentials, time_zone, http).verify()
    except httpx.HTTPError as exc:
        raise CommandError(f"EMR check failed: cannot reach the EMR ({type(exc).__name__})") from None


def describe(report: VerifyReport) -> str:
    """The report for people: one line per probe and per uncertain setting."""
    where = f"location {report.location_id} " if report.location_id else ""
    lines = [f"{where}({report.emr}): {'ok' if report.ok else 'FAILED'}"]
    for probe in report.probes:
        text = f"  {probe.status.value:<8} {probe.name}"
        if probe.field_path:
            text += f": the answer no longer decodes at {probe.field_path} ({probe.seen})"
        elif probe.detail:
            text += f": {probe.detail}"
        lines.append(text)
    if report.settings:
        lines.append("settings the evidence marks uncertain:")
    for check in report.settings:
        verdict = {True: "agrees", False: "DISAGREES", None: "nothing to compare"}[check.agrees]
        seen = check.observed if check.observed is not None else "nothing"
        lines.append(f"  {check.setting}: configured {check.configured}, the account shows {seen} ({verdict})")
        if check.source:
            lines.append(f"    source: {check.source}")
    return "\n".join(lines)


def _adopted(settings: bytes, report: VerifyReport) -> tuple[bytes, list[str]]:
    """Settings the operator left out that the account answers (SettingCheck.adopt), merged in."""
    given = msgspec.json.decode(settings)
    if not isinstance(given, dict):
        return settings, []
    adopted = []
    for check in report.settings:
        if check.adopt and check.observed is not None and check.setting not in given:
            given[check.setting] = check.observed
            adopted.append(f"{check.setting}={check.observed}")
    return (msgspec.json.encode(given), adopted) if adopted else (settings, [])


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
    report = None
    if args.no_check:
        if not args.time_zone:
            raise CommandError("--time-zone is required with --no-check (it is otherwise read from the EMR)", 2)
        time_zone = args.time_zone
    else:
        time_zone = args.time_zone or _valid_zone(await _zone_of(args.emr, settings, credentials))
        report = await _verify(args.emr, settings, credentials, time_zone)
        if not report.ok:
            raise CommandError(
                "EMR check failed: the account did not pass `locations verify` (nothing was stored):\n"
                + describe(report)
            )
        settings, adopted = _adopted(settings, report)
        if adopted:
            try:
                decode_settings(args.emr, settings, credentials)
            except ConfigError as exc:
                raise CommandError(f"the account suggested an invalid setting: {exc}") from None
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
            report = await _verify(record.emr, record.settings_json, credentials, record.time_zone)
            if not report.ok:
                raise CommandError(
                    "EMR check failed: the new credentials did not pass `locations verify`:\n" + describe(report)
                )
        await store.set_credentials(record.id, credentials)
        await store.audit(location_id=record.id, actor=actor(), action="location.credentials", target=record.id)
    finally:
        await store.close()
    return LocationView.of(record)


def run_set_credentials(args: argparse.Namespace) -> int:
    view = asyncio.run(_set_credentials(args))
    emit(args, view, f"{view.id}  credentials replaced (running gateways pick them up within 30 s)")
    return 0


async def _verify_location(location_id: str) -> VerifyReport:
    from gateway.config import load_config
    from gateway.emr import EMRPacing
    from gateway.usecases.locations import EMRUnreachable, verify_location

    store = await open_store(database_url(), load_keyring())
    try:
        record = await store.get_location(location_id)
        if record is None:
            raise CommandError(f"no location {location_id}", 2)
        try:
            async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as http:
                # The clinic's budget, shared with serve.
                pacing = EMRPacing.for_config(load_config(), store)
                return await verify_location(store, record, http=http, pacing=pacing, actor=actor())
        except EMRUnreachable as exc:
            raise CommandError(f"cannot reach the EMR ({exc.reason})") from None
    finally:
        await store.close()


def run_verify(args: argparse.Namespace) -> int:
    report = asyncio.run(_verify_location(args.location))
    emit(args, report, describe(report))
    return 0 if report.ok else 1

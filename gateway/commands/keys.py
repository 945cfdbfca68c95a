"""`emr-gateway keys issue|revoke|list`: API keys per location; the plaintext is shown once, at issue."""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec

from gateway.commands import (
    CommandError,
    KeyView,
    Subparsers,
    actor,
    add_json_flag,
    database_url,
    emit,
    load_keyring,
    open_store,
)
from gateway.storage.errors import UnknownLocation
from gateway.usecases.keys import issue_key, list_keys, revoke_key


class IssuedKeyView(KeyView, kw_only=True):
    key: str


class RevokeResult(msgspec.Struct, kw_only=True):
    prefix: str
    revoked: int


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("keys", help="issue, revoke or list API keys")
    actions = parser.add_subparsers(dest="keys_action", metavar="{issue,revoke,list}", required=True)

    issue = actions.add_parser("issue", help="issue a new API key for a location (printed once)")
    issue.add_argument("location", metavar="LOCATION", help="location id (loc_…)")
    issue.add_argument("--test", action="store_true", help="an egw_test_ key instead of egw_live_")
    add_json_flag(issue)
    issue.set_defaults(handler=run_issue)

    revoke = actions.add_parser("revoke", help="revoke a key now, by its display prefix")
    revoke.add_argument("prefix", metavar="KEY_PREFIX", help="the prefix shown by `keys list` (egw_live_…)")
    add_json_flag(revoke)
    revoke.set_defaults(handler=run_revoke)

    listing = actions.add_parser("list", help="list keys (prefixes only), optionally for one location")
    listing.add_argument("location", metavar="LOCATION", nargs="?", help="location id (loc_…)")
    add_json_flag(listing)
    listing.set_defaults(handler=run_list)


async def _issue(location_id: str, test: bool) -> IssuedKeyView:
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        try:
            issued = await issue_key(store, location_id, test=test, actor=actor())
        except UnknownLocation:
            raise CommandError(f"no location {location_id!r} (see `emr-gateway locations list`)") from None
    finally:
        await store.close()
    base = KeyView.of(issued.record)
    return IssuedKeyView(**{f: getattr(base, f) for f in base.__struct_fields__}, key=issued.secret)


def run_issue(args: argparse.Namespace) -> int:
    view = asyncio.run(_issue(args.location, args.test))
    emit(args, view, view.key)
    if not args.json:
        sys.stderr.write(f"Issued {view.prefix}… for {view.location_id}. Store it now: it cannot be shown again.\n")
    return 0


async def _revoke(prefix: str) -> RevokeResult:
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        revoked = await revoke_key(store, prefix, actor=actor())
    finally:
        await store.close()
    return RevokeResult(prefix=prefix, revoked=revoked)


def run_revoke(args: argparse.Namespace) -> int:
    result = asyncio.run(_revoke(args.prefix))
    if not result.revoked:
        raise CommandError(f"no active key with prefix {args.prefix!r} (see `emr-gateway keys list`)")
    emit(args, result, f"revoked {result.prefix}")
    return 0


async def _list(location_id: str | None) -> list[KeyView]:
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        return [KeyView.of(record) for record in await list_keys(store, location_id)]
    finally:
        await store.close()


def run_list(args: argparse.Namespace) -> int:
    views = asyncio.run(_list(args.location))
    lines = [
        f"{v.prefix}…  {v.location_id}  {'test' if v.test else 'live'}  "
        f"{'revoked ' + v.revoked_at.isoformat() if v.revoked_at else 'active'}"
        for v in views
    ]
    emit(args, views, "\n".join(lines) or "no keys")
    return 0

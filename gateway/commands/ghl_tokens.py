"""`emr-gateway ghl-tokens issue|revoke|list` (secret path tokens for GHL's plain Webhook action) and
`emr-gateway ghl-link` (which GHL location a gateway location answers to, for marketplace webhooks)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime

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
)
from gateway.compat.ghl_urls import pasteable
from gateway.ghl.store import GhlLinkConflict, TokenRecord, issue_token, link_ghl_location, list_tokens, revoke_token
from gateway.storage.errors import UnknownLocation

ACTIONS = ("book", "reschedule", "cancel")


class TokenView(msgspec.Struct, kw_only=True):
    id: str
    location_id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: TokenRecord) -> TokenView:
        return cls(
            id=record.id,
            location_id=record.location_id,
            prefix=record.prefix,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )


class IssuedTokenView(TokenView, kw_only=True):
    token: str
    urls: dict[str, str] | None = None
    clinicsync_urls: dict[str, str] | None = None  # ClinicSync's header-less GHL URL -> the one to paste instead


class RevokeResult(msgspec.Struct, kw_only=True):
    prefix: str
    revoked: int


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("ghl-tokens", help="issue, revoke or list GoHighLevel path tokens")
    actions = parser.add_subparsers(dest="ghl_tokens_action", metavar="{issue,revoke,list}", required=True)

    issue = actions.add_parser("issue", help="issue a path token for a location (printed once)")
    issue.add_argument("location", metavar="LOCATION", help="location id (loc_…)")
    issue.add_argument(
        "--base-url", help="the gateway's public URL: also print the URLs to paste (native and ClinicSync-compatible)"
    )
    add_json_flag(issue)
    issue.set_defaults(handler=run_issue)

    revoke = actions.add_parser("revoke", help="revoke a token now, by its display prefix")
    revoke.add_argument("prefix", metavar="PREFIX", help="the prefix shown by `ghl-tokens list` (egw_ghl_…)")
    add_json_flag(revoke)
    revoke.set_defaults(handler=run_revoke)

    listing = actions.add_parser("list", help="list tokens (prefixes only), optionally for one location")
    listing.add_argument("location", metavar="LOCATION", nargs="?", help="location id (loc_…)")
    add_json_flag(listing)
    listing.set_defaults(handler=run_list)

    link = sub.add_parser("ghl-link", help="link a location to its GHL location id (marketplace webhooks)")
    link.add_argument("location", metavar="LOCATION", help="location id (loc_…)")
    link.add_argument("ghl_location_id", metavar="GHL_LOCATION_ID", nargs="?", help="GHL's locationId")
    link.add_argument("--clear", action="store_true", help="remove the link")
    add_json_flag(link)
    link.set_defaults(handler=run_link)


def webhook_urls(base_url: str, token: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {action: f"{base}/ghl/v1/{token}/appointments/{action}" for action in ACTIONS}


async def _issue(location_id: str, base_url: str | None) -> IssuedTokenView:
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        try:
            issued = await issue_token(store, location_id)
        except UnknownLocation:
            raise CommandError(f"no location {location_id!r} (see `emr-gateway locations list`)") from None
        await store.audit(location_id=location_id, actor=actor(), action="ghl_token.issue", target=issued.record.prefix)
    finally:
        await store.close()
    base = TokenView.of(issued.record)
    return IssuedTokenView(
        **{f: getattr(base, f) for f in base.__struct_fields__},
        token=issued.secret,
        urls=webhook_urls(base_url, issued.secret) if base_url else None,
        clinicsync_urls=pasteable(base_url, issued.secret) if base_url else None,
    )


def run_issue(args: argparse.Namespace) -> int:
    view = asyncio.run(_issue(args.location, args.base_url))
    human = view.token if not view.urls else "\n".join([view.token, *view.urls.values()])
    if view.clinicsync_urls:
        width = max(map(len, view.clinicsync_urls))
        pairs = [f"{theirs:<{width}}  ->  {ours}" for theirs, ours in view.clinicsync_urls.items()]
        human = "\n".join([human, "", "ClinicSync Pro's GHL URLs (same bodies) -> paste instead:", *pairs])
    emit(args, view, human)
    if not args.json:
        sys.stderr.write(f"Issued {view.prefix}… for {view.location_id}. Store it now: it cannot be shown again.\n")
    return 0


async def _revoke(prefix: str) -> RevokeResult:
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        revoked = await revoke_token(store, prefix)
        if revoked:
            await store.audit(location_id=None, actor=actor(), action="ghl_token.revoke", target=prefix)
    finally:
        await store.close()
    return RevokeResult(prefix=prefix, revoked=revoked)


def run_revoke(args: argparse.Namespace) -> int:
    result = asyncio.run(_revoke(args.prefix))
    if not result.revoked:
        raise CommandError(f"no active GHL token with prefix {args.prefix!r} (see `emr-gateway ghl-tokens list`)")
    emit(args, result, f"revoked {result.prefix}")
    return 0


async def _list(location_id: str | None) -> list[TokenView]:
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        return [TokenView.of(record) for record in await list_tokens(store, location_id)]
    finally:
        await store.close()


def run_list(args: argparse.Namespace) -> int:
    views = asyncio.run(_list(args.location))
    lines = [
        f"{v.prefix}…  {v.location_id}  {'revoked ' + v.revoked_at.isoformat() if v.revoked_at else 'active'}"
        for v in views
    ]
    emit(args, views, "\n".join(lines) or "no GHL tokens")
    return 0


async def _link(location_id: str, ghl_location_id: str | None) -> LocationView:
    store = await open_store(database_url(), load_keyring(required=False))
    try:
        try:
            record = await link_ghl_location(store, location_id, ghl_location_id)
        except UnknownLocation:
            raise CommandError(f"no location {location_id!r} (see `emr-gateway locations list`)") from None
        except GhlLinkConflict as exc:
            raise CommandError(f"GHL location {ghl_location_id} is already linked to location {exc}") from None
        await store.audit(location_id=location_id, actor=actor(), action="ghl.link", target=ghl_location_id)
    finally:
        await store.close()
    return LocationView.of(record)


def run_link(args: argparse.Namespace) -> int:
    if args.clear == bool(args.ghl_location_id):
        raise CommandError("give GHL_LOCATION_ID, or --clear", 2)
    view = asyncio.run(_link(args.location, None if args.clear else args.ghl_location_id.strip()))
    emit(args, view, f"{view.id} -> GHL location {view.ghl_location_id or '(none)'}")
    return 0

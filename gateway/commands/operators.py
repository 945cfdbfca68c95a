"""`emr-gateway operators add|list|remove|set-password`: who may sign in to the operator console (/console).

A password is read from stdin, never from argv (where `ps` and shell history would see it): typed twice at a
terminal, or the first line of piped input (`printf '%s\\n' "$PW" | emr-gateway operators add ops@clinic.example`).
Only an argon2id hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import datetime

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
)


class OperatorView(msgspec.Struct, kw_only=True):
    id: str
    email: str
    created_at: datetime
    last_sign_in_at: datetime | None


class Removed(msgspec.Struct, kw_only=True):
    email: str
    removed: bool


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("operators", help="add, list or remove operator-console accounts")
    actions = parser.add_subparsers(dest="operators_action", metavar="{add,list,remove,set-password}", required=True)

    add = actions.add_parser("add", help="add an operator (the password is read from stdin)")
    add.add_argument("email", metavar="EMAIL")
    add_json_flag(add)
    add.set_defaults(handler=run_add)

    password = actions.add_parser(
        "set-password", help="give an operator a new password (from stdin); their sessions end"
    )
    password.add_argument("email", metavar="EMAIL")
    add_json_flag(password)
    password.set_defaults(handler=run_set_password)

    listing = actions.add_parser("list", help="list operators (never a password or hash)")
    add_json_flag(listing)
    listing.set_defaults(handler=run_list)

    remove = actions.add_parser("remove", help="remove an operator; their sessions end at once")
    remove.add_argument("email", metavar="EMAIL")
    add_json_flag(remove)
    remove.set_defaults(handler=run_remove)


def read_password() -> str:
    """Twice at a terminal (no echo); otherwise the first line of stdin, without its line break."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise CommandError("the two passwords differ", 2)
        return first
    line = sys.stdin.readline()
    if not line:
        raise CommandError("no password on stdin (pipe it in, e.g. printf '%s\\n' \"$PW\" | emr-gateway …)", 2)
    return line.rstrip("\r\n")


def _view(record: object) -> OperatorView:
    return OperatorView(**{f: getattr(record, f) for f in OperatorView.__struct_fields__})


async def _add(email: str, password: str) -> OperatorView:
    from gateway.usecases.operators import InvalidOperator, OperatorExists, add_operator

    store = await open_store(database_url(), load_keyring(required=False))
    try:
        try:
            record = await add_operator(store, email, password)
        except InvalidOperator as exc:
            raise CommandError(str(exc), 2) from None
        except OperatorExists:
            raise CommandError(f"an operator {email.strip().lower()} exists already (see `operators list`)") from None
        await store.audit(location_id=None, actor=actor(), action="operator.add", target=record.email)
        return _view(record)
    finally:
        await store.close()


def run_add(args: argparse.Namespace) -> int:
    from gateway.usecases.operators import InvalidOperator, normalize_email

    try:
        normalize_email(args.email)  # before asking for a password
    except InvalidOperator as exc:
        raise CommandError(str(exc), 2) from None
    view = asyncio.run(_add(args.email, read_password()))
    emit(args, view, f"operator {view.email} added: sign in at /console")
    return 0


async def _set_password(email: str, password: str) -> bool:
    from gateway.usecases.operators import InvalidOperator, set_password

    store = await open_store(database_url(), load_keyring(required=False))
    try:
        try:
            changed = await set_password(store, email, password)
        except InvalidOperator as exc:
            raise CommandError(str(exc), 2) from None
        if changed:
            await store.audit(location_id=None, actor=actor(), action="operator.password", target=email.lower())
        return changed
    finally:
        await store.close()


def run_set_password(args: argparse.Namespace) -> int:
    if not asyncio.run(_set_password(args.email, read_password())):
        raise CommandError(f"no operator {args.email!r} (see `emr-gateway operators list`)")
    emit(args, {"email": args.email.strip().lower(), "changed": True}, "password changed; their sessions ended")
    return 0


async def _list() -> list[OperatorView]:
    from gateway.usecases.operators import list_operators

    store = await open_store(database_url(), load_keyring(required=False))
    try:
        return [_view(record) for record in await list_operators(store)]
    finally:
        await store.close()


def run_list(args: argparse.Namespace) -> int:
    views = asyncio.run(_list())
    lines = [
        f"{v.email}  added {v.created_at.isoformat(timespec='seconds')}  "
        f"last sign-in {v.last_sign_in_at.isoformat(timespec='seconds') if v.last_sign_in_at else 'never'}"
        for v in views
    ]
    emit(args, views, "\n".join(lines) or "no operators")
    return 0


async def _remove(email: str) -> Removed:
    from gateway.usecases.operators import InvalidOperator, remove_operator

    store = await open_store(database_url(), load_keyring(required=False))
    try:
        try:
            removed = await remove_operator(store, email)
        except InvalidOperator as exc:
            raise CommandError(str(exc), 2) from None
        if removed:
            await store.audit(location_id=None, actor=actor(), action="operator.remove", target=email.strip().lower())
        return Removed(email=email.strip().lower(), removed=removed)
    finally:
        await store.close()


def run_remove(args: argparse.Namespace) -> int:
    result = asyncio.run(_remove(args.email))
    if not result.removed:
        raise CommandError(f"no operator {args.email!r} (see `emr-gateway operators list`)")
    emit(args, result, f"operator {result.email} removed; their sessions ended")
    return 0

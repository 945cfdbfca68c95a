"""What the admin commands share: `--json` output, secrets read from files, the environment, one error type."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import datetime
from typing import Any, TypeAlias

import msgspec

from gateway.crypto import ENV_KEY, ENV_KEY_FILE, Keyring
from gateway.storage import urls
from gateway.storage.migrate import head_revision
from gateway.storage.records import ApiKeyRecord, LocationRecord
from gateway.storage.store import Store

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """An expected failure: printed as one line on stderr, no traceback. Code 2: bad input; 1: it did not work."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class LocationView(msgspec.Struct, kw_only=True):
    id: str
    emr: str
    name: str
    time_zone: str
    ghl_location_id: str | None
    settings: msgspec.Raw
    created_at: datetime

    @classmethod
    def of(cls, record: LocationRecord) -> LocationView:
        return cls(
            id=record.id,
            emr=record.emr,
            name=record.name,
            time_zone=record.time_zone,
            ghl_location_id=record.ghl_location_id,
            settings=msgspec.Raw(record.settings_json),
            created_at=record.created_at,
        )


class KeyView(msgspec.Struct, kw_only=True):
    id: str
    location_id: str
    prefix: str
    test: bool
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: ApiKeyRecord) -> KeyView:
        return cls(
            id=record.id,
            location_id=record.location_id,
            prefix=record.prefix,
            test=record.test,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def emit(args: argparse.Namespace, payload: Any, human: str) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
    elif human:
        sys.stdout.write(human.rstrip("\n") + "\n")
    sys.stdout.flush()


def read_secret_file(path: str, what: str) -> bytes:
    """Secrets come from a file or stdin (`-`), never from argv where `ps` and shell history would see them."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError(f"cannot read {what} file {path}: {exc.strerror}", 2) from None


def database_url() -> str:
    return urls.from_env()


def load_keyring(*, required: bool = True) -> Keyring:
    """Commands that never touch ciphertext (listing, keys) run without a master key; a malformed one still fails."""
    if not required and not (os.environ.get(ENV_KEY, "").strip() or os.environ.get(ENV_KEY_FILE, "").strip()):
        return Keyring.generate()
    return Keyring.from_env(os.environ)


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


async def open_store(url: str, keyring: Keyring) -> Store:
    """Commands never migrate implicitly: an old schema is an error that says what to run."""
    if urls.backend_of(url) == "sqlite" and not urls.sqlite_path(url).exists():
        raise CommandError(f"no database at {urls.sqlite_path(url)}: run `emr-gateway migrate` first")
    store = await Store.open(url, keyring)
    try:
        current = await store.schema_revision()
    except BaseException:
        await store.close()
        raise
    head = head_revision()
    if current != head:
        await store.close()
        state = "not migrated" if current is None else f"at schema {current}, this version needs {head}"
        raise CommandError(f"the database is {state}: run `emr-gateway migrate` first")
    return store

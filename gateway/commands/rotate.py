"""`emr-gateway rotate-master-key` (re-encrypt under the primary key) and `generate-master-key` (a new entry).

Rotation: put a new entry first in EGW_MASTER_KEY (`k2:…,k1:…`), run rotate-master-key, then drop the old entry.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import msgspec

from gateway.commands import Subparsers, actor, add_json_flag, database_url, emit, load_keyring, open_store
from gateway.crypto import generate_key


class RotateResult(msgspec.Struct, kw_only=True):
    key_id: str
    reencrypted: int


class GeneratedKey(msgspec.Struct, kw_only=True):
    key_id: str
    entry: str


def register(sub: Subparsers) -> None:
    rotate = sub.add_parser("rotate-master-key", help="re-encrypt every stored secret under the primary master key")
    add_json_flag(rotate)
    rotate.set_defaults(handler=run_rotate)

    generate = sub.add_parser("generate-master-key", help="print a new `kid:base64key` entry for EGW_MASTER_KEY")
    generate.add_argument("--key-id", help="default: k<YYYYMMDD>")
    add_json_flag(generate)
    generate.set_defaults(handler=run_generate)


async def _rotate() -> RotateResult:
    keyring = load_keyring()
    store = await open_store(database_url(), keyring)
    try:
        count = await store.rotate_master_key()
        await store.audit(location_id=None, actor=actor(), action="master_key.rotate", target=keyring.primary_key_id)
    finally:
        await store.close()
    return RotateResult(key_id=keyring.primary_key_id, reencrypted=count)


def run_rotate(args: argparse.Namespace) -> int:
    result = asyncio.run(_rotate())
    emit(args, result, f"re-encrypted {result.reencrypted} secret(s) under key {result.key_id}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    key_id = args.key_id or f"k{datetime.now(UTC):%Y%m%d}"
    entry = generate_key(key_id)
    emit(args, GeneratedKey(key_id=key_id, entry=entry), entry)
    if not args.json:
        sys.stderr.write(
            "Put it first in EGW_MASTER_KEY (comma-separated), then run `emr-gateway rotate-master-key`.\n"
        )
    return 0

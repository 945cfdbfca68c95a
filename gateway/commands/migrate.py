"""`emr-gateway migrate`: bring the database schema to this version (safe to run twice, or from two hosts at once)."""

from __future__ import annotations

import argparse

import msgspec

from gateway.commands import Subparsers, add_json_flag, database_url, emit
from gateway.storage import urls
from gateway.storage.migrate import current_revision, upgrade


class MigrateResult(msgspec.Struct, kw_only=True):
    database: str
    previous_revision: str | None
    revision: str | None


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("migrate", help="apply pending database migrations")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    url = database_url()
    before = current_revision(url)
    upgrade(url)
    after = current_revision(url)
    result = MigrateResult(database=urls.redacted(url), previous_revision=before, revision=after)
    human = (
        f"{result.database}: already at {after}"
        if before == after
        else f"{result.database}: migrated {before or 'empty'} -> {after}"
    )
    emit(args, result, human)
    return 0

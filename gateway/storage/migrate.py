"""Schema migrations, run from code so an installed package needs no alembic.ini; safe to run twice or concurrently."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from gateway.storage.engines import make_sync_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates this database.
ADVISORY_LOCK_KEY = 0x6567_775F_6D69_67  # "egw_mig"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision_of(connection: Connection) -> str | None:
    """Works on sync connections and, through run_sync, on async ones."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str) -> None:
    """Bring the database to the newest revision, all in one transaction.

    PostgreSQL: a transaction-scoped advisory lock makes a second migrating process wait, then find nothing to do.
    SQLite: the transaction begins IMMEDIATE, which does the same through the file's write lock.
    """
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return current_revision_of(conn)
    finally:
        engine.dispose()

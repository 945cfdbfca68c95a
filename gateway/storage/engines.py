"""Engines with the connection settings each backend needs to be safe under concurrency."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, SingletonThreadPool

from gateway.storage.urls import async_url, sync_url

SQLITE_BUSY_MS = 10_000
# Execution option that makes a SQLite transaction take the write lock up front (BEGIN IMMEDIATE): a deferred
# transaction that reads then writes fails with SQLITE_BUSY when another writer got in between, busy_timeout or not.
WRITE = "egw_write"


def _sqlite_setup(engine: Engine, *, always_immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = always_immediate or conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_async_engine(url: str) -> AsyncEngine:
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, hide_parameters=True, pool_size=8, max_overflow=8)
        _sqlite_setup(engine.sync_engine, always_immediate=False)
        return engine
    return create_async_engine(target, hide_parameters=True, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_sqlite_writer_engine(url: str) -> Engine:
    """The one connection a process's hot-path SQLite writes use, on one thread (see Store.run_write): every
    transaction takes the write lock at BEGIN and runs start to finish on that thread."""
    engine = create_engine(sync_url(url), hide_parameters=True, poolclass=SingletonThreadPool)
    _sqlite_setup(engine, always_immediate=True)
    return engine


def make_sync_engine(url: str) -> Engine:
    """For migrations: every SQLite transaction takes the write lock, so two migrating processes queue up."""
    target = sync_url(url)
    engine = create_engine(target, hide_parameters=True, poolclass=NullPool)
    if target.get_backend_name() == "sqlite":
        _sqlite_setup(engine, always_immediate=True)
    return engine

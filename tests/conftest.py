"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL (a fresh, migrated, empty database each)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from gateway.crypto import Keyring
from gateway.storage.migrate import upgrade
from gateway.storage.store import Store

PG_DSN_ENV = "EGW_TEST_POSTGRES_DSN"
PG_REQUIRE_ENV = "EGW_TEST_REQUIRE_POSTGRES"
PG_SKIP_REASON = "EGW_TEST_POSTGRES_DSN not set: PostgreSQL tests skipped"


def _libpq_url(url: str, database: str) -> str:
    """The DSN with another database name, as psycopg and SQLAlchemy both accept it."""
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once per session; each test gets a copy, which is much faster than migrating again."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


class _PostgresDatabase:
    def __init__(self, dsn: str) -> None:
        self.name = f"egw_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.admin_url = _libpq_url(dsn, "postgres")
        self.url = _libpq_url(dsn, self.name)
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        upgrade(self.url)
        self._conn = psycopg.connect(self.url, autocommit=True)

    def truncate(self) -> None:
        """Every table but alembic's, including tables later migrations add."""
        rows = self._conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchall()
        if rows:
            names = ", ".join(f'"{name}"' for (name,) in rows)
            self._conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")

    def drop(self) -> None:
        self._conn.close()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[_PostgresDatabase]:
    dsn = os.environ.get(PG_DSN_ENV, "").strip()
    if not dsn:
        if os.environ.get(PG_REQUIRE_ENV) == "1":
            pytest.fail(f"{PG_DSN_ENV} is not set but {PG_REQUIRE_ENV}=1")
        pytest.skip(PG_SKIP_REASON)
    database = _PostgresDatabase(dsn)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a freshly migrated, empty database (plain `sqlite:///…` or `postgresql://…`)."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "egw.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    database: _PostgresDatabase = request.getfixturevalue("_postgres_database")
    database.truncate()
    return database.url


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
async def store(database_url: str, keyring: Keyring) -> AsyncIterator[Store]:
    opened = await Store.open(database_url, keyring)
    try:
        yield opened
    finally:
        await opened.close()

"""Database URLs as operators write them, turned into the driver URLs SQLAlchemy needs (async and sync)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ENV_URL = "EGW_DATABASE_URL"
ENV_URL_FILE = "EGW_DATABASE_URL_FILE"
DEFAULT_URL = "sqlite:///./emr-gateway.db"


class DatabaseURLError(ValueError):
    """The URL names a backend this gateway does not run on."""


def from_env(environ: Mapping[str, str] | None = None) -> str:
    """EGW_DATABASE_URL, else the file EGW_DATABASE_URL_FILE names (a container secret: the URL carries the
    password), else the SQLite default."""
    env = os.environ if environ is None else environ
    url = env.get(ENV_URL, "").strip()
    path = env.get(ENV_URL_FILE, "").strip()
    if url and path:
        raise DatabaseURLError(f"set {ENV_URL} or {ENV_URL_FILE}, not both")
    if url:
        return url
    if path:
        try:
            url = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise DatabaseURLError(f"cannot read {ENV_URL_FILE} ({path}): {exc.strerror}") from None
        if not url:
            raise DatabaseURLError(f"{ENV_URL_FILE} ({path}) is empty")
        return url
    return DEFAULT_URL


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseURLError(f"{ENV_URL} is not a database URL (expected sqlite:///path or postgresql://…)") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "sqlite":
        if driver not in ("", "aiosqlite", "pysqlite"):
            raise DatabaseURLError(f"unsupported SQLite driver {driver!r}")
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseURLError("SQLite needs a file path (sqlite:///path/to/file.db); in-memory is not supported")
    elif backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise DatabaseURLError(f"unsupported PostgreSQL driver {driver!r} (psycopg 3 is used)")
    else:
        raise DatabaseURLError(f"unsupported database {backend!r}: use sqlite:///path or postgresql://…")
    return parsed.set(drivername=backend)


def backend_of(url: str) -> str:
    """'sqlite' or 'postgresql'."""
    return _parse(url).drivername


def sqlite_path(url: str) -> Path:
    return Path(_parse(url).database or "")


def async_url(url: str) -> URL:
    parsed = _parse(url)
    return parsed.set(drivername="sqlite+aiosqlite" if parsed.drivername == "sqlite" else "postgresql+psycopg")


def sync_url(url: str) -> URL:
    parsed = _parse(url)
    return parsed.set(drivername="sqlite+pysqlite" if parsed.drivername == "sqlite" else "postgresql+psycopg")


def redacted(url: str) -> str:
    """For messages and `--json` output: never the password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid url>"

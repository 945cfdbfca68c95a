"""Alembic environment: runs on the connection (and inside the transaction) that gateway.storage.migrate opened."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from gateway.storage.tables import metadata

config = context.config


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    conn = config.attributes.get("connection")
    if not isinstance(conn, Connection):
        raise RuntimeError("run migrations through gateway.storage.migrate.upgrade(url)")
    run_online(conn)

"""Alembic migrations, located and configured from code (gateway.storage.migrate): no alembic.ini at runtime."""

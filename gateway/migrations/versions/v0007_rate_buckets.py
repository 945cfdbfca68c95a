"""Rate buckets: per-API-key limits and per-EMR-account budgets shared by every replica and worker.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(120), nullable=False),
        sa.Column("tokens", sa.Float(precision=53), nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_rate_buckets"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Counters that may restart from a full bucket after a crash: no write-ahead log for them.
        op.execute("ALTER TABLE rate_buckets SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("rate_buckets")

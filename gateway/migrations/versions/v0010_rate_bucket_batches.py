"""Rate buckets hand out tokens in batches: `taken` is how many the last decision granted (0 when refused).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rate_buckets", sa.Column("taken", sa.Float(precision=53), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("rate_buckets", "taken")

"""GoHighLevel: secret path tokens per location (hash + display prefix only).

GHL location links use the existing `locations.ghl_location_id` column (0001).

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ghl_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name="fk_ghl_tokens_location_id_locations", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ghl_tokens"),
        sa.UniqueConstraint("prefix", name="uq_ghl_tokens_prefix"),
        sa.UniqueConstraint("sha256", name="uq_ghl_tokens_sha256"),
    )
    op.create_index("ix_ghl_tokens_location_id", "ghl_tokens", ["location_id"])


def downgrade() -> None:
    op.drop_table("ghl_tokens")

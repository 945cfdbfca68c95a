"""Gateway writes waiting for their webhook snapshot: recorded in the write's own transaction, built by the worker
after the caller has its answer (the snapshot costs EMR calls the caller should not wait for).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_writes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("appointment", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("locked_by", sa.String(120), nullable=True),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name="fk_gateway_writes_location_id_locations", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_writes"),
    )
    op.create_index("ix_gateway_writes_created_at", "gateway_writes", ["created_at"])


def downgrade() -> None:
    op.drop_table("gateway_writes")

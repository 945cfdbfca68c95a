"""Operations: a booking is recorded before it is sent to the EMR and settled after, so a crash or a lost answer is
found again (by a retry or the reconciler) instead of booked twice or stranded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("command", sa.LargeBinary(), nullable=False),
        sa.Column("link_source", sa.String(32), nullable=True),
        sa.Column("link_external_id", sa.String(200), nullable=True),
        sa.Column("owner", sa.String(120), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("next_check_at", TS, nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("settle_by", TS, nullable=False),
        sa.Column("superseded_by", sa.String(40), nullable=True),
        sa.Column("appointment_id", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name="fk_operations_location_id_locations", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_operations"),
    )
    op.create_index("ix_operations_request", "operations", ["location_id", "request_key", "state"])
    # At most one live attempt per booking: the second identical request at the same moment is "in flight".
    pending = sa.text("state = 'pending'")
    op.create_index(
        "uq_operations_pending",
        "operations",
        ["location_id", "request_key"],
        unique=True,
        sqlite_where=pending,
        postgresql_where=pending,
    )
    op.create_index("ix_operations_due", "operations", ["state", "next_check_at"])


def downgrade() -> None:
    op.drop_table("operations")

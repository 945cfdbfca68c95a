"""Appointment aliases: when an EMR gives a rescheduled appointment a new id, the old id keeps working.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "appointment_aliases",
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("old_id", sa.String(200), nullable=False),
        sa.Column("new_id", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name="fk_appointment_aliases_location_id_locations", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("location_id", "old_id", name="pk_appointment_aliases"),
    )
    op.create_index("ix_appointment_aliases_new_id", "appointment_aliases", ["location_id", "new_id"])


def downgrade() -> None:
    op.drop_table("appointment_aliases")

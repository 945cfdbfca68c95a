"""Change detection: per-location poll state (cursor, lease), patient snapshot digests, appointment states.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _location_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["location_id"], ["locations.id"], name=f"fk_{table}_location_id_locations", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("tracking_since", TS, nullable=False),
        sa.Column("next_poll_at", TS, nullable=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("last_poll_at", TS, nullable=True),
        sa.Column("last_sweep_at", TS, nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        _location_fk("sync_state"),
        sa.PrimaryKeyConstraint("location_id", name="pk_sync_state"),
    )
    op.create_index("ix_sync_state_next_poll_at", "sync_state", ["next_poll_at"])

    op.create_table(
        "patient_snapshots",
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source_updated_at", TS, nullable=True),
        sa.Column("patient_updated_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        _location_fk("patient_snapshots"),
        sa.PrimaryKeyConstraint("location_id", "patient_id", name="pk_patient_snapshots"),
    )

    op.create_table(
        "appointment_states",
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("appointment_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("start", TS, nullable=False),
        sa.Column("practitioner_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("emr_updated_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        _location_fk("appointment_states"),
        sa.PrimaryKeyConstraint("location_id", "appointment_id", name="pk_appointment_states"),
    )


def downgrade() -> None:
    for table in ("appointment_states", "patient_snapshots", "sync_state"):
        op.drop_table(table)

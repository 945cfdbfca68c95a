"""GoHighLevel as a destination: connections (sealed token, settings, field ids), link tables, the push queue.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _location() -> sa.Column[str]:
    return sa.Column("location_id", sa.String(40), sa.ForeignKey("locations.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "ghl_connections",
        sa.Column("location_id", sa.String(40), sa.ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("ghl_location_id", sa.String(100), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("settings_json", sa.LargeBinary(), nullable=False),
        sa.Column("field_ids_json", sa.LargeBinary(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_detail", sa.String(300), nullable=True),
        sa.Column("paused_until", TS, nullable=True),
        sa.Column("daily_remaining", sa.Integer(), nullable=True),
        sa.Column("backfill_after", sa.String(64), nullable=True),
        sa.Column("create_lock_by", sa.String(120), nullable=True),
        sa.Column("create_lock_until", TS, nullable=True),
        sa.Column("connected_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "ghl_contact_links",
        _location(),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("contact_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("tags_json", sa.LargeBinary(), nullable=False),
        sa.Column("lapses_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("location_id", "patient_id", name="pk_ghl_contact_links"),
        sa.UniqueConstraint("location_id", "contact_id", name="uq_ghl_contact_links_contact"),
    )
    op.create_index("ix_ghl_contact_links_lapses_at", "ghl_contact_links", ["lapses_at"])
    op.create_table(
        "ghl_event_links",
        _location(),
        sa.Column("appointment_id", sa.String(64), nullable=False),
        sa.Column("ghl_event_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("location_id", "appointment_id", name="pk_ghl_event_links"),
    )
    op.create_index("ix_ghl_event_links_event", "ghl_event_links", ["ghl_event_id"])
    op.create_table(
        "ghl_pushes",
        sa.Column("id", sa.String(40), primary_key=True),
        _location(),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=True),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("appointment_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("locked_by", sa.String(120), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("ghl_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_ghl_pushes_due", "ghl_pushes", ["state", "next_attempt_at"])
    op.create_index("ix_ghl_pushes_patient", "ghl_pushes", ["location_id", "patient_id", "created_at"])


def downgrade() -> None:
    op.drop_table("ghl_pushes")
    op.drop_table("ghl_event_links")
    op.drop_table("ghl_contact_links")
    op.drop_table("ghl_connections")

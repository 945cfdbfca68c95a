"""The operator console: operators (argon2id hashes), their server-side sessions, sign-in throttling, one row per
poll (`sync_runs`), hourly counts per location (`location_hourly`), and the patient each event is about.

`events.patient_id` lets the console's patient trace find a patient's events by index instead of reading payloads;
rows written before this migration keep it null (the trace says so). `login_failures` is keyed by a SHA-256 of the
normalized e-mail, so an address typed by mistake (or by an attacker) is never stored as such.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _location() -> sa.Column[str]:
    return sa.Column("location_id", sa.String(40), sa.ForeignKey("locations.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_sign_in_at", TS, nullable=True),
        sa.UniqueConstraint("email", name="uq_operators_email"),
    )
    op.create_table(
        "operator_sessions",
        sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the cookie's token, never the token
        sa.Column("operator_id", sa.String(40), sa.ForeignKey("operators.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_operator_sessions_operator_id", "operator_sessions", ["operator_id"])
    op.create_index("ix_operator_sessions_expires_at", "operator_sessions", ["expires_at"])
    op.create_table(
        "login_failures",
        sa.Column("email_sha256", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", TS, nullable=False),
        sa.Column("locked_until", TS, nullable=True),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        _location(),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.Column("emr_requests", sa.Integer(), nullable=True),
        sa.Column("appointments_changed", sa.Integer(), nullable=False),
        sa.Column("patients_changed", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sync_runs"),
    )
    op.create_index("ix_sync_runs_location_started", "sync_runs", ["location_id", "started_at"])
    op.create_table(
        "location_hourly",
        _location(),
        sa.Column("hour", TS, nullable=False),
        sa.Column("emr_requests", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("events", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("location_id", "hour", name="pk_location_hourly"),
    )
    op.add_column("events", sa.Column("patient_id", sa.String(64), nullable=True))
    op.create_index("ix_events_patient", "events", ["location_id", "patient_id"])
    op.create_index("ix_deliveries_event_id", "deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_event_id", table_name="deliveries")
    op.drop_index("ix_events_patient", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("patient_id")
    op.drop_table("location_hourly")
    op.drop_table("sync_runs")
    op.drop_table("login_failures")
    op.drop_table("operator_sessions")
    op.drop_table("operators")

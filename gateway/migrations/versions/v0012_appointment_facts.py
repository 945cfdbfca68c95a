"""Appointment facts for snapshots without EMR reads, and the adaptive poll interval.

`appointment_states` gains what a webhook snapshot shows of an appointment (end, service, zone, EMR location, cancel
reason: no names or contact details), so a changed appointment costs no extra EMR read. `patient_snapshots` notes
whether all of a patient's appointments here are known; `sync_state` when a full listing made all of them known,
the poll interval the gateway derived from the account's budget (shown on /v1/health), and which EMR account
(a digest of its credentials, never the secret) the location polls, so locations sharing one budget share it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("appointment_states") as batch:
        batch.add_column(sa.Column("end_at", TS, nullable=True))
        batch.add_column(sa.Column("service_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=True))
        batch.add_column(sa.Column("emr_location_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("cancel_reason", sa.String(32), nullable=True))
    op.create_index("ix_appointment_states_patient", "appointment_states", ["location_id", "patient_id"])
    with op.batch_alter_table("patient_snapshots") as batch:
        batch.add_column(sa.Column("appointments_known", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("sync_state") as batch:
        batch.add_column(sa.Column("facts_complete_at", TS, nullable=True))
        batch.add_column(sa.Column("poll_interval_seconds", sa.Float(precision=53), nullable=True))
        batch.add_column(sa.Column("poll_requests", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("account_key", sa.String(80), nullable=True))
    op.create_index("ix_sync_state_account_key", "sync_state", ["account_key"])


def downgrade() -> None:
    op.drop_index("ix_sync_state_account_key", table_name="sync_state")
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("account_key")
        batch.drop_column("poll_requests")
        batch.drop_column("poll_interval_seconds")
        batch.drop_column("facts_complete_at")
    with op.batch_alter_table("patient_snapshots") as batch:
        batch.drop_column("appointments_known")
    op.drop_index("ix_appointment_states_patient", table_name="appointment_states")
    with op.batch_alter_table("appointment_states") as batch:
        for column in ("cancel_reason", "emr_location_id", "time_zone", "service_id", "end_at"):
            batch.drop_column(column)

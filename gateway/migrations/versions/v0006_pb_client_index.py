"""Practice Better client index: e-mail/name/phone digests of client records per location, and how far it is filled.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pb_client_index",
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("email_sha256", sa.String(64), nullable=True),
        sa.Column("name_sha256", sa.String(64), nullable=True),
        sa.Column("phone_sha256", sa.String(64), nullable=True),
        sa.Column("modified_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name="fk_pb_client_index_location_id_locations", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("location_id", "record_id", name="pk_pb_client_index"),
    )
    op.create_index("ix_pb_client_index_email", "pb_client_index", ["location_id", "email_sha256"])
    op.create_index("ix_pb_client_index_name", "pb_client_index", ["location_id", "name_sha256"])
    op.create_index("ix_pb_client_index_phone", "pb_client_index", ["location_id", "phone_sha256"])
    op.create_table(
        "pb_client_index_state",
        sa.Column("location_id", sa.String(40), nullable=False),
        sa.Column("watermark", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name="fk_pb_client_index_state_location_id_locations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("location_id", name="pk_pb_client_index_state"),
    )


def downgrade() -> None:
    op.drop_table("pb_client_index_state")
    op.drop_table("pb_client_index")

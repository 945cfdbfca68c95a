"""The schema as SQLAlchemy Core tables; migrations create it, this describes it for queries (one MetaData)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Always-aware UTC datetimes on both backends (SQLite would otherwise hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

locations = Table(
    "locations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("emr", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("settings_json", LargeBinary, nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("ghl_location_id", String(100), nullable=True, index=True),
    Column("created_at", UTCDateTime, nullable=False),
)

emr_credentials = Table(
    "emr_credentials",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("prefix", String(32), nullable=False, unique=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("api_key_id", String(40), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
    Column("method", String(10), nullable=False),
    Column("route", String(200), nullable=False),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # in_flight | done
    Column("status_code", Integer, nullable=True),
    Column("content_type", String(200), nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    PrimaryKeyConstraint("api_key_id", "method", "route", "key"),
)

appointment_links = Table(
    "appointment_links",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(32), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("emr_appointment_id", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("location_id", "source", "external_id"),
)

# No foreign key: the audit trail outlives what it talks about. Never patient data here.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("location_id", String(40), nullable=True),
    Column("actor", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", Text, nullable=True),
    Index("ix_audit_log_location_id_at", "location_id", "at"),
)

"""The schema as SQLAlchemy Core tables; migrations create it, this describes it for queries (one MetaData)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
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
    UniqueConstraint,
    false,
    text,
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

# -- patient-update webhooks: delivery (endpoints, the event outbox, one delivery per endpoint and event) -------------

# The secret set (current + previous during rotation) is one sealed blob: aad "webhook_endpoints:<id>".
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("event_types", Text, nullable=False),  # JSON list of EventType values
    Column("format", String(32), nullable=False),
    Column("description", String(255), nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", String(200), nullable=True),
    Column("failing_since", UTCDateTime, nullable=True),
    Column("key_id", String(32), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("previous_expires_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),  # the Standard Webhooks webhook-id
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),  # msgspec JSON of schemas.webhooks.WebhookEvent
    Column("created_at", UTCDateTime, nullable=False),
    # The patient the event is about (migration 0014; null on older rows and on endpoint events): the console's
    # patient trace finds a patient's events by this index instead of reading payloads.
    Column("patient_id", String(64), nullable=True),
    Index("ix_events_location_id_created_at", "location_id", "created_at"),
    Index("ix_events_patient", "location_id", "patient_id"),
)

# One row per (endpoint, event): retries and replays reuse it, so webhook-id never changes for a receiver.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(40), ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivering | succeeded | failed | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("locked_by", String(100), nullable=True),
    Column("last_attempt_at", UTCDateTime, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("last_response_body", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("endpoint_id", "event_id", name="uq_deliveries_endpoint_id_event_id"),
    Index("ix_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    Index("ix_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
    Index("ix_deliveries_event_id", "event_id"),  # migration 0014: an event's deliveries (the patient trace)
)

# -- patient-update webhooks: change detection (poll cursor + lease per location, what subscribers last saw) ----------

# One row per location that is polled. `last_error` holds an error class name only, never patient data.
sync_state = Table(
    "sync_state",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True),
    Column("cursor", Text, nullable=True),
    Column("tracking_since", UTCDateTime, nullable=False),
    Column("next_poll_at", UTCDateTime, nullable=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("last_poll_at", UTCDateTime, nullable=True),
    Column("last_sweep_at", UTCDateTime, nullable=True),
    Column("last_error", String(200), nullable=True),
    Column("consecutive_failures", Integer, nullable=False),
    Column("facts_complete_at", UTCDateTime, nullable=True),  # a full listing made every appointment here known
    Column("poll_interval_seconds", Float(precision=53), nullable=True),  # derived from the budget (migration 0012)
    Column("poll_requests", Integer, nullable=True),  # EMR requests the last poll sent
    Column("account_key", String(80), nullable=True),  # the EMR account's budget key (a digest, never the secret)
    Index("ix_sync_state_next_poll_at", "next_poll_at"),
    Index("ix_sync_state_account_key", "account_key"),
)

# The digest of the last patient snapshot published: an equal digest means nothing a subscriber sees changed.
patient_snapshots = Table(
    "patient_snapshots",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_updated_at", UTCDateTime, nullable=True),  # newest EMR updated_at the snapshot was built from
    Column("patient_updated_at", UTCDateTime, nullable=True),  # the patient record's own, to skip re-reads
    Column("appointments_known", Boolean, nullable=False, server_default=false()),  # all of theirs are stored
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("location_id", "patient_id"),
)

# The last seen state of each appointment: tells booked / rescheduled / cancelled / no-show from mere edits, and holds
# what a patient snapshot shows of it (no names or contact details), so a snapshot costs no appointment read.
appointment_states = Table(
    "appointment_states",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("appointment_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("practitioner_id", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("emr_updated_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("end_at", UTCDateTime, nullable=True),  # facts (migration 0012); null on rows stored before it
    Column("service_id", String(64), nullable=True),
    Column("time_zone", String(64), nullable=True),
    Column("emr_location_id", String(64), nullable=True),
    Column("cancel_reason", String(32), nullable=True),
    PrimaryKeyConstraint("location_id", "appointment_id"),
    Index("ix_appointment_states_patient", "location_id", "patient_id"),
)

# -- GoHighLevel (migration 0004) --
# Secret path tokens for GHL's plain workflow webhook action (it cannot set headers): like api_keys, only a SHA-256
# and a display prefix are stored.
ghl_tokens = Table(
    "ghl_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("prefix", String(32), nullable=False, unique=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

# -- Appointment aliases (migration 0005) --
# An EMR that gives a rescheduled appointment a new id (Nookal's cancel + book): the old id keeps resolving to the
# current one, so a caller holding it can still get and cancel the appointment.
appointment_aliases = Table(
    "appointment_aliases",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("old_id", String(200), nullable=False),
    Column("new_id", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("location_id", "old_id"),
    Index("ix_appointment_aliases_new_id", "location_id", "new_id"),
)

# -- Practice Better client index (migration 0006) --
# Practice Better cannot filter client records by e-mail: the adapter pages them (incrementally, `modified_gte`)
# into this index. Only SHA-256 digests of the normalized e-mail, name and phone are stored, never the values.
pb_client_index = Table(
    "pb_client_index",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("email_sha256", String(64), nullable=True),
    Column("name_sha256", String(64), nullable=True),
    Column("phone_sha256", String(64), nullable=True),
    Column("modified_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("location_id", "record_id"),
    Index("ix_pb_client_index_email", "location_id", "email_sha256"),
    Index("ix_pb_client_index_name", "location_id", "name_sha256"),
    Index("ix_pb_client_index_phone", "location_id", "phone_sha256"),
)

# How far the index is filled: the newest `dateModified` paged in, per location.
pb_client_index_state = Table(
    "pb_client_index_state",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True),
    Column("watermark", UTCDateTime, nullable=False),
)

# Token buckets shared by every replica and worker: per API key and per EMR account (never a secret: keys are
# "apikey:<id>" and "emr:<slug>:<HMAC of the credentials>"). Times are the database's clock, in epoch seconds.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(120), primary_key=True),
    Column("tokens", Float(precision=53), nullable=False),
    Column("updated_at", Float(precision=53), nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("taken", Float(precision=53), nullable=False, server_default="0"),  # the last batch handed out
)

# -- EMR contract changes (migration 0008) --
# A response that no longer decoded: the field path and what was there instead (names and types, never a value),
# per location, so `GET /v1/health` on any replica shows it.
emr_contract_changes = Table(
    "emr_contract_changes",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("path", String(300), nullable=False),
    Column("problem", String(200), nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("location_id", "path"),
)

# -- Operations (migration 0009) --
# A booking recorded before it is sent and settled after; `command` is the resolved BookCommand (ids and times, no
# notes, no patient details). Open states: pending (a live request owns it until `lease_until`) and unknown (the
# reconciler watches until `settle_by`).
operations = Table(
    "operations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("request_key", String(64), nullable=False),
    Column("command", LargeBinary, nullable=False),
    Column("link_source", String(32), nullable=True),
    Column("link_external_id", String(200), nullable=True),
    Column("owner", String(120), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("next_check_at", UTCDateTime, nullable=True),
    Column("checks", Integer, nullable=False),
    Column("settle_by", UTCDateTime, nullable=False),
    Column("superseded_by", String(40), nullable=True),
    Column("appointment_id", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_operations_request", "location_id", "request_key", "state"),
    Index("ix_operations_due", "state", "next_check_at"),
    Index(
        "uq_operations_pending",
        "location_id",
        "request_key",
        unique=True,
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
)

# -- Gateway writes awaiting their snapshot (migration 0011) --
# A booking, move or cancel made through the gateway, recorded in the same transaction as its outcome; the worker
# builds the patient snapshot (EMR reads) and publishes the events, then deletes the row.
gateway_writes = Table(
    "gateway_writes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("appointment", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("locked_by", String(120), nullable=True),
    Index("ix_gateway_writes_created_at", "created_at"),
)

# GoHighLevel as a destination (migration 0013): one connection per gateway location, link tables (EMR id <-> GHL
# id) so a retry updates instead of duplicating, and the push queue fed by the outbox (also the operator's sync log).
ghl_connections = Table(
    "ghl_connections",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True),
    Column("ghl_location_id", String(100), nullable=False),
    Column("base_url", String(500), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),  # the Private Integration token, sealed
    Column("settings_json", LargeBinary, nullable=False),
    Column("field_ids_json", LargeBinary, nullable=False),  # gateway field key -> GHL custom field id
    Column("enabled", Boolean, nullable=False),
    Column("status", String(32), nullable=False),  # ok | auth_failed
    Column("status_detail", String(300), nullable=True),
    Column("paused_until", UTCDateTime, nullable=True),  # GHL answered 429: nothing is sent before then
    Column("daily_remaining", Integer, nullable=True),
    Column("backfill_after", String(64), nullable=True),  # `ghl sync` resumes after this patient id
    # A lease held while a contact is looked up and created: two patients sharing a phone, pushed at once by two
    # workers, would otherwise both find no contact and meet in one (GHL's create matches by e-mail and phone).
    Column("create_lock_by", String(120), nullable=True),
    Column("create_lock_until", UTCDateTime, nullable=True),
    Column("connected_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

ghl_contact_links = Table(
    "ghl_contact_links",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("contact_id", String(64), nullable=False),
    Column("digest", String(64), nullable=True),  # of what was last written: equal means no GHL call
    Column("tags_json", LargeBinary, nullable=False),  # the gateway-owned tags it holds
    Column("lapses_at", UTCDateTime, nullable=True),  # when the lapsed rule turns true without any EMR change
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("location_id", "patient_id"),
    UniqueConstraint("location_id", "contact_id", name="uq_ghl_contact_links_contact"),
    Index("ix_ghl_contact_links_lapses_at", "lapses_at"),
)

ghl_event_links = Table(
    "ghl_event_links",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("appointment_id", String(64), nullable=False),
    Column("ghl_event_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # appointment | block
    Column("digest", String(64), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("location_id", "appointment_id"),
    Index("ix_ghl_event_links_event", "ghl_event_id"),
)

ghl_pushes = Table(
    "ghl_pushes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("event_id", String(40), nullable=True),  # null: a refresh (lapse sweep, replay of current state)
    Column("event_type", String(40), nullable=False),
    Column("appointment_id", String(64), nullable=True),
    Column("state", String(16), nullable=False),  # pending | pushing | pushed | skipped | failed | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("locked_by", String(120), nullable=True),
    Column("calls", Integer, nullable=False),  # GHL requests the last attempt made
    Column("ghl_status", Integer, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error", String(300), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_ghl_pushes_due", "state", "next_attempt_at"),
    Index("ix_ghl_pushes_patient", "location_id", "patient_id", "created_at"),
)

# -- The operator console (migration 0014) --
# Operators sign in to /console with an e-mail and a password (an argon2id hash is stored, never the password).
operators = Table(
    "operators",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),  # normalized: stripped, lower case
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_sign_in_at", UTCDateTime, nullable=True),
)

# Server-side sessions, so any replica serves them: the row is keyed by a SHA-256 of the cookie's token (a copy of
# the table opens no session); `csrf_token` is the session's synchronizer token for every console form.
operator_sessions = Table(
    "operator_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("operator_id", String(40), ForeignKey("operators.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# Failed sign-ins per e-mail (a SHA-256 of the normalized address, known or not): a window's count and a lock.
login_failures = Table(
    "login_failures",
    metadata,
    Column("email_sha256", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_started_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime, nullable=True),
)

# One row per poll of a location (and per `sync` run): counts and an error class name, never an error's text.
sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("trigger", String(16), nullable=False),  # poll | manual | full
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("emr_requests", Integer, nullable=True),  # null: not counted
    Column("appointments_changed", Integer, nullable=False),
    Column("patients_changed", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("error", String(100), nullable=True),
    Index("ix_sync_runs_location_started", "location_id", "started_at"),
)

# Per location and hour: EMR requests change detection sent and events published (the console's charts).
location_hourly = Table(
    "location_hourly",
    metadata,
    Column("location_id", String(40), ForeignKey("locations.id", ondelete="CASCADE"), nullable=False),
    Column("hour", UTCDateTime, nullable=False),
    Column("emr_requests", Integer, nullable=False, server_default="0"),
    Column("events", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("location_id", "hour"),
)

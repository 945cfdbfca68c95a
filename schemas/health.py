"""Health responses: the process, and one location's EMR connection."""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from schemas.common import Out


class Health(Out):
    status: str


class EMRStatus(enum.StrEnum):
    OK = "ok"
    EMR_AUTH_FAILED = "emr_auth_failed"
    EMR_UNAVAILABLE = "emr_unavailable"
    EMR_ERROR = "emr_error"
    EMR_CONTRACT_CHANGED = "emr_contract_changed"  # an answer no longer decodes (see `contract_changes`)


class SyncHealth(Out):
    """Change detection for the location: when it last polled and, if failing, the error's kind (never its text)."""

    last_poll_at: datetime | None = None
    next_poll_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    # The interval the gateway derived from the EMR account's rate budget and its headroom (or EGW_POLL_SECONDS).
    poll_interval_seconds: float | None = None
    poll_requests: int | None = None  # EMR requests the last poll sent
    facts_complete: bool = False  # a full sync stored every appointment: snapshots cost no appointment read


class ContractChange(Out):
    """Where the EMR's answer stopped matching the adapter: a field path and what was there (never a value)."""

    path: str
    problem: str
    last_seen: datetime
    count: int


class GhlStatus(enum.StrEnum):
    OK = "ok"
    GHL_AUTH_FAILED = "ghl_auth_failed"  # GHL refused the Private Integration token: `ghl connect` with a new one
    GHL_RATE_LIMITED = "ghl_rate_limited"  # paused after a 429 until `paused_until`; nothing is dropped
    DISCONNECTED = "disconnected"  # `ghl disconnect`: pushes wait for a reconnect


class GhlHealth(Out):
    """The GoHighLevel destination of the location (present once `ghl connect` ran)."""

    ghl_location_id: str
    status: GhlStatus
    detail: str | None = None
    paused_until: datetime | None = None
    daily_remaining: int | None = None  # GHL's X-RateLimit-Daily-Remaining, last seen
    pending: int = 0  # pushes waiting (including those retrying)
    dead: int = 0  # pushes that exhausted their retries: replay them


class LocationHealth(Out):
    location_id: str
    emr: str
    status: EMRStatus
    checked_at: datetime
    detail: str | None = None
    sync: SyncHealth | None = None
    contract_changes: list[ContractChange] = msgspec.field(default_factory=list)
    ghl: GhlHealth | None = None

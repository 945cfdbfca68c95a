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


class LocationHealth(Out):
    location_id: str
    emr: str
    status: EMRStatus
    checked_at: datetime
    detail: str | None = None
    sync: SyncHealth | None = None
    contract_changes: list[ContractChange] = msgspec.field(default_factory=list)

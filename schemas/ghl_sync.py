"""The GoHighLevel sync log an operator reads: what was pushed, skipped (unchanged) or failed, never patient data
(ids and GHL's status and the gateway's error code only)."""

from __future__ import annotations

import enum
from datetime import datetime

from schemas.common import Out


class GhlPushState(enum.StrEnum):
    PENDING = "pending"
    PUSHING = "pushing"
    PUSHED = "pushed"  # GHL was written (and the write read back)
    SKIPPED = "skipped"  # unchanged since the last push: no GHL call
    FAILED = "failed"  # the last attempt failed; `next_attempt_at` says when the next one goes
    DEAD = "dead"  # retries exhausted: replay it


class GhlPush(Out):
    id: str
    patient_id: str  # the EMR's patient id
    event_type: str  # the outbox event behind it, or `refresh` (backfill, lapse sweep)
    state: GhlPushState
    attempts: int
    calls: int  # GHL requests the last attempt made
    created_at: datetime
    updated_at: datetime
    event_id: str | None = None
    appointment_id: str | None = None
    next_attempt_at: datetime | None = None
    ghl_status: int | None = None
    error_code: str | None = None  # e.g. ghl_rate_limited, ghl_auth_failed, ghl_field_dropped, ghl_contact_conflict
    error: str | None = None  # the gateway's words, never GHL's text


class GhlSyncLog(Out):
    items: list[GhlPush]
    next_before: str | None = None  # pass as `before` for the next (older) page

"""Health responses: the process, and one location's EMR connection."""

from __future__ import annotations

import enum
from datetime import datetime

from schemas.common import Out


class Health(Out):
    status: str


class EMRStatus(enum.StrEnum):
    OK = "ok"
    EMR_AUTH_FAILED = "emr_auth_failed"
    EMR_UNAVAILABLE = "emr_unavailable"
    EMR_ERROR = "emr_error"


class SyncHealth(Out):
    """Change detection for the location: when it last polled and, if failing, the error's kind (never its text)."""

    last_poll_at: datetime | None = None
    next_poll_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0


class LocationHealth(Out):
    location_id: str
    emr: str
    status: EMRStatus
    checked_at: datetime
    detail: str | None = None
    sync: SyncHealth | None = None

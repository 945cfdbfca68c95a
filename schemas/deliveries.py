"""The webhook delivery log an operator reads: outcomes only, never the payload (no patient data)."""

from __future__ import annotations

import enum
from datetime import datetime

from schemas.common import Out


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the last attempt failed; `next_attempt_at` says when the next one goes
    DEAD = "dead"  # retries exhausted: dead-lettered until retried or replayed


class Delivery(Out):
    id: str
    endpoint_id: str
    event_id: str  # the webhook-id the receiver saw
    event_type: str
    state: DeliveryState
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    last_response_body: str | None = None  # the receiver's answer, first 1 KiB


class DeliveryList(Out):
    items: list[Delivery]


class ReplayResult(Out):
    queued: int

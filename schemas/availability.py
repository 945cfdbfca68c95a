"""Open slots."""

from __future__ import annotations

from datetime import datetime

from schemas.common import Out


class Slot(Out):
    start: datetime
    end: datetime
    practitioner_id: str
    service_id: str
    time_zone: str


class SlotList(Out):
    items: list[Slot]

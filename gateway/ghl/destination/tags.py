"""Gateway-owned tags: declared rules, one prefix. Only tags with the prefix are ever added or removed; the
agency's own tags are never touched (they are not even read into the decision)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec

from gateway.ghl.destination.settings import GhlSettings
from schemas.appointments import AppointmentStatus
from schemas.webhooks import PatientSnapshot


class TagRule(msgspec.Struct, frozen=True):
    suffix: str
    meaning: str
    applies: Callable[[PatientSnapshot, GhlSettings, datetime], bool]


def _lapsed(snapshot: PatientSnapshot, settings: GhlSettings, now: datetime) -> bool:
    since = last_visit(snapshot)
    return snapshot.upcoming_count == 0 and since is not None and now - since >= timedelta(days=settings.lapsed_days)


def last_visit(snapshot: PatientSnapshot) -> datetime | None:
    """The last appointment's start, unless it was cancelled (a cancellation is not a visit)."""
    last = snapshot.last_appointment
    if last is None or last.status is AppointmentStatus.CANCELLED:
        return None
    return last.start


RULES: tuple[TagRule, ...] = (
    TagRule("patient", "every patient the gateway pushed", lambda s, _, __: True),
    TagRule("upcoming", "has at least one upcoming appointment", lambda s, _, __: s.upcoming_count > 0),
    TagRule(
        "last-no-show",
        "their last appointment was a no-show",
        lambda s, _, __: s.last_appointment is not None and s.last_appointment.status is AppointmentStatus.NOSHOW,
    ),
    TagRule("lapsed", "no upcoming appointment and no visit in `lapsed_days` days (default 180)", _lapsed),
)


def desired(snapshot: PatientSnapshot, settings: GhlSettings, now: datetime) -> set[str]:
    return {f"{settings.tag_prefix}{rule.suffix}" for rule in RULES if rule.applies(snapshot, settings, now)}


def owned(tags: list[str], settings: GhlSettings) -> set[str]:
    """GHL lower-cases tags; ownership is decided on the prefix alone."""
    prefix = settings.tag_prefix.lower()
    return {tag.lower() for tag in tags if tag.lower().startswith(prefix)}


def lapses_at(snapshot: PatientSnapshot, settings: GhlSettings, now: datetime) -> datetime | None:
    """When `lapsed` turns true with no EMR change at all (the worker's sweep re-pushes the patient then)."""
    since = last_visit(snapshot)
    if snapshot.upcoming_count > 0 or since is None:
        return None
    when = since + timedelta(days=settings.lapsed_days)
    return when if when > now else None

"""Patient-update webhooks: subscriptions, the patient snapshot and the events subscribers receive (normalized)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from schemas.appointments import AppointmentStatus
from schemas.common import LABEL_PATTERN, Model, Out, anchored
from schemas.patients import Patient


class EventType(enum.StrEnum):
    PATIENT_UPDATED = "patient.updated"
    APPOINTMENT_BOOKED = "appointment.booked"
    APPOINTMENT_RESCHEDULED = "appointment.rescheduled"
    APPOINTMENT_CANCELLED = "appointment.cancelled"
    APPOINTMENT_NO_SHOW = "appointment.no_show"
    ENDPOINT_DISABLED = "endpoint.disabled"


class PayloadFormat(enum.StrEnum):
    NORMALIZED = "normalized"
    CLINICSYNC = "clinicsync"


class AppointmentSummary(Out, kw_only=True):
    """An appointment as a subscriber sees it: names resolved, times in UTC plus the location's zone."""

    id: str
    status: AppointmentStatus
    start: datetime
    end: datetime
    time_zone: str
    practitioner_id: str
    practitioner_name: str | None = None
    service_id: str
    service_name: str | None = None
    location_id: str
    location_name: str | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None


class PatientSnapshot(Out):
    """Everything `patient.updated` carries; its digest decides whether anything a subscriber sees changed."""

    patient: Patient
    last_appointment: AppointmentSummary | None
    upcoming_appointment: AppointmentSummary | None
    upcoming_count: int
    visit_count: int
    cancellation_count: int
    no_show_count: int
    total_appointments: int


class AppointmentEventData(Out):
    appointment: AppointmentSummary
    patient: Patient | None = None
    previous_start: datetime | None = None


class EndpointDisabledData(Out):
    endpoint_id: str
    reason: str


EventData = PatientSnapshot | AppointmentEventData | EndpointDisabledData


class WebhookEvent(Out):
    """The normalized envelope: `id` is the Standard Webhooks `webhook-id`, stable across retries."""

    id: str
    type: EventType
    timestamp: datetime
    location_id: str
    emr: str
    data: EventData


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3}|0)"
# http(s), a host name or an IP address (no user or password), an optional port, then anything without spaces or
# control characters.
URL_PATTERN = anchored(
    rf"https?://(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::{_PORT})?(?:[/?#][^\s\x00-\x1f\x7f-\x9f]*)?"
)
Url = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=2048,
        pattern=URL_PATTERN,
        description="Where the events are sent (http or https; it must resolve to public addresses)",
        examples=["https://hooks.example.com/emr"],
    ),
]


class CreateWebhook(Model):
    examples: ClassVar[tuple[dict[str, Any], ...]] = (
        {"url": "https://hooks.example.com/emr", "event_types": ["appointment.booked", "appointment.cancelled"]},
    )

    url: Url
    event_types: Annotated[list[EventType], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [t for t in EventType]
    )
    format: PayloadFormat = PayloadFormat.NORMALIZED
    description: Annotated[str, msgspec.Meta(max_length=255, pattern=LABEL_PATTERN)] | None = None


class Webhook(Out):
    id: str
    url: str
    event_types: list[EventType]
    format: PayloadFormat
    enabled: bool
    created_at: datetime
    description: str | None = None
    disabled_reason: str | None = None
    secret: str | None = None  # shown once: on create and on rotation


class WebhookList(Out):
    items: list[Webhook]

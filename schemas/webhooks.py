"""Patient-update webhooks: subscriptions, the patient snapshot and the events subscribers receive (normalized)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import msgspec

from schemas.appointments import AppointmentStatus
from schemas.common import Model, Out
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


Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]


class CreateWebhook(Model):
    url: Url
    event_types: list[EventType] = msgspec.field(default_factory=lambda: [t for t in EventType])
    format: PayloadFormat = PayloadFormat.NORMALIZED
    description: Annotated[str, msgspec.Meta(max_length=255)] | None = None


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

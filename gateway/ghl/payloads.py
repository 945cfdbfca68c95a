"""GHL's bodies as GHL sends them. Every Struct ignores unknown fields (GHL adds fields freely) and every field is
optional here; what a route needs is checked by the route, with a message that names GHL's own field."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec


class Tolerant(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Base: unknown fields are ignored, never an error."""


class WorkflowLocation(Tolerant):
    id: str | None = None
    name: str | None = None


class WorkflowCalendar(Tolerant):
    id: str | None = None
    calendar_name: str | None = msgspec.field(default=None, name="calendarName")
    title: str | None = None
    appointment_id: str | None = msgspec.field(default=None, name="appointmentId")
    start_time: str | None = msgspec.field(default=None, name="startTime")
    end_time: str | None = msgspec.field(default=None, name="endTime")
    selected_timezone: str | None = msgspec.field(default=None, name="selectedTimezone")
    status: str | None = None
    appoinment_status: str | None = msgspec.field(default=None, name="appoinmentStatus")  # sic, GHL's spelling
    appointment_status: str | None = msgspec.field(default=None, name="appointmentStatus")
    notes: str | None = None

    @property
    def any_status(self) -> str | None:
        return self.appoinment_status or self.appointment_status or self.status


class WorkflowPayload(Tolerant):
    """The body of a workflow "Webhook" / "Custom Webhook" action: the contact at the root, then objects."""

    contact_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    email: str | None = None
    phone: str | None = None
    tags: str | list[str] | None = None  # a comma-separated string in real deliveries
    date_of_birth: str | None = None
    timezone: str | None = None
    location: WorkflowLocation | None = None
    calendar: WorkflowCalendar | None = None
    custom_data: dict[str, Any] | None = msgspec.field(default=None, name="customData")

    @property
    def custom(self) -> dict[str, Any]:
        return self.custom_data or {}

    @property
    def tag_list(self) -> list[str]:
        if isinstance(self.tags, list):
            return [t.strip() for t in self.tags if t.strip()]
        return [t.strip() for t in (self.tags or "").split(",") if t.strip()]

    @property
    def birth_date(self) -> date | None:
        """GHL formats vary by account; anything but an ISO date is dropped (it only narrows a patient match)."""
        raw = (self.date_of_birth or "").strip()[:10]
        try:
            return date.fromisoformat(raw) if raw else None
        except ValueError:
            return None


class MarketplaceAppointment(Tolerant):
    id: str | None = None
    calendar_id: str | None = msgspec.field(default=None, name="calendarId")
    contact_id: str | None = msgspec.field(default=None, name="contactId")
    appointment_status: str | None = msgspec.field(default=None, name="appointmentStatus")
    assigned_user_id: str | None = msgspec.field(default=None, name="assignedUserId")
    start_time: str | None = msgspec.field(default=None, name="startTime")
    end_time: str | None = msgspec.field(default=None, name="endTime")
    notes: str | None = None
    title: str | None = None


class MarketplaceEvent(Tolerant):
    """A marketplace-app webhook delivery (`AppointmentCreate`, `AppointmentUpdate`, `AppointmentDelete`, …)."""

    type: str | None = None
    location_id: str | None = msgspec.field(default=None, name="locationId")
    appointment: MarketplaceAppointment | None = None
    webhook_id: str | None = msgspec.field(default=None, name="webhookId")
    timestamp: str | None = None

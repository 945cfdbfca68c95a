"""Short sentences a voice agent can read aloud: local times in the location's zone, names instead of ids."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.catalog import Catalog
from schemas.appointments import Appointment
from schemas.availability import Slot


def spoken_time(instant: datetime, time_zone: str) -> str:
    """'Tuesday 3 March at 10:30 AM' (or '10 AM' on the hour), in the location's zone."""
    local = instant.astimezone(ZoneInfo(time_zone))
    hour = local.hour % 12 or 12
    clock = f"{hour}:{local.minute:02d}" if local.minute else f"{hour}"
    return f"{local:%A} {local.day} {local:%B} at {clock} {'AM' if local.hour < 12 else 'PM'}"


def practitioner_name(catalog: Catalog, practitioner_id: str) -> str | None:
    return next((p.name for p in catalog.practitioners if p.id == practitioner_id), None)


def service_name(catalog: Catalog, service_id: str) -> str | None:
    return next((s.name for s in catalog.services if s.id == service_id), None)


def _what(catalog: Catalog, service_id: str, practitioner_id: str) -> str:
    service = service_name(catalog, service_id) or "your appointment"
    who = practitioner_name(catalog, practitioner_id)
    return f"{service} with {who}" if who else service


def appointment_phrase(catalog: Catalog, appointment: Appointment) -> str:
    when = spoken_time(appointment.start, appointment.time_zone)
    return f"{_what(catalog, appointment.service_id, appointment.practitioner_id)} on {when}"


def slot_phrase(catalog: Catalog, slot: Slot, time_zone: str) -> str:
    return f"{_what(catalog, slot.service_id, slot.practitioner_id)} on {spoken_time(slot.start, time_zone)}"


def booked(catalog: Catalog, appointment: Appointment) -> str:
    return f"You're booked for {appointment_phrase(catalog, appointment)}."


def cancelled(catalog: Catalog, appointment: Appointment) -> str:
    return f"Your {appointment_phrase(catalog, appointment)} is cancelled."


def rescheduled(catalog: Catalog, appointment: Appointment) -> str:
    return f"Done. Your {appointment_phrase(catalog, appointment)} is confirmed."


def best_slot(catalog: Catalog, slot: Slot | None, time_zone: str) -> str:
    if slot is None:
        return "There are no openings for that in the next four weeks."
    return f"The earliest opening is {slot_phrase(catalog, slot, time_zone)}."


def upcoming(catalog: Catalog, appointments: list[Appointment]) -> str:
    if not appointments:
        return "You have no upcoming appointments."
    if len(appointments) == 1:
        return f"You have one upcoming appointment: {appointment_phrase(catalog, appointments[0])}."
    listed = "; ".join(appointment_phrase(catalog, a) for a in appointments[:3])
    more = f", and {len(appointments) - 3} more" if len(appointments) > 3 else ""
    return f"You have {len(appointments)} upcoming appointments: {listed}{more}."


def clinic(catalog: Catalog) -> str:
    names = ", ".join(loc.name for loc in catalog.locations) or "this clinic"
    return (
        f"{names} has {len(catalog.practitioners)} practitioners and offers "
        f"{', '.join(s.name for s in catalog.services) or 'no online services'}."
    )

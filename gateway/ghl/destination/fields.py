"""The custom fields the gateway provisions in a GHL location and the values a patient snapshot gives them.

Keys follow GHL's rule (the field's name, lower-cased, non-alphanumerics as `_`), so a field is found again by key
after a reinstall and never created twice. Times are RFC 3339 in the location's zone (TEXT); dates are
`YYYY-MM-DD` (DATE; GHL's accepted DATE format is unconfirmed, see destination.md §1.3).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from schemas.webhooks import AppointmentSummary, PatientSnapshot


class FieldSpec(msgspec.Struct, frozen=True):
    key: str
    name: str
    data_type: str  # TEXT | NUMERICAL | DATE
    source: str  # what the README's field table says about it


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("emr_patient_id", "EMR Patient ID", "TEXT", "the patient's id in the EMR"),
    FieldSpec("emr_system", "EMR System", "TEXT", "the EMR's slug (cliniko, jane, nookal, …)"),
    FieldSpec("emr_total_visits", "EMR Total Visits", "NUMERICAL", "appointments attended (`visit_count`)"),
    FieldSpec("emr_cancellations", "EMR Cancellations", "NUMERICAL", "cancelled appointments"),
    FieldSpec("emr_no_shows", "EMR No Shows", "NUMERICAL", "missed appointments"),
    FieldSpec("emr_upcoming_count", "EMR Upcoming Count", "NUMERICAL", "booked appointments still to come"),
    FieldSpec(
        "emr_last_appointment_at", "EMR Last Appointment At", "TEXT", "start of the last appointment, local time"
    ),
    FieldSpec("emr_last_appointment_date", "EMR Last Appointment Date", "DATE", "its local date"),
    FieldSpec("emr_last_appointment_status", "EMR Last Appointment Status", "TEXT", "booked, fulfilled, noshow, …"),
    FieldSpec("emr_last_practitioner", "EMR Last Practitioner", "TEXT", "who saw them last"),
    FieldSpec("emr_last_service", "EMR Last Service", "TEXT", "the last appointment's service"),
    FieldSpec("emr_next_appointment_at", "EMR Next Appointment At", "TEXT", "start of the next appointment"),
    FieldSpec("emr_next_appointment_date", "EMR Next Appointment Date", "DATE", "its local date"),
    FieldSpec("emr_next_practitioner", "EMR Next Practitioner", "TEXT", "who they see next"),
    FieldSpec("emr_next_service", "EMR Next Service", "TEXT", "the next appointment's service"),
    FieldSpec("emr_next_location", "EMR Next Location", "TEXT", "where (the EMR's location name)"),
)

Value = str | int


def key_of(name: str) -> str:
    """GHL's field key for a name (the list API answers `contact.<key>`)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


def _appointment(prefix: str, summary: AppointmentSummary | None, zone: str) -> dict[str, Value]:
    if summary is None:
        return {f"emr_{prefix}_appointment_at": "", f"emr_{prefix}_appointment_date": ""}
    start = _local(summary.start, summary.time_zone or zone)
    values: dict[str, Value] = {
        f"emr_{prefix}_appointment_at": start.isoformat(),
        f"emr_{prefix}_appointment_date": start.date().isoformat(),
        f"emr_{prefix}_practitioner": summary.practitioner_name or "",
        f"emr_{prefix}_service": summary.service_name or "",
    }
    return values


def values_of(snapshot: PatientSnapshot, emr: str, zone: str) -> dict[str, Value]:
    """Every provisioned field's value; an empty string clears a field that no longer applies (no next
    appointment), so GHL never shows a stale one."""
    last, upcoming = snapshot.last_appointment, snapshot.upcoming_appointment
    values: dict[str, Value] = {
        "emr_patient_id": snapshot.patient.id,
        "emr_system": emr,
        "emr_total_visits": snapshot.visit_count,
        "emr_cancellations": snapshot.cancellation_count,
        "emr_no_shows": snapshot.no_show_count,
        "emr_upcoming_count": snapshot.upcoming_count,
        "emr_last_appointment_status": last.status.value if last else "",
        "emr_last_practitioner": "",
        "emr_last_service": "",
        "emr_next_practitioner": "",
        "emr_next_service": "",
        "emr_next_location": (upcoming.location_name or "") if upcoming else "",
    }
    values.update(_appointment("last", last, zone))
    values.update(_appointment("next", upcoming, zone))
    return values

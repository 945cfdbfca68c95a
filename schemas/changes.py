"""What an adapter reports from its change feed."""

from __future__ import annotations

from schemas.appointments import Appointment
from schemas.common import Out
from schemas.patients import Patient


class ChangeSet(Out):
    """Patients and appointments changed since a cursor, and the cursor to ask from next time."""

    patients: list[Patient]
    appointments: list[Appointment]
    cursor: str

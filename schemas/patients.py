"""Patients: lookup and lookup-or-create."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

import msgspec

from schemas.common import Email, Model, Out, PersonName, Phone


class Patient(Out):
    id: str
    first_name: str
    last_name: str
    email: str | None = None
    phones: list[str] = msgspec.field(default_factory=list)
    date_of_birth: date | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PatientQuery(Out):
    """Filters the gateway passes to an adapter; phone is E.164 already."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: date | None = None


class CreatePatient(Model):
    """Body of POST /v1/patients: returns the existing match if there is one."""

    at_least_one: ClassVar[tuple[str, ...]] = ("email", "phone")
    examples: ClassVar[tuple[dict[str, Any], ...]] = (
        {"first_name": "Jane", "last_name": "Citizen", "email": "jane.citizen@example.com"},
    )

    first_name: PersonName
    last_name: PersonName
    email: Email | None = None
    phone: Phone | None = None
    date_of_birth: date | None = None


class PatientList(Out):
    items: list[Patient]


class PatientResult(Out):
    patient: Patient
    created: bool

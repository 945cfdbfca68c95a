"""References to catalog entries and patients: by EMR id or by natural key, resolved once by the gateway."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from schemas.common import Email, Model, PersonName, Phone, Short


class PractitionerRef(Model):
    """Exactly one of id, email or name."""

    exactly_one: ClassVar[tuple[str, ...]] = ("id", "email", "name")

    id: Short | None = None
    email: Email | None = None
    name: PersonName | None = None


class ServiceRef(Model):
    """Exactly one of id, name or code."""

    exactly_one: ClassVar[tuple[str, ...]] = ("id", "name", "code")

    id: Short | None = None
    name: Short | None = None
    code: Short | None = None


class PatientRef(Model):
    """An id, or details to look the patient up (email or phone, with name) and create them if absent."""

    at_least_one: ClassVar[tuple[str, ...]] = ("id", "email", "phone")

    id: Short | None = None
    email: Email | None = None
    phone: Phone | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    date_of_birth: date | None = None

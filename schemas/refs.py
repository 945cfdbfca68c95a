"""References to catalog entries and patients: by EMR id or by natural key, resolved once by the gateway."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec

from schemas.common import Model

Short = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class PractitionerRef(Model):
    """Exactly one of id, email or name."""

    id: Short | None = None
    email: Short | None = None
    name: Short | None = None


class ServiceRef(Model):
    """Exactly one of id, name or code."""

    id: Short | None = None
    name: Short | None = None
    code: Short | None = None


class PatientRef(Model):
    """An id, or details to look the patient up (email or phone, with name) and create them if absent."""

    id: Short | None = None
    email: Short | None = None
    phone: Short | None = None
    first_name: Short | None = None
    last_name: Short | None = None
    date_of_birth: date | None = None

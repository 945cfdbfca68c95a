"""customData keys -> catalog references, in the words each EMR's users already write (the ClinicSync seed's keys)
plus neutral ones. Shared by the GHL routes and the ClinicSync-compatible routes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from schemas.refs import PractitionerRef, ServiceRef

# Normalized key (lower case, letters and digits only: `staff_member`, `staffMember`, `Staff Member` are one key)
# -> what the value is. Ordered by precedence: the first key present wins. "auto" means an e-mail if the value
# contains "@", else a name (the seed's `staff_member` holds an e-mail, users often type a name).
_PRACTITIONER_KEYS: tuple[tuple[str, str], ...] = (
    ("practitionerid", "id"),
    ("staffmemberid", "id"),
    ("clinicianid", "id"),
    ("consultantid", "id"),
    ("practitioneremail", "email"),
    ("staffmemberemail", "email"),
    ("clinicianemail", "email"),  # SimplePractice
    ("consultantemail", "email"),  # Practice Better
    ("practitionername", "name"),  # Nookal
    ("staffmembername", "name"),
    ("clinicianname", "name"),
    ("consultantname", "name"),
    ("practitioner", "auto"),  # neutral
    ("staffmember", "auto"),  # Jane, Cliniko
    ("clinician", "auto"),
    ("consultant", "auto"),
)

_SERVICE_KEYS: tuple[tuple[str, str], ...] = (
    ("serviceid", "id"),
    ("appttypeid", "id"),
    ("appointmenttypeid", "id"),
    ("treatmentid", "id"),
    ("servicecode", "code"),  # Nookal, SimplePractice
    ("cptcode", "code"),
    ("servicename", "name"),  # Practice Better
    ("appttypename", "name"),  # Cliniko
    ("appointmenttypename", "name"),
    ("treatmentname", "name"),  # Jane
    ("service", "name"),  # neutral
    ("appttype", "name"),
    ("treatment", "name"),
)

_NOT_ALNUM = re.compile(r"[^0-9a-z]")
MAX_VALUE = 255


def normalize_key(key: str) -> str:
    return _NOT_ALNUM.sub("", key.casefold())


def _normalized(custom: Mapping[str, object]) -> dict[str, str]:
    """First non-empty string value per normalized key; numbers (GHL may send ids as numbers) become text."""
    out: dict[str, str] = {}
    for key, value in custom.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        text = str(value).strip()
        if text and len(text) <= MAX_VALUE:
            out.setdefault(normalize_key(key), text)
    return out


def _pick(custom: Mapping[str, object], keys: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    values = _normalized(custom)
    for key, kind in keys:
        if key in values:
            return kind, values[key]
    return None


def practitioner_ref(custom: Mapping[str, object]) -> PractitionerRef | None:
    """None when customData names no practitioner (the caller decides whether that is an error)."""
    picked = _pick(custom, _PRACTITIONER_KEYS)
    if picked is None:
        return None
    kind, value = picked
    if kind == "auto":
        kind = "email" if "@" in value else "name"
    return PractitionerRef(**{kind: value})


def service_ref(custom: Mapping[str, object]) -> ServiceRef | None:
    picked = _pick(custom, _SERVICE_KEYS)
    if picked is None:
        return None
    kind, value = picked
    return ServiceRef(**{kind: value})


PRACTITIONER_KEYS = tuple(k for k, _ in _PRACTITIONER_KEYS)
SERVICE_KEYS = tuple(k for k, _ in _SERVICE_KEYS)

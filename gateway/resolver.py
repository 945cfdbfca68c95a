"""Natural keys to EMR ids, in one place for every adapter and entry point."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from adapters.base import Capability
from gateway.catalog import Catalog
from gateway.emr import AnyAdapter
from gateway.errors import UnknownPractitioner, UnknownService, ValidationFailed
from gateway.phones import to_e164
from schemas.catalog import Practitioner, Service
from schemas.commands import NewPatient
from schemas.common import EMAIL_PATTERN, NAME_PATTERN, Model, given
from schemas.patients import Patient, PatientQuery
from schemas.problems import FieldError
from schemas.refs import PatientRef, PractitionerRef, ServiceRef

T = TypeVar("T")


def norm(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def _one(
    items: Sequence[T],
    match: Callable[[T], bool],
    what: str,
    error: type[ValidationFailed] | type[UnknownService] | type[UnknownPractitioner],
    field: str,
) -> T:
    found = [i for i in items if match(i)]
    if len(found) == 1:
        return found[0]
    reason = f"no {what} matches" if not found else f"{len(found)} {what}s match; use the id"
    raise error(reason, errors=[FieldError(field=field, message=reason)])


def _exactly_one(field: str, ref: Model) -> str:
    """The one field of `ref.exactly_one` that is given (the rule the OpenAPI document states as `oneOf`)."""
    names = type(ref).exactly_one
    found = given(ref, names)
    if len(found) != 1:
        raise ValidationFailed(
            f"{field} needs exactly one of {', '.join(names)}",
            errors=[FieldError(field=field, message=f"give exactly one of {', '.join(names)}")],
        )
    return found[0]


_EMAIL = re.compile(EMAIL_PATTERN)
_NAME = re.compile(NAME_PATTERN)


def check_patient_details(ref: PatientRef, field: str = "patient") -> None:
    """What the gateway can see is wrong with a patient's details is refused here, before any EMR sees it, whatever
    the entry point (REST bodies are held to the same patterns when they are decoded; GoHighLevel's and ClinicSync's
    bodies are not, as they take what those callers send)."""
    if ref.email and not _EMAIL.search(ref.email):
        raise ValidationFailed(
            f"{field}.email is not an e-mail address", errors=[FieldError(field=f"{field}.email", message="invalid")]
        )
    for name in ("first_name", "last_name"):
        value = getattr(ref, name)
        if value is not None and (len(value) > 255 or not _NAME.search(value)):
            raise ValidationFailed(
                f"{field}.{name} must not be blank or hold control characters",
                errors=[FieldError(field=f"{field}.{name}", message="blank or control characters")],
            )


def resolve_practitioner(catalog: Catalog, ref: PractitionerRef, field: str = "practitioner") -> Practitioner:
    kind = _exactly_one(field, ref)
    items = catalog.practitioners
    if kind == "id":
        return _one(items, lambda p: p.id == ref.id, "practitioner", UnknownPractitioner, f"{field}.id")
    if kind == "email":
        return _one(
            items, lambda p: norm(p.email) == norm(ref.email), "practitioner", UnknownPractitioner, f"{field}.email"
        )
    wanted = norm(ref.name)
    return _one(
        items,
        lambda p: wanted in (norm(p.name), norm(f"{p.first_name or ''} {p.last_name or ''}")),
        "practitioner",
        UnknownPractitioner,
        f"{field}.name",
    )


def resolve_service(catalog: Catalog, ref: ServiceRef, field: str = "service") -> Service:
    kind = _exactly_one(field, ref)
    items = catalog.services
    if kind == "id":
        return _one(items, lambda s: s.id == ref.id, "service", UnknownService, f"{field}.id")
    if kind == "code":
        return _one(items, lambda s: norm(s.code) == norm(ref.code), "service", UnknownService, f"{field}.code")
    return _one(items, lambda s: norm(s.name) == norm(ref.name), "service", UnknownService, f"{field}.name")


def _best_match(candidates: list[Patient], ref: PatientRef, phone: str | None) -> Patient | None:
    def fits(p: Patient) -> bool:
        if ref.email and norm(p.email) != norm(ref.email):
            return False
        if phone and phone not in p.phones:
            return False
        if ref.first_name and norm(p.first_name) != norm(ref.first_name):
            return False
        if ref.last_name and norm(p.last_name) != norm(ref.last_name):
            return False
        return not (ref.date_of_birth and p.date_of_birth and p.date_of_birth != ref.date_of_birth)

    matches = [p for p in candidates if fits(p)]
    if not matches:
        return None
    # Oldest record first: duplicates in an EMR are usually later copies of the original chart.
    return min(matches, key=lambda p: (p.created_at is None, p.created_at, p.id))


async def lookup_or_create_patient(
    adapter: AnyAdapter,
    ref: PatientRef,
    time_zone: str,
    *,
    field: str = "patient",
    create: bool = True,
    before_create: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Patient, bool]:
    """An id is used as given (the EMR rejects a wrong one); details are looked up, then created if absent.
    `before_create` runs just before a patient would be created, so a booking's own checks can refuse first: a
    rejected booking must not leave a new chart behind in the clinic's EMR."""
    if ref.id:
        return await adapter.get_patient(ref.id), False
    check_patient_details(ref, field)
    phone = to_e164(ref.phone, time_zone, field=f"{field}.phone") if ref.phone else None
    if not (ref.email or phone):
        raise ValidationFailed(
            f"{field} needs an id, or an email or phone to look the patient up",
            errors=[FieldError(field=field, message="give id, email or phone")],
        )
    query = PatientQuery(
        email=ref.email,
        phone=phone,
        first_name=ref.first_name,
        last_name=ref.last_name,
        date_of_birth=ref.date_of_birth,
    )
    if ref.email:
        query = PatientQuery(email=ref.email)
    elif not adapter.supports(Capability.FIND_PATIENT_BY_PHONE) and not (ref.first_name and ref.last_name):
        raise ValidationFailed(
            f"{adapter.display_name} cannot look patients up by phone alone; add first_name and last_name or email",
            errors=[FieldError(field=field, message="phone-only lookup not supported by this EMR")],
        )
    found = _best_match(await adapter.find_patients(query), ref, phone)
    if found is not None:
        return found, False
    if not create:
        raise ValidationFailed(f"no patient matches {field}", errors=[FieldError(field=field, message="no match")])
    if not (ref.first_name and ref.last_name):
        raise ValidationFailed(
            f"no patient matches {field}; first_name and last_name are needed to create one",
            errors=[FieldError(field=field, message="first_name and last_name required to create")],
        )
    if before_create is not None:
        await before_create()
    new = NewPatient(
        first_name=ref.first_name,
        last_name=ref.last_name,
        email=ref.email,
        phone=phone,
        date_of_birth=ref.date_of_birth,
    )
    return await adapter.create_patient(new), True

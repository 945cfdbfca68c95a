"""Practice Better wire Structs <-> the normalized schemas. Pure functions: no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from adapters import phones
from adapters.base import AdapterContext
from adapters.practicebetter import wire
from adapters.practicebetter.settings import PracticeBetterSettings
from schemas.appointments import Appointment, AppointmentStatus
from schemas.catalog import Practitioner, Service
from schemas.patients import Patient

EMR_SLUG = "practicebetter"


def utc(moment: datetime, time_zone: str) -> datetime:
    """An aware UTC instant; a naive time is read in the location's zone, never the server's."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(time_zone))
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_date(moment: datetime, settings: PracticeBetterSettings) -> str:
    """`sessionDate` as the location's `session_date_mode` says: a UTC instant, or naive wall time in the zone
    Practice Better reads naive times in (one integrator's observation; offsets other than `Z` were refused)."""
    if settings.session_date_mode == "wall_time":
        local = moment.astimezone(ZoneInfo(settings.session_date_zone))
        return local.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")
    return rfc3339(moment)


def instant(value: str, settings: PracticeBetterSettings) -> datetime:
    """A time Practice Better sent; a naive one is read the way this location sends them."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        zone = ZoneInfo(settings.session_date_zone) if settings.session_date_mode == "wall_time" else UTC
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def wire_duration(minutes: int, settings: PracticeBetterSettings) -> int:
    return minutes * 60 if settings.duration_unit == "seconds" else minutes


def minutes_of(duration: int, settings: PracticeBetterSettings) -> int:
    return duration // 60 if settings.duration_unit == "seconds" else duration


def appointment_of(
    session: wire.Session, context: AdapterContext, settings: PracticeBetterSettings, practitioner_id: str
) -> Appointment:
    start = instant(session.sessionDate, settings)
    if session.endDate:
        end = instant(session.endDate, settings)
    else:
        end = start + timedelta(minutes=minutes_of(session.duration or 0, settings))
    consultant = session.consultant.id if session.consultant and session.consultant.id else practitioner_id
    return Appointment(
        id=session.id,
        status=AppointmentStatus.CANCELLED if session.cancelled else AppointmentStatus.BOOKED,
        start=start,
        end=end,
        time_zone=context.time_zone,
        patient_id=session.clientRecord.id if session.clientRecord else "",
        practitioner_id=consultant,
        service_id=session.serviceId or "",
        location_id=context.location_id,
        notes=session.notes,
        created_at=session.dateCreated.astimezone(UTC) if session.dateCreated else None,
        updated_at=session.dateModified.astimezone(UTC) if session.dateModified else None,
        emr=EMR_SLUG,
    )


def e164(number: str, time_zone: str) -> str:
    """E.164 in the location's region, else the number as Practice Better holds it."""
    return phones.e164(number, phones.region_for_zone(time_zone)) or number


def birth_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def patient_of(record: wire.ClientRecord, time_zone: str) -> Patient:
    profile = record.profile
    phones: list[str] = []
    for raw in (profile.mobilePhone, profile.homePhone):
        if raw:
            number = e164(raw, time_zone)
            if number not in phones:
                phones.append(number)
    email = profile.emailAddress or (record.client.emailAddress if record.client else None)
    return Patient(
        id=record.id,
        first_name=profile.firstName or "",
        last_name=profile.lastName or "",
        email=email or None,
        phones=phones,
        date_of_birth=birth_date(profile.dateOfBirth),
        created_at=record.dateCreated.astimezone(UTC) if record.dateCreated else None,
        updated_at=record.dateModified.astimezone(UTC) if record.dateModified else None,
    )


def email_of(record: wire.ClientRecord) -> str | None:
    return record.profile.emailAddress or (record.client.emailAddress if record.client else None)


def practitioner_of(member: wire.Member) -> Practitioner:
    first = member.profile.firstName or None
    last = member.profile.lastName or None
    return Practitioner(
        id=member.id,
        name=" ".join(p for p in (first, last) if p) or member.id,
        first_name=first,
        last_name=last,
        email=member.profile.emailAddress or None,
        active=(member.activationStatus or "activated") == "activated",
    )


def service_of(service: wire.Service) -> Service:
    return Service(id=service.id, name=service.name, duration_minutes=service.duration or 0)

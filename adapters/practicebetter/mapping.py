"""Practice Better wire Structs <-> the normalized schemas. Pure functions: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from adapters import phones
from adapters.base import AdapterContext
from adapters.errors import ContractChanged
from adapters.markers import operation_of, without_marker
from adapters.practicebetter import wire
from adapters.practicebetter.settings import DurationUnit, SessionDateMode
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


def session_date(moment: datetime, mode: SessionDateMode, zone: ZoneInfo) -> str:
    """`sessionDate` as the location's `session_date_mode` says: naive wall time in the zone Practice Better reads it
    in (what the production integrator observed: `Z` and `timeZone` ignored, offsets refused), or a UTC instant."""
    if mode == "wall_time":
        return moment.astimezone(zone).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")
    return rfc3339(moment)


def instant(value: str, naive_zone: ZoneInfo, field: str = "sessionDate") -> datetime:
    """A time Practice Better sent (UTC with `Z` as observed); a naive one is read in `naive_zone`."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ContractChanged(
            f"Practice Better sent a {field} this adapter cannot read",
            path=f"$.{field}",
            problem="a str outside the expected format",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_zone)
    return parsed.astimezone(UTC)


def wire_duration(minutes: int, unit: DurationUnit) -> int:
    return minutes * 60 if unit == "seconds" else minutes


def unit_of(session: wire.Session, naive_zone: ZoneInfo) -> DurationUnit | None:
    """The unit a session's `duration` is in, read off its own start and end instants; None when it shows none."""
    if session.duration is None or session.duration <= 0:
        return None
    span = (instant(session.endDate, naive_zone, "endDate") - instant(session.sessionDate, naive_zone)).total_seconds()
    if span <= 0:
        return None
    if session.duration == round(span):
        return "seconds"
    if session.duration * 60 == round(span):
        return "minutes"
    return None


def unit_shown(sessions: Sequence[wire.Session], naive_zone: ZoneInfo) -> DurationUnit | None:
    """The unit every session that shows one agrees on; None if none shows one or they disagree."""
    units = {u for u in (unit_of(s, naive_zone) for s in sessions) if u is not None}
    return units.pop() if len(units) == 1 else None


def appointment_of(
    session: wire.Session, context: AdapterContext, naive_zone: ZoneInfo, practitioner_id: str
) -> Appointment:
    """Start and end are Practice Better's own instants (`sessionDate`, `endDate`), never `duration` read with our
    unit setting: a wrong unit must show up as a wrong end, not confirm itself. The gateway's marker is taken out of
    the notes callers see and reported as `operation_id`."""
    start = instant(session.sessionDate, naive_zone)
    end = instant(session.endDate, naive_zone, "endDate")
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
        notes=without_marker(session.notes),
        operation_id=operation_of(session.notes),
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

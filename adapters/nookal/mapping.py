"""Nookal wire Structs <-> the normalized schemas, and clinic-local wall clock <-> UTC. Pure functions: no I/O.

Nookal sends every date and time as the clinic's wall clock with no offset; the location's IANA `Timezone` turns
it into an instant. A wall time in the repeated hour of a DST change is read as its first occurrence.

An appointment's `Notes` may end with the gateway's marker (`[egw:<operation id>]`, adapters/markers.py), written by
the booking so a create whose answer was lost is recognised as that operation's: callers see the notes without it
and the operation in `Appointment.operation_id`.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from adapters import phones
from adapters.markers import operation_of, without_marker
from adapters.nookal import wire
from schemas.appointments import Appointment, AppointmentStatus
from schemas.catalog import Location, Practitioner, Service
from schemas.patients import Patient

UTC = dt.UTC
EMR_SLUG = "nookal"
STAMP = "%Y-%m-%d %H:%M:%S"

# Location `Country` values seen or likely ("USA" in the N-EX fixture) -> phone region.
_COUNTRIES = {
    "australia": "AU", "au": "AU", "aus": "AU",
    "new zealand": "NZ", "nz": "NZ", "nzl": "NZ",
    "united kingdom": "GB", "uk": "GB", "gb": "GB", "gbr": "GB", "england": "GB", "scotland": "GB",
    "usa": "US", "us": "US", "united states": "US", "united states of america": "US",
    "canada": "CA", "ca": "CA", "can": "CA",
    "singapore": "SG", "sg": "SG", "sgp": "SG",
    "ireland": "IE", "ie": "IE", "irl": "IE",
}  # fmt: skip
_FREE_WORDS = frozenset({"available", "free", "open", "true", "yes"})


# ---------------------------------------------------------------------------------------------- loose values


def text(value: object) -> str | None:
    """A string field that may arrive as a number, an empty string or null."""
    if value is None or isinstance(value, bool):
        return None
    s = str(value).strip()
    return s or None


def ident(value: object) -> str:
    return text(value) or ""


def flag(value: object) -> bool:
    """`"1"`/`"0"`, 1/0, true/false or null."""
    if isinstance(value, bool):
        return value
    s = text(value)
    return s is not None and s.lower() in ("1", "true", "yes")


def ids(value: list[wire.Loose] | str | None) -> set[str] | None:
    """A list of ids, or a comma-separated string of them; None when the field is absent."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    return {s for s in (text(i) for i in items) if s}


# ---------------------------------------------------------------------------------------------- time


def utc(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """An aware UTC instant; a naive time is read in the location's zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def wall(moment: dt.datetime, zone: ZoneInfo) -> tuple[str, str]:
    """(`YYYY-MM-DD`, `HH:MM:SS`) on the clinic's wall clock, the form Nookal's date/time parameters take."""
    local = utc(moment, zone).astimezone(zone)
    return local.date().isoformat(), local.strftime("%H:%M:%S")


def same_zone(configured: str, shown: str) -> bool:
    """Whether two zone names give the same wall clock (equal, or aliases such as `UTC`/`Etc/UTC`) over the next two
    years; an unknown name never agrees."""
    try:
        a, b = ZoneInfo(configured), ZoneInfo(shown)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    if a.key == b.key:
        return True
    now = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    instants = (now + dt.timedelta(days=d) for d in range(731))
    return all(m.astimezone(a).utcoffset() == m.astimezone(b).utcoffset() for m in instants)


def parse_time(value: str) -> dt.time:
    """`HH:MM` or `HH:MM:SS` (both appear)."""
    return dt.time.fromisoformat(value.strip())


def instant(day: str | dt.date, time: str | dt.time, zone: ZoneInfo) -> dt.datetime:
    """A wall date and time in the clinic's zone as a UTC instant (first occurrence if ambiguous)."""
    d = day if isinstance(day, dt.date) else dt.date.fromisoformat(day.strip()[:10])
    t = time if isinstance(time, dt.time) else parse_time(time)
    return dt.datetime.combine(d, t, tzinfo=zone).astimezone(UTC)


def stamp_instant(value: str | None, zone: ZoneInfo) -> dt.datetime | None:
    """`YYYY-MM-DD HH:MM:SS` (clinic-local) as UTC; None when absent or unreadable."""
    s = text(value)
    if s is None or s.startswith("0000"):
        return None
    try:
        local = dt.datetime.fromisoformat(s.replace("T", " "))
    except ValueError:
        return None
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    return local.replace(tzinfo=zone).astimezone(UTC)


def local_stamp(moment: dt.datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime(STAMP)


def is_ambiguous(local: dt.datetime, zone: ZoneInfo) -> bool:
    naive = local.replace(tzinfo=None)
    return naive.replace(tzinfo=zone, fold=0).utcoffset() != naive.replace(tzinfo=zone, fold=1).utcoffset()


def since_stamp(cursor: dt.datetime, zone: ZoneInfo) -> str:
    """The `last_modified` value for a cursor. Local stamps repeat an hour when clocks go back, so near that hour
    ask from an hour earlier: re-reading is harmless, missing a change is not."""
    local = cursor.astimezone(zone)
    if any(is_ambiguous(local - dt.timedelta(minutes=m), zone) for m in (0, 30, 60, 90)):
        local = local - dt.timedelta(hours=1)
    return local.strftime(STAMP)


# ---------------------------------------------------------------------------------------------- records


def status_of(a: wire.Appointment) -> AppointmentStatus:
    status = (a.status or "").strip().lower()
    if flag(a.cancelled) or status in ("cancelled", "canceled"):
        return AppointmentStatus.CANCELLED
    if flag(a.DNA) or status == "dna":
        return AppointmentStatus.NOSHOW
    if status == "completed":
        return AppointmentStatus.FULFILLED
    if flag(a.arrived) or status in ("arrived", "waiting"):
        return AppointmentStatus.ARRIVED
    return AppointmentStatus.BOOKED


def times_of(a: wire.Appointment, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    day = a.appointmentDate or ""
    start = instant(day, a.appointmentStartTime or "00:00", zone)
    end = instant(day, a.appointmentEndTime, zone) if a.appointmentEndTime else start
    if end < start:  # ends after midnight
        end = instant(dt.date.fromisoformat(day[:10]) + dt.timedelta(days=1), a.appointmentEndTime or "00:00", zone)
    return start, end


def appointment_of(a: wire.Appointment, zone: ZoneInfo, location_id: str) -> Appointment:
    start, end = times_of(a, zone)
    return Appointment(
        id=ident(a.ID),
        status=status_of(a),
        start=start,
        end=end,
        time_zone=zone.key,
        patient_id=ident(a.patientID),
        practitioner_id=ident(a.practitionerID),
        service_id=ident(a.appointmentTypeID),
        location_id=location_id,
        notes=without_marker(text(a.Notes)),
        created_at=stamp_instant(a.dateCreated, zone),
        updated_at=stamp_instant(a.lastModified, zone),
        emr=EMR_SLUG,
        emr_location_id=text(a.locationID),
        operation_id=operation_of(a.Notes),
    )


def region_of(country: str | None) -> str | None:
    return _COUNTRIES.get((country or "").strip().lower())


def e164(number: str | None, region: str | None) -> str | None:
    s = text(number)
    return phones.e164(s, region) or s


def patient_of(p: wire.Patient, region: str | None, zone: ZoneInfo) -> Patient:
    phones: list[str] = []
    for raw in (p.Mobile, p.Home, p.Work):
        number = e164(raw, region)
        if number and number not in phones:
            phones.append(number)
    dob: dt.date | None = None
    if text(p.DOB) and not (p.DOB or "").startswith("0000"):
        try:
            dob = dt.date.fromisoformat((p.DOB or "")[:10])
        except ValueError:
            dob = None
    return Patient(
        id=ident(p.ID),
        first_name=text(p.FirstName) or "",
        last_name=text(p.LastName) or "",
        email=text(p.Email),
        phones=phones,
        date_of_birth=dob,
        created_at=stamp_instant(p.DateCreated, zone),
        updated_at=stamp_instant(p.DateModified, zone),
    )


def practitioner_of(p: wire.Practitioner) -> Practitioner:
    first, last = text(p.FirstName), text(p.LastName)
    status = (text(p.status) or "active").lower()
    return Practitioner(
        id=ident(p.ID),
        name=" ".join(x for x in (first, last) if x) or ident(p.ID),
        first_name=first,
        last_name=last,
        email=text(p.Email),
        active=status not in ("0", "inactive", "false"),
    )


def duration_of(s: wire.Service) -> int:
    try:
        return max(1, int(float(text(s.Duration) or "0")))
    except ValueError:
        return 1


def service_of(s: wire.Service) -> Service:
    return Service(id=ident(s.ID), name=text(s.Name) or ident(s.ID), duration_minutes=duration_of(s))


def location_of(loc: wire.Location) -> Location:
    parts = [loc.AddressLine1, loc.AddressLine2, loc.AddressLine3, loc.City, loc.State, text(loc.Postcode)]
    return Location(
        id=ident(loc.ID),
        name=text(loc.Name) or ident(loc.ID),
        time_zone=text(loc.Timezone),
        address=", ".join(p for p in (text(x) for x in parts) if p) or None,
    )


# ---------------------------------------------------------------------------------------------- availability


def _is_free(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 0  # getSchedules codes: 0 free, 1 booked, 3 break, -1 not rostered (N-CEO)
    if isinstance(value, str):
        s = value.strip().lower()
        if s.lstrip("-").isdigit():
            return int(s) == 0
        return s in _FREE_WORDS
    if isinstance(value, dict):
        for key in ("available", "status", "free"):
            if key in value:
                return _is_free(value[key])
    return value is None


def _cell_time(value: Any) -> dt.time | None:
    try:
        return parse_time(str(value)[-8:] if "T" in str(value) else str(value))
    except ValueError:
        return None


class Cells(msgspec.Struct):
    """Free start times per clinic date, and the grid step seen in every listed time (free or not)."""

    free: dict[dt.date, list[dt.time]]
    step: int | None


def _step(minutes: set[int]) -> int | None:
    ordered = sorted(minutes)
    gaps = [b - a for a, b in itertools.pairwise(ordered) if b > a]
    return min(gaps) if gaps else None


def free_cells(raw: msgspec.Raw) -> Cells:
    """Free start times per clinic date from `availabilities`, whose shape is UNCONFIRMED. Accepted:

    1. `{"YYYY-MM-DD": {"HH:MM": status}}` — N-3L reads `availabilities[date][time] == "unavailable"`; status words
       ("available"/"unavailable") or getSchedules codes (0 free);
    2. `{"YYYY-MM-DD": ["HH:MM", …]}` — free times only;
    3. `[{"date": …, "start_time"|"startTime"|"time": …, ("status"|"available")?}, …]` (also v3's `{"range":
       {"slots": [...]}}`), each entry free unless its status says otherwise.
    """
    if not len(raw):
        return Cells(free={}, step=None)
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return Cells(free={}, step=None)
    cells: dict[dt.date, set[dt.time]] = {}
    listed: dict[dt.date, set[int]] = {}

    def add(day: Any, time: Any, free: bool = True) -> None:
        try:
            d = dt.date.fromisoformat(str(day).strip()[:10])
        except ValueError:
            return
        t = _cell_time(time)
        if t is not None:
            listed.setdefault(d, set()).add(t.hour * 60 + t.minute)
            if free:
                cells.setdefault(d, set()).add(t)

    if isinstance(body, dict) and isinstance(body.get("range"), dict):
        body = body["range"].get("slots", [])
    if isinstance(body, dict):
        for day, inner in body.items():
            if isinstance(inner, dict):
                for time, value in inner.items():
                    add(day, time, _is_free(value))
            elif isinstance(inner, list):
                for entry in inner:
                    if isinstance(entry, dict):
                        time = entry.get("start_time") or entry.get("startTime") or entry.get("time")
                        flags = {k: v for k, v in entry.items() if k in ("available", "status")}
                        add(entry.get("date", day), time, _is_free(flags or None))
                    else:
                        add(day, entry)
    elif isinstance(body, list):
        for entry in body:
            if not isinstance(entry, dict):
                continue
            day = entry.get("date") or entry.get("appointmentDate")
            time = entry.get("start_time") or entry.get("startTime") or entry.get("time")
            flags = {k: v for k, v in entry.items() if k in ("available", "status")}
            add(day, time, _is_free(flags or None))
    steps = [s for s in (_step(m) for m in listed.values()) if s is not None]
    return Cells(free={d: sorted(ts) for d, ts in cells.items()}, step=min(steps) if steps else None)


def bookable_starts(cells: Cells, minutes: int, zone: ZoneInfo) -> list[dt.datetime]:
    """Starts whose whole appointment fits in consecutive free cells (grid step inferred, else 15 minutes).

    A list of free starts for the grid is what every accepted shape gives; an appointment longer than one cell
    needs the following cells free too.
    """
    starts: list[dt.datetime] = []
    for day, times in cells.free.items():
        minutes_of = sorted({t.hour * 60 + t.minute for t in times})
        step = cells.step or _step(set(minutes_of)) or 15
        free = set(minutes_of)
        needed = max(1, -(-minutes // step))
        for m in minutes_of:
            if all(m + k * step in free for k in range(needed)):
                starts.append(instant(day, dt.time(m // 60, m % 60), zone))
    return sorted(starts)

"""A stand-in for Cliniko's REST API v1, faithful to its OpenAPI document and its documentation (docs.api.cliniko.com).

What it serves under `/v1`: individual_appointments (create, get, list with `q[]` filters, update, cancel, conflicts),
patients (list with filters, get, create), practitioners, users, appointment_types, businesses, and a practitioner's
available_times / next_available_time for an appointment type at a business.

Documented behaviour it reproduces:
- HTTP Basic with the API key as the user name and an empty password; the key may carry its `-<shard>` suffix.
  A missing or unknown key is `401` with `HTTP Basic: Access denied.` (the exact body is UNCONFIRMED).
- 200 requests per minute per user (a constructor parameter): over it, `429` with `X-RateLimit-Reset` (epoch
  seconds) and no `Retry-After`, as documented.
- Lists: `{<plural>: [...], total_entries, links: {self, next?, previous?}}`, `page`, `per_page` (default 50, max
  100), `sort=col[:desc],…` (default `created_at`), `q[]=field:<op>value` filters combined with AND.
- Ids are 19-digit strings; times are UTC with `Z`; related records are `{"links": {"self": url}}`; links are built
  from the request's own base URL; `updated_at` moves on every change.
- `422 {"message": "Validation Failed", "errors": {field: message}}` for bad bodies; `404 {"status": "404",
  "error": "Not Found"}` for unknown records; an HTML 404 page for unknown routes and methods.
- Double bookings are allowed (the API does not check the calendar); `/conflicts` reports overlaps.
- available_times: `from`/`to` are dates in the business's time zone, at most 7 days apart and not in the past,
  else `400 Invalid time frame definition…`.

Choices where the documentation is silent (UNCONFIRMED against the live API):
- A request without a User-Agent holding a contact e-mail is refused with `403 {"message": "Requires a user
  agent"}` (the text is from a public issue, the status is not documented).
- `Accept` that rules out JSON is `406`. An unknown `q[]` field or operator, or a malformed filter value, is `400`.
- A naive `starts_at`/`ends_at` (no offset) is `422`: Cliniko wants UTC, and guessing a zone books the wrong hour.
- `PATCH` that moves `starts_at` without `ends_at` keeps the stored `ends_at` (as the document reads: only `null`
  recomputes it), so an end before the start is `422`.
- Cancelled appointments are hidden unless the request filters on `cancelled_at` (`q[]=cancelled_at:*` opts them
  back in), on lists and on GET by id alike (a 404 without it): two independent integrations say so (evidence
  2026-11 §1.1: a Python client that sends `cancelled_at:*` even on GET-by-id, a Node connector). Archived ones
  are hidden unless the request filters on `archived_at`.
- String filters: `=` is exact, `~` is a case-insensitive "contains", `~~` a case-insensitive `%` wildcard match.
- With no free time in the window, next_available_time answers `{"total_entries": 0, "links": …}`.
- The 429 body is `{"message": "Too many requests"}`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import fnmatch
import itertools
import math
import re
import threading
import time
import urllib.parse
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import litestar
import msgspec
import phonenumbers
from litestar import Request, Response, get, patch, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, JSONBody

from adapters.cliniko import wire
from adapters.emulation import (
    CONTROL_PREFIX,
    Emulator,
    EmulatorSeed,
    EmulatorStats,
    Fault,
    FaultInjector,
    RawResponse,
    Scope,
    Traffic,
    WindowLimiter,
    build_emulator_app,
)

UTC = datetime.UTC
JSON = "application/json"
DEFAULT_API_KEY = "MS0xNDY4ODI0Mzc0NzA4NjA2NzU1LWVtdWxhdG9yLWtleQ"
EMAIL_RE = re.compile(r"[^\s()<>@,;:\"\[\]]+@[^\s()<>@,;:\"\[\]]+\.[A-Za-z]{2,63}")
SHARD_SUFFIX_RE = re.compile(r"^(?P<key>.+)-(?P<shard>[A-Za-z]{2}\d{1,2})$")
VALID_EMAIL_RE = re.compile(r"^[A-Z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Z0-9.-]+\.[A-Z]{2,63}$", re.IGNORECASE)
NOT_FOUND_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Cliniko - 404</title></head>"
    b"<body><h1>The page you were looking for doesn't exist.</h1></body></html>\n"
)
INVALID_TIME_FRAME = "Invalid time frame definition. Please check from/to param limitations."

# Cliniko's own (Rails) names for a few IANA zones; the rest get the city part of the identifier.
RAILS_ZONE_NAMES = {
    "Australia/Melbourne": "Melbourne",
    "Australia/Sydney": "Sydney",
    "Australia/Brisbane": "Brisbane",
    "Australia/Perth": "Perth",
    "Australia/Adelaide": "Adelaide",
    "Europe/London": "London",
    "America/New_York": "Eastern Time (US & Canada)",
    "America/Los_Angeles": "Pacific Time (US & Canada)",
    "Etc/UTC": "UTC",
    "UTC": "UTC",
}


class ApiError(Exception):
    """Short-circuits a handler with a Cliniko-shaped error response."""

    def __init__(self, status: int, body: bytes, content_type: str = JSON) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


def not_found() -> ApiError:
    return ApiError(404, msgspec.json.encode(wire.NotFoundError(status="404", error="Not Found")))


def invalid(errors: dict[str, str]) -> ApiError:
    body = wire.ValidationError(message="Validation Failed", errors=dict(errors))
    return ApiError(422, msgspec.json.encode(body))


def bad_request(message: str) -> ApiError:
    return ApiError(400, msgspec.json.encode({"message": message}))


def utc_now(clock: Callable[[], float]) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(clock()), UTC)


def to_utc(value: datetime.datetime) -> datetime.datetime:
    return value.astimezone(UTC).replace(microsecond=0)


# ---------------------------------------------------------------------------------------------- state records


@dataclass
class BusinessRec:
    id: str
    name: str
    created_at: datetime.datetime
    updated_at: datetime.datetime


@dataclass
class UserRec:
    id: str
    first_name: str
    last_name: str
    email: str
    created_at: datetime.datetime
    updated_at: datetime.datetime


@dataclass
class PractitionerRec:
    id: str
    user_id: str
    first_name: str
    last_name: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    active: bool = True


@dataclass
class AppointmentTypeRec:
    id: str
    name: str
    duration: int
    created_at: datetime.datetime
    updated_at: datetime.datetime


@dataclass
class PhoneRec:
    number: str
    normalized: str
    phone_type: str


@dataclass
class PatientRec:
    id: str
    first_name: str
    last_name: str
    email: str | None
    date_of_birth: datetime.date | None
    phones: list[PhoneRec]
    created_at: datetime.datetime
    updated_at: datetime.datetime
    title: str | None = None
    preferred_first_name: str | None = None
    sex: str | None = None
    time_zone: str | None = None
    notes: str | None = None
    archived_at: datetime.datetime | None = None


class AttendanceMark(msgspec.Struct, kw_only=True):
    did_not_arrive: bool = False
    patient_arrived: bool = False


@dataclass
class AppointmentRec:
    id: str
    patient_id: str
    practitioner_id: str
    appointment_type_id: str
    business_id: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    created_at: datetime.datetime
    updated_at: datetime.datetime
    notes: str | None = None
    cancelled_at: datetime.datetime | None = None
    cancellation_reason: int | None = None
    cancellation_note: str | None = None
    archived_at: datetime.datetime | None = None
    did_not_arrive: bool = False
    patient_arrived: bool = False

    def active(self) -> bool:
        return self.cancelled_at is None and self.archived_at is None

    def overlaps(self, start: datetime.datetime, end: datetime.datetime) -> bool:
        return self.starts_at < end and start < self.ends_at


# ---------------------------------------------------------------------------------------------- q[] filters

FilterKind = str  # "int" | "datetime" | "date" | "string" | "bool"
OPERATORS = (">=", "<=", "!=", "!?", "~~", ">", "<", "=", "~", "?", "*")
OPERATORS_BY_KIND: dict[FilterKind, frozenset[str]] = {
    "int": frozenset({"=", "!=", ">=", ">", "<=", "<", "?", "!?", "*"}),
    "datetime": frozenset({">=", ">", "<=", "<", "?", "!?", "*", "="}),
    "date": frozenset({"=", ">=", ">", "<=", "<", "?", "!?", "*"}),
    "string": frozenset({"=", "!=", "~", "~~", "?", "!?", "*"}),
    "bool": frozenset({"=", "!="}),
}


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    value: str


def parse_filters(raw: Iterable[str], fields: dict[str, FilterKind]) -> list[Filter]:
    filters = []
    for item in raw:
        name, sep, rest = item.partition(":")
        if not sep or name not in fields:
            raise bad_request(f"Invalid filter: {item}")
        op = next((o for o in OPERATORS if rest.startswith(o)), None)
        if op is None or op not in OPERATORS_BY_KIND[fields[name]]:
            raise bad_request(f"Invalid filter operator: {item}")
        filters.append(Filter(name, op, rest[len(op) :]))
    return filters


def _compare(op: str, left: Any, right: Any) -> bool:
    match op:
        case "=":
            return bool(left == right)
        case "!=":
            return bool(left != right)
        case ">":
            return bool(left > right)
        case ">=":
            return bool(left >= right)
        case "<":
            return bool(left < right)
        case "<=":
            return bool(left <= right)
    return False


def filter_matches(f: Filter, kind: FilterKind, value: Any) -> bool:
    """Does one record's field value pass filter `f`? Raises 400 for a value that cannot be read."""
    if f.op == "*":
        return True
    if f.op == "?":
        return value is not None
    if f.op == "!?":
        return value is None
    if value is None:
        return f.op == "!="
    try:
        if kind == "int":
            if f.op == "=":
                return str(value) in {v.strip() for v in f.value.split(",")}
            return _compare(f.op, int(value), int(f.value))
        if kind == "datetime":
            wanted = datetime.datetime.fromisoformat(f.value.replace("Z", "+00:00"))
            if wanted.tzinfo is None:
                wanted = wanted.replace(tzinfo=UTC)
            return _compare(f.op, value, wanted)
        if kind == "date":
            if "*" in f.value and f.op == "=":
                return fnmatch.fnmatchcase(value.isoformat(), f.value.replace("*", "?"))
            return _compare(f.op, value, datetime.date.fromisoformat(f.value))
        if kind == "bool":
            if f.value not in ("true", "false"):
                raise ValueError(f.value)
            return _compare(f.op, bool(value), f.value == "true")
    except ValueError:
        raise bad_request(f"Invalid filter value: {f.field}:{f.op}{f.value}") from None
    text = str(value)
    if f.op == "~":
        return f.value.lower() in text.lower()
    if f.op == "~~":
        pattern = re.escape(f.value.lower()).replace("%", ".*")
        return re.fullmatch(pattern, text.lower()) is not None
    return _compare(f.op, text, f.value)


R = TypeVar("R")


def apply_filters(
    records: Iterable[R], filters: Sequence[Filter], fields: dict[str, FilterKind], get: Callable[[R, str], Any]
) -> list[R]:
    return [r for r in records if all(filter_matches(f, fields[f.field], get(r, f.field)) for f in filters)]


# ---------------------------------------------------------------------------------------------- rate limit


# ---------------------------------------------------------------------------------------------- the emulator


class ClinikoEmulator(Emulator):
    slug: ClassVar[str] = "cliniko"

    def __init__(
        self,
        seed: EmulatorSeed,
        *,
        api_key: str = DEFAULT_API_KEY,
        shard: str = "au1",
        rate_limit_per_minute: int = 200,
        rate_limit_window_seconds: float = 60.0,  # tests shorten the minute to see a limit in seconds
        clock: Callable[[], float] = time.time,
        max_exchanges: int = 5000,
    ) -> None:
        self.seed = seed
        self.api_key = api_key
        self.shard = shard
        self.clock = clock
        self.faults = FaultInjector()
        self.traffic = Traffic(max_exchanges)
        self.rate_limiter = WindowLimiter(rate_limit_per_minute, clock, rate_limit_window_seconds)
        self.zone = zoneinfo.ZoneInfo(seed.time_zone)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._id_base = 1_390_053_863_163_176_768
        self.businesses: dict[str, BusinessRec] = {}
        self.users: dict[str, UserRec] = {}
        self.practitioners: dict[str, PractitionerRec] = {}
        self.appointment_types: dict[str, AppointmentTypeRec] = {}
        self.patients: dict[str, PatientRec] = {}
        self.appointments: dict[str, AppointmentRec] = {}
        self._seed()

    # ------------------------------------------------------------------ plumbing

    @property
    def exchanges(self) -> list[Any]:
        """Every recorded exchange, oldest first (bounded)."""
        return list(self.traffic.exchanges)

    def _new_id(self) -> str:
        return str(self._id_base + next(self._ids) * 7_919_113)

    def _now(self) -> datetime.datetime:
        return utc_now(self.clock)

    def _seed(self) -> None:
        now = self._now()
        for b in self.seed.businesses:
            business = BusinessRec(self._new_id(), b.name, now, now)
            self.businesses[business.id] = business
        for p in self.seed.practitioners:
            user = UserRec(self._new_id(), p.first_name, p.last_name, p.email, now, now)
            self.users[user.id] = user
            prac = PractitionerRec(self._new_id(), user.id, p.first_name, p.last_name, now, now)
            self.practitioners[prac.id] = prac
        for s in self.seed.services:
            at = AppointmentTypeRec(self._new_id(), s.name, s.duration_minutes, now, now)
            self.appointment_types[at.id] = at
        for pt in self.seed.patients:
            phones = [self._phone(pt.phone, "Mobile")] if pt.phone else []
            patient = PatientRec(
                self._new_id(), pt.first_name, pt.last_name, pt.email, pt.date_of_birth, phones, now, now
            )
            self.patients[patient.id] = patient

    def _phone(self, number: str, phone_type: str) -> PhoneRec:
        try:
            parsed = phonenumbers.parse(number, "AU")
            normalized = f"{parsed.country_code}{parsed.national_number}"
        except phonenumbers.NumberParseException:
            normalized = re.sub(r"\D", "", number)
        return PhoneRec(number, normalized, phone_type)

    def stats(self) -> EmulatorStats:
        with self._lock:
            total = len(self.appointments)
            active = sum(1 for a in self.appointments.values() if a.active())
        return EmulatorStats(
            requests=self.traffic.requests,
            appointments=total,
            active_appointments=active,
            rate_limited=self.traffic.rate_limited,
        )

    def business_ids(self) -> list[str]:
        return list(self.businesses)

    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        business_id = self.business_ids()[business_index]
        settings = {"business_id": business_id, "base_url": base_url.rstrip("/") + "/v1"}
        credentials = {"api_key": f"{self.api_key}-{self.shard}", "user_agent_email": "demo@example.com"}
        return msgspec.json.encode(settings), msgspec.json.encode(credentials)

    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        return msgspec.json.encode(
            {"api_key": f"NotAValidKey{self.api_key[:8]}-{self.shard}", "user_agent_email": "demo@example.com"}
        )

    # ------------------------------------------------------------------ gate: UA, auth, Accept, rate limit

    def _gate(self, scope: Scope) -> RawResponse | None:
        path: str = scope["path"]
        if not (path == "/v1" or path.startswith("/v1/")):
            return None  # unknown routes: the HTML 404 comes from routing
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not EMAIL_RE.search(headers.get("user-agent", "")):
            return RawResponse(403, msgspec.json.encode({"message": "Requires a user agent"}))
        user = self._authenticate(headers.get("authorization"))
        if user is None:
            return RawResponse(
                401,
                b"HTTP Basic: Access denied.\n",
                "text/html; charset=utf-8",
                [("WWW-Authenticate", 'Basic realm="Application"')],
            )
        accept = headers.get("accept", "*/*")
        if not any(a in accept for a in ("application/json", "*/*", "application/*")):
            return RawResponse(406, b"", None)
        reset = self.rate_limiter.hit(user)
        if reset is not None:
            return self._too_many(math.ceil(reset))  # X-RateLimit-Reset is whole epoch seconds
        return None

    def _authenticate(self, header: str | None) -> str | None:
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, _password = decoded.partition(":")
        key = username
        m = SHARD_SUFFIX_RE.match(username)
        if m:
            if m.group("shard").lower() != self.shard:
                return None  # a key sent to another shard's host does not work
            key = m.group("key")
        return key if key == self.api_key else None

    def _too_many(self, reset: int) -> RawResponse:
        return RawResponse(
            429, msgspec.json.encode({"message": "Too many requests"}), JSON, [("X-RateLimit-Reset", str(reset))]
        )

    def _rate_limited_fault(self, fault: Fault) -> RawResponse:
        return self._too_many(int(self.clock()) + fault.retry_after)

    # ------------------------------------------------------------------ rendering

    def _link(self, base: str, path: str) -> wire.Linked:
        return wire.Linked(links=wire.LinkRef(f"{base}/v1/{path}"))

    def _appointment(self, base: str, a: AppointmentRec) -> wire.IndividualAppointment:
        patient = self.patients.get(a.patient_id)
        reason = a.cancellation_reason
        return wire.IndividualAppointment(
            id=a.id,
            starts_at=a.starts_at,
            ends_at=a.ends_at,
            created_at=a.created_at,
            updated_at=a.updated_at,
            appointment_type=self._link(base, f"appointment_types/{a.appointment_type_id}"),
            business=self._link(base, f"businesses/{a.business_id}"),
            practitioner=self._link(base, f"practitioners/{a.practitioner_id}"),
            patient=self._link(base, f"patients/{a.patient_id}"),
            attendees=self._link(base, f"individual_appointments/{a.id}/attendees"),
            conflicts=self._link(base, f"individual_appointments/{a.id}/conflicts"),
            links=wire.LinkRef(f"{base}/v1/individual_appointments/{a.id}"),
            notes=a.notes,
            patient_name=f"{patient.first_name} {patient.last_name}" if patient else None,
            cancelled_at=a.cancelled_at,
            cancellation_reason=reason,
            cancellation_reason_description=wire.CANCELLATION_REASON_DESCRIPTIONS.get(reason) if reason else None,
            cancellation_note=a.cancellation_note,
            archived_at=a.archived_at,
            did_not_arrive=a.did_not_arrive,
            patient_arrived=a.patient_arrived,
            email_reminder_sent=False,
            sms_reminder_sent=False,
            has_patient_appointment_notes=False,
            online_booking_policy_accepted=None,
            repeat_rule=None,
            repeats=None,
            telehealth_url=None,
        )

    def _patient(self, base: str, p: PatientRec) -> wire.Patient:
        return wire.Patient(
            id=p.id,
            first_name=p.first_name,
            last_name=p.last_name,
            created_at=p.created_at,
            updated_at=p.updated_at,
            links=wire.LinkRef(f"{base}/v1/patients/{p.id}"),
            preferred_first_name=p.preferred_first_name,
            label=f"{p.first_name} {p.last_name}",
            title=p.title,
            email=p.email,
            date_of_birth=p.date_of_birth,
            patient_phone_numbers=[
                wire.PhoneNumber(number=ph.number, normalized_number=ph.normalized, phone_type=ph.phone_type)
                for ph in p.phones
            ],
            sex=p.sex,
            time_zone=p.time_zone,
            notes=p.notes,
            archived_at=p.archived_at,
            appointments=self._link(base, f"patients/{p.id}/appointments"),
        )

    def _practitioner(self, base: str, p: PractitionerRec) -> wire.Practitioner:
        return wire.Practitioner(
            id=p.id,
            created_at=p.created_at,
            updated_at=p.updated_at,
            links=wire.LinkRef(f"{base}/v1/practitioners/{p.id}"),
            first_name=p.first_name,
            last_name=p.last_name,
            display_name=f"{p.first_name} {p.last_name}",
            label=f"{p.first_name} {p.last_name}",
            active=p.active,
            show_in_online_bookings=True,
            user=self._link(base, f"users/{p.user_id}"),
            appointment_types=self._link(base, f"practitioners/{p.id}/appointment_types"),
            appointments=self._link(base, f"practitioners/{p.id}/appointments"),
        )

    def _user(self, base: str, u: UserRec) -> wire.User:
        return wire.User(
            id=u.id,
            first_name=u.first_name,
            last_name=u.last_name,
            email=u.email,
            created_at=u.created_at,
            updated_at=u.updated_at,
            links=wire.LinkRef(f"{base}/v1/users/{u.id}"),
            time_zone=RAILS_ZONE_NAMES.get(
                self.seed.time_zone, self.seed.time_zone.rsplit("/", 1)[-1].replace("_", " ")
            ),
            time_zone_identifier=self.seed.time_zone,
            active=True,
            user_active=True,
            role="practitioner",
            phone_numbers=[],
        )

    def _appointment_type(self, base: str, t: AppointmentTypeRec) -> wire.AppointmentType:
        return wire.AppointmentType(
            id=t.id,
            name=t.name,
            duration_in_minutes=t.duration,
            created_at=t.created_at,
            updated_at=t.updated_at,
            links=wire.LinkRef(f"{base}/v1/appointment_types/{t.id}"),
            color="#3d7bd9",
            max_attendees=1,
            show_in_online_bookings=True,
            telehealth_enabled=False,
            online_bookings_lead_time_hours=0,
            practitioners=self._link(base, f"appointment_types/{t.id}/practitioners"),
        )

    def _business(self, base: str, b: BusinessRec) -> wire.Business:
        zone = self.seed.time_zone
        return wire.Business(
            id=b.id,
            created_at=b.created_at,
            updated_at=b.updated_at,
            links=wire.LinkRef(f"{base}/v1/businesses/{b.id}"),
            business_name=b.name,
            display_name=b.name,
            label=b.name,
            address_1="1 Example Street",
            city="Melbourne",
            state="VIC",
            post_code="3000",
            country="Australia",
            country_code="AU",
            time_zone=RAILS_ZONE_NAMES.get(zone, zone.rsplit("/", 1)[-1].replace("_", " ")),
            time_zone_identifier=zone,
            show_in_online_bookings=True,
            appointment_type_ids=list(self.appointment_types),
            practitioners=self._link(base, f"businesses/{b.id}/practitioners"),
            appointments=self._link(base, f"businesses/{b.id}/appointments"),
        )

    # ------------------------------------------------------------------ lists

    def _page(self, request: Request[Any, Any, Any], items: Sequence[R]) -> tuple[list[R], int, wire.Links]:
        params = urllib.parse.parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
        page = _int_param(params, "page", 1, minimum=1)
        per_page = min(_int_param(params, "per_page", 50, minimum=1), 100)
        total = len(items)
        start = (page - 1) * per_page
        chunk = list(items[start : start + per_page])
        url = _base(request) + request.scope["path"]

        def link(n: int) -> str:
            rest = [(k, v) for k, v in params if k != "page"]
            return url + "?" + urllib.parse.urlencode([*rest, ("page", str(n))])

        links = wire.Links(link(page))
        if start + per_page < total:
            links.next = link(page + 1)
        if page > 1:
            links.previous = link(page - 1)
        return chunk, total, links

    def _sorted(
        self, request: Request[Any, Any, Any], items: list[R], columns: dict[str, Callable[[R], Any]]
    ) -> list[R]:
        params = urllib.parse.parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
        sort = next((v for k, v in params if k == "sort"), "") or "created_at"
        descending_default = next((v for k, v in params if k == "order"), "asc") == "desc"
        keys = []
        for part in reversed([p.strip() for p in sort.split(",") if p.strip()]):
            name, _, direction = part.partition(":")
            if name in columns:
                keys.append((columns[name], direction == "desc" if direction else descending_default))
        result = sorted(items, key=lambda r: getattr(r, "id", ""))
        for key, desc in keys:
            result.sort(key=lambda r, k=key: (k(r) is None, k(r) or 0), reverse=desc)  # type: ignore[misc]
        return result

    # ------------------------------------------------------------------ validation helpers

    def _body(self, request_body: bytes, type_: type[R]) -> R:
        try:
            raw = msgspec.json.decode(request_body) if request_body else {}
        except msgspec.DecodeError:
            raise bad_request("Problems parsing JSON") from None
        if not isinstance(raw, dict):
            raise ApiError(422, msgspec.json.encode(wire.ValidationError(message="must be an object")))
        try:
            return msgspec.convert(raw, type_, strict=True)
        except msgspec.ValidationError as exc:
            raise invalid(_field_errors(str(exc))) from None

    def _check_refs(self, patient_id: str, practitioner_id: str, type_id: str, business_id: str) -> None:
        errors: dict[str, str] = {}
        if patient_id not in self.patients:
            errors["patient"] = "must exist"
        if practitioner_id not in self.practitioners:
            errors["practitioner"] = "must exist"
        if type_id not in self.appointment_types:
            errors["appointment_type"] = "must exist"
        if business_id not in self.businesses:
            errors["business"] = "must exist"
        if errors:
            raise invalid(errors)

    def _find(self, table: dict[str, R], record_id: str) -> R:
        rec = table.get(record_id)
        if rec is None:
            raise not_found()
        return rec

    # ------------------------------------------------------------------ appointments

    def create_appointment(self, base: str, body: bytes) -> tuple[wire.IndividualAppointment, str]:
        data = self._body(body, wire.IndividualAppointmentCreate)
        with self._lock:
            self._check_refs(data.patient_id, data.practitioner_id, data.appointment_type_id, data.business_id)
            starts = _aware(data.starts_at, "starts_at")
            duration = self.appointment_types[data.appointment_type_id].duration
            ends = (
                _aware(data.ends_at, "ends_at")
                if isinstance(data.ends_at, datetime.datetime)
                else starts + datetime.timedelta(minutes=duration)
            )
            if ends <= starts:
                raise invalid({"ends_at": "must be after starts at"})
            if (fault := self.faults.misstore("POST", "/v1/individual_appointments")) is not None:
                starts, ends = fault.misstored(starts, ends)
            now = self._now()
            rec = AppointmentRec(
                id=self._new_id(),
                patient_id=data.patient_id,
                practitioner_id=data.practitioner_id,
                appointment_type_id=data.appointment_type_id,
                business_id=data.business_id,
                starts_at=starts,
                ends_at=ends,
                created_at=now,
                updated_at=now,
                notes=data.notes if isinstance(data.notes, str) else None,
            )
            self.appointments[rec.id] = rec
            return self._appointment(base, rec), rec.id

    def update_appointment(self, base: str, appointment_id: str, body: bytes) -> wire.IndividualAppointment:
        data = self._body(body, wire.IndividualAppointmentUpdate)
        with self._lock:
            rec = self._find(self.appointments, appointment_id)
            patient_id = data.patient_id if isinstance(data.patient_id, str) else rec.patient_id
            practitioner_id = data.practitioner_id if isinstance(data.practitioner_id, str) else rec.practitioner_id
            type_id = data.appointment_type_id if isinstance(data.appointment_type_id, str) else rec.appointment_type_id
            business_id = data.business_id if isinstance(data.business_id, str) else rec.business_id
            self._check_refs(patient_id, practitioner_id, type_id, business_id)
            starts = (
                _aware(data.starts_at, "starts_at") if isinstance(data.starts_at, datetime.datetime) else rec.starts_at
            )
            if data.ends_at is None:
                ends = starts + datetime.timedelta(minutes=self.appointment_types[type_id].duration)
            elif isinstance(data.ends_at, datetime.datetime):
                ends = _aware(data.ends_at, "ends_at")
            else:
                ends = rec.ends_at
            if ends <= starts:
                raise invalid({"ends_at": "must be after starts at"})
            moved = (starts, ends) != (rec.starts_at, rec.ends_at)
            if moved and (fault := self.faults.misstore("PATCH", f"/v1/individual_appointments/{rec.id}")) is not None:
                starts, ends = fault.misstored(starts, ends)
            rec.patient_id, rec.practitioner_id = patient_id, practitioner_id
            rec.appointment_type_id, rec.business_id = type_id, business_id
            rec.starts_at, rec.ends_at = starts, ends
            if not isinstance(data.notes, msgspec.UnsetType):
                rec.notes = data.notes
            rec.updated_at = self._bumped(rec.updated_at)
            return self._appointment(base, rec)

    def cancel_appointment(self, appointment_id: str, body: bytes) -> None:
        try:
            raw = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError:
            raise bad_request("Problems parsing JSON") from None
        if isinstance(raw, dict) and raw.get("cancellation_reason") is None:
            raise invalid({"cancellation_reason": "can't be blank"})
        if isinstance(raw, dict) and raw.get("cancellation_reason") not in {r.value for r in wire.CancellationReason}:
            raise invalid({"cancellation_reason": "is not included in the list"})
        data = self._body(body, wire.IndividualAppointmentCancel)
        with self._lock:
            rec = self._find(self.appointments, appointment_id)
            if rec.cancelled_at is None:
                rec.cancelled_at = self._now()
            rec.cancellation_reason = int(data.cancellation_reason)
            if not isinstance(data.cancellation_note, msgspec.UnsetType):
                rec.cancellation_note = data.cancellation_note
            rec.updated_at = self._bumped(rec.updated_at)

    def mark_attendance(self, appointment_id: str, mark: AttendanceMark) -> None:
        """What a receptionist does in Cliniko's screens: the API exposes these flags read-only."""
        with self._lock:
            rec = self._find(self.appointments, appointment_id)
            rec.did_not_arrive, rec.patient_arrived = mark.did_not_arrive, mark.patient_arrived
            rec.updated_at = self._bumped(rec.updated_at)

    def _bumped(self, previous: datetime.datetime) -> datetime.datetime:
        """`updated_at` must move on every change, even two changes within one second."""
        now = self._now()
        return now if now > previous else previous + datetime.timedelta(seconds=1)

    APPOINTMENT_FILTERS: ClassVar[dict[str, FilterKind]] = {
        "appointment_type_id": "int",
        "archived_at": "datetime",
        "business_id": "int",
        "cancelled_at": "datetime",
        "created_at": "datetime",
        "deleted_at": "datetime",
        "did_not_arrive": "bool",
        "ends_at": "datetime",
        "id": "int",
        "patient_id": "int",
        "practitioner_id": "int",
        "repeated_from_id": "int",
        "starts_at": "datetime",
        "updated_at": "datetime",
    }

    def list_appointments(self, request: Request[Any, Any, Any]) -> wire.IndividualAppointmentList:
        filters = parse_filters(request.query_params.getall("q[]", []), self.APPOINTMENT_FILTERS)
        with self._lock:
            records = list(self.appointments.values())
            if not any(f.field == "archived_at" for f in filters):
                records = [r for r in records if r.archived_at is None]
            if not any(f.field == "cancelled_at" for f in filters):
                records = [r for r in records if r.cancelled_at is None]
            records = apply_filters(records, filters, self.APPOINTMENT_FILTERS, _appointment_field)
            records = self._sorted(
                request,
                records,
                {c: _getter(c) for c in ("created_at", "updated_at", "starts_at", "ends_at", "id", "cancelled_at")},
            )
            chunk, total, links = self._page(request, records)
            base = _base(request)
            return wire.IndividualAppointmentList(
                individual_appointments=[self._appointment(base, r) for r in chunk], total_entries=total, links=links
            )

    # ------------------------------------------------------------------ patients

    PATIENT_FILTERS: ClassVar[dict[str, FilterKind]] = {
        "accepted_privacy_policy": "bool",
        "archived_at": "datetime",
        "created_at": "datetime",
        "date_of_birth": "date",
        "email": "string",
        "first_name": "string",
        "id": "int",
        "last_name": "string",
        "old_reference_id": "string",
        "preferred_first_name": "string",
        "updated_at": "datetime",
    }

    def list_patients(self, request: Request[Any, Any, Any]) -> wire.PatientList:
        filters = parse_filters(request.query_params.getall("q[]", []), self.PATIENT_FILTERS)
        with self._lock:
            records = list(self.patients.values())
            if not any(f.field == "archived_at" for f in filters):
                records = [r for r in records if r.archived_at is None]
            records = apply_filters(records, filters, self.PATIENT_FILTERS, _patient_field)
            records = self._sorted(
                request, records, {c: _getter(c) for c in ("created_at", "updated_at", "id", "first_name", "last_name")}
            )
            chunk, total, links = self._page(request, records)
            base = _base(request)
            return wire.PatientList(patients=[self._patient(base, r) for r in chunk], total_entries=total, links=links)

    def create_patient(self, base: str, body: bytes) -> tuple[wire.Patient, str]:
        data = self._body(body, wire.PatientCreate)
        errors: dict[str, str] = {}
        if not data.first_name.strip():
            errors["first_name"] = "can't be blank"
        if not data.last_name.strip():
            errors["last_name"] = "can't be blank"
        if isinstance(data.email, str) and data.email and not VALID_EMAIL_RE.match(data.email):
            errors["email"] = "is invalid"
        if errors:
            raise invalid(errors)
        phones = data.patient_phone_numbers if isinstance(data.patient_phone_numbers, list) else []
        now = self._now()

        def opt(value: str | msgspec.UnsetType | None) -> str | None:
            return value if isinstance(value, str) else None

        with self._lock:
            rec = PatientRec(
                id=self._new_id(),
                first_name=data.first_name.strip(),
                last_name=data.last_name.strip(),
                email=opt(data.email),
                date_of_birth=data.date_of_birth if isinstance(data.date_of_birth, datetime.date) else None,
                phones=[self._phone(p.number, p.phone_type.value) for p in phones],
                created_at=now,
                updated_at=now,
                title=opt(data.title),
                preferred_first_name=opt(data.preferred_first_name),
                sex=opt(data.sex),
                time_zone=opt(data.time_zone),
                notes=opt(data.notes),
            )
            self.patients[rec.id] = rec
            return self._patient(base, rec), rec.id

    # ------------------------------------------------------------------ availability

    def _window(self, request: Request[Any, Any, Any], business: BusinessRec) -> tuple[datetime.date, datetime.date]:
        try:
            start = datetime.date.fromisoformat(request.query_params.get("from") or "")
            end = datetime.date.fromisoformat(request.query_params.get("to") or "")
        except ValueError:
            raise bad_request(INVALID_TIME_FRAME) from None
        today = self._now().astimezone(self.zone).date()
        if end < start or (end - start).days > 7 or start < today:
            raise bad_request(INVALID_TIME_FRAME)
        return start, end

    def free_slots(
        self, practitioner_id: str, type_id: str, start: datetime.date, end: datetime.date
    ) -> list[datetime.datetime]:
        seed = self.seed
        duration = datetime.timedelta(minutes=self.appointment_types[type_id].duration)
        step = datetime.timedelta(minutes=seed.slot_step_minutes)
        open_from = datetime.time.fromisoformat(seed.open_from)
        open_until = datetime.time.fromisoformat(seed.open_until)
        now = self._now()
        busy = [a for a in self.appointments.values() if a.practitioner_id == practitioner_id and a.active()]
        slots = []
        day = start
        while day <= end:
            if day.weekday() in seed.open_weekdays:
                slot = datetime.datetime.combine(day, open_from, self.zone)
                closing = datetime.datetime.combine(day, open_until, self.zone)
                while slot + duration <= closing:
                    s = to_utc(slot)
                    e = s + duration
                    if s >= now and not any(a.overlaps(s, e) for a in busy):
                        slots.append(s)
                    slot = slot + step
            day += datetime.timedelta(days=1)
        return slots

    # ------------------------------------------------------------------ the app

    def app(self) -> litestar.Litestar:
        em = self

        def reply(
            content: msgspec.Struct | None, status: int = 200, headers: dict[str, str] | None = None
        ) -> Response[bytes]:
            body = b"" if content is None else msgspec.json.encode(content)
            return Response(body, status_code=status, media_type=JSON if content is not None else None, headers=headers)

        @get("/v1/individual_appointments", sync_to_thread=False)
        def list_appointments(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.list_appointments(request))

        @post("/v1/individual_appointments")
        async def create_appointment(request: Request[Any, Any, Any]) -> Response[bytes]:
            base = _base(request)
            appointment, new_id = em.create_appointment(base, await request.body())
            return reply(appointment, 201, {"Location": f"{base}/v1/individual_appointments/{new_id}"})

        @get("/v1/individual_appointments/{appointment_id:str}", sync_to_thread=False)
        def get_appointment(request: Request[Any, Any, Any], appointment_id: FromPath[str]) -> Response[bytes]:
            filters = parse_filters(request.query_params.getall("q[]", []), em.APPOINTMENT_FILTERS)
            with em._lock:
                rec = em._find(em.appointments, appointment_id)
                if rec.cancelled_at is not None and not any(f.field == "cancelled_at" for f in filters):
                    raise not_found()
                return reply(em._appointment(_base(request), rec))

        @patch("/v1/individual_appointments/{appointment_id:str}")
        async def update_appointment(request: Request[Any, Any, Any], appointment_id: FromPath[str]) -> Response[bytes]:
            return reply(em.update_appointment(_base(request), appointment_id, await request.body()))

        @patch("/v1/individual_appointments/{appointment_id:str}/cancel")
        async def cancel_appointment(request: Request[Any, Any, Any], appointment_id: FromPath[str]) -> Response[bytes]:
            em.cancel_appointment(appointment_id, await request.body())
            return reply(None, 204)

        @post("/v1/individual_appointments/{appointment_id:str}/archive", sync_to_thread=False)
        def archive_appointment(appointment_id: FromPath[str]) -> Response[bytes]:
            with em._lock:
                rec = em._find(em.appointments, appointment_id)
                if rec.archived_at is None:
                    rec.archived_at = em._now()
                    rec.updated_at = em._bumped(rec.updated_at)
            return reply(None, 204)

        @get("/v1/individual_appointments/{appointment_id:str}/conflicts", sync_to_thread=False)
        def conflicts(appointment_id: FromPath[str]) -> Response[bytes]:
            with em._lock:
                rec = em._find(em.appointments, appointment_id)
                exist = rec.active() and any(
                    other.id != rec.id
                    and other.practitioner_id == rec.practitioner_id
                    and other.active()
                    and other.overlaps(rec.starts_at, rec.ends_at)
                    for other in em.appointments.values()
                )
            return reply(wire.Conflicts(conflicts=wire.ConflictsExist(exist=exist)))

        @get("/v1/patients", sync_to_thread=False)
        def list_patients(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.list_patients(request))

        @post("/v1/patients")
        async def create_patient(request: Request[Any, Any, Any]) -> Response[bytes]:
            base = _base(request)
            patient, new_id = em.create_patient(base, await request.body())
            return reply(patient, 201, {"Location": f"{base}/v1/patients/{new_id}"})

        @get("/v1/patients/{patient_id:str}", sync_to_thread=False)
        def get_patient(request: Request[Any, Any, Any], patient_id: FromPath[str]) -> Response[bytes]:
            with em._lock:
                return reply(em._patient(_base(request), em._find(em.patients, patient_id)))

        def practitioner_list(request: Request[Any, Any, Any], records: list[PractitionerRec]) -> Response[bytes]:
            fields: dict[str, FilterKind] = {
                "active": "bool",
                "created_at": "datetime",
                "id": "int",
                "updated_at": "datetime",
                "user_id": "int",
                "show_in_online_bookings": "bool",
            }
            filters = parse_filters(request.query_params.getall("q[]", []), fields)
            records = apply_filters(records, filters, fields, _practitioner_field)
            records = em._sorted(
                request, records, {c: _getter(c) for c in ("created_at", "updated_at", "id", "first_name", "last_name")}
            )
            chunk, total, links = em._page(request, records)
            base = _base(request)
            return reply(
                wire.PractitionerList(
                    practitioners=[em._practitioner(base, p) for p in chunk], total_entries=total, links=links
                )
            )

        @get("/v1/practitioners", sync_to_thread=False)
        def list_practitioners(request: Request[Any, Any, Any]) -> Response[bytes]:
            return practitioner_list(request, [p for p in em.practitioners.values() if p.active])

        @get("/v1/businesses/{business_id:str}/practitioners", sync_to_thread=False)
        def business_practitioners(request: Request[Any, Any, Any], business_id: FromPath[str]) -> Response[bytes]:
            em._find(em.businesses, business_id)
            return practitioner_list(request, [p for p in em.practitioners.values() if p.active])

        @get("/v1/appointment_types/{type_id:str}/practitioners", sync_to_thread=False)
        def type_practitioners(request: Request[Any, Any, Any], type_id: FromPath[str]) -> Response[bytes]:
            em._find(em.appointment_types, type_id)
            return practitioner_list(request, [p for p in em.practitioners.values() if p.active])

        @get("/v1/practitioners/{practitioner_id:str}", sync_to_thread=False)
        def get_practitioner(request: Request[Any, Any, Any], practitioner_id: FromPath[str]) -> Response[bytes]:
            return reply(em._practitioner(_base(request), em._find(em.practitioners, practitioner_id)))

        @get("/v1/users", sync_to_thread=False)
        def list_users(request: Request[Any, Any, Any]) -> Response[bytes]:
            fields: dict[str, FilterKind] = {"created_at": "datetime", "id": "int", "updated_at": "datetime"}
            filters = parse_filters(request.query_params.getall("q[]", []), fields)
            records = apply_filters(list(em.users.values()), filters, fields, lambda u, f: getattr(u, f))
            records = em._sorted(request, records, {c: _getter(c) for c in ("created_at", "updated_at", "id")})
            chunk, total, links = em._page(request, records)
            base = _base(request)
            return reply(wire.UserList(users=[em._user(base, u) for u in chunk], total_entries=total, links=links))

        @get("/v1/users/{user_id:str}", sync_to_thread=False)
        def get_user(request: Request[Any, Any, Any], user_id: FromPath[str]) -> Response[bytes]:
            return reply(em._user(_base(request), em._find(em.users, user_id)))

        def type_list(request: Request[Any, Any, Any]) -> Response[bytes]:
            fields: dict[str, FilterKind] = {
                "archived_at": "datetime",
                "created_at": "datetime",
                "id": "int",
                "updated_at": "datetime",
                "show_in_online_bookings": "bool",
            }
            filters = parse_filters(request.query_params.getall("q[]", []), fields)
            records = apply_filters(list(em.appointment_types.values()), filters, fields, _type_field)
            records = em._sorted(request, records, {c: _getter(c) for c in ("created_at", "updated_at", "id", "name")})
            chunk, total, links = em._page(request, records)
            base = _base(request)
            return reply(
                wire.AppointmentTypeList(
                    appointment_types=[em._appointment_type(base, t) for t in chunk], total_entries=total, links=links
                )
            )

        @get("/v1/appointment_types", sync_to_thread=False)
        def list_types(request: Request[Any, Any, Any]) -> Response[bytes]:
            return type_list(request)

        @get("/v1/practitioners/{practitioner_id:str}/appointment_types", sync_to_thread=False)
        def practitioner_types(request: Request[Any, Any, Any], practitioner_id: FromPath[str]) -> Response[bytes]:
            em._find(em.practitioners, practitioner_id)
            return type_list(request)

        @get("/v1/appointment_types/{type_id:str}", sync_to_thread=False)
        def get_type(request: Request[Any, Any, Any], type_id: FromPath[str]) -> Response[bytes]:
            return reply(em._appointment_type(_base(request), em._find(em.appointment_types, type_id)))

        @get("/v1/businesses", sync_to_thread=False)
        def list_businesses(request: Request[Any, Any, Any]) -> Response[bytes]:
            fields: dict[str, FilterKind] = {
                "archived_at": "datetime",
                "created_at": "datetime",
                "deleted_at": "datetime",
                "id": "int",
                "updated_at": "datetime",
                "show_in_online_bookings": "bool",
            }
            filters = parse_filters(request.query_params.getall("q[]", []), fields)
            records = apply_filters(list(em.businesses.values()), filters, fields, _business_field)
            records = em._sorted(request, records, {c: _getter(c) for c in ("created_at", "updated_at", "id")})
            chunk, total, links = em._page(request, records)
            base = _base(request)
            return reply(
                wire.BusinessList(businesses=[em._business(base, b) for b in chunk], total_entries=total, links=links)
            )

        @get("/v1/businesses/{business_id:str}", sync_to_thread=False)
        def get_business(request: Request[Any, Any, Any], business_id: FromPath[str]) -> Response[bytes]:
            return reply(em._business(_base(request), em._find(em.businesses, business_id)))

        avail = "/v1/businesses/{business_id:str}/practitioners/{practitioner_id:str}/appointment_types/{type_id:str}"

        def slots_for(
            request: Request[Any, Any, Any],
            business_id: FromPath[str],
            practitioner_id: FromPath[str],
            type_id: FromPath[str],
        ) -> list[datetime.datetime]:
            with em._lock:
                business = em._find(em.businesses, business_id)
                em._find(em.practitioners, practitioner_id)
                em._find(em.appointment_types, type_id)
                start, end = em._window(request, business)
                return em.free_slots(practitioner_id, type_id, start, end)

        @get(avail + "/available_times", sync_to_thread=False)
        def available_times(
            request: Request[Any, Any, Any],
            business_id: FromPath[str],
            practitioner_id: FromPath[str],
            type_id: FromPath[str],
        ) -> Response[bytes]:
            slots = slots_for(request, business_id, practitioner_id, type_id)
            chunk, total, links = em._page(request, slots)
            return reply(
                wire.AvailableTimeList(
                    available_times=[wire.AvailableTime(s) for s in chunk], total_entries=total, links=links
                )
            )

        @get(avail + "/next_available_time", sync_to_thread=False)
        def next_available_time(
            request: Request[Any, Any, Any],
            business_id: FromPath[str],
            practitioner_id: FromPath[str],
            type_id: FromPath[str],
        ) -> Response[bytes]:
            slots = slots_for(request, business_id, practitioner_id, type_id)
            url = _base(request) + request.scope["path"]
            query = request.scope["query_string"].decode("latin-1")
            links = wire.LinkRef(url + (f"?{query}" if query else ""))
            if not slots:
                return reply(wire.NextAvailableTime(links=links, total_entries=0))
            return reply(wire.NextAvailableTime(links=links, total_entries=1, appointment_start=slots[0]))

        @post(
            CONTROL_PREFIX + "/individual_appointments/{appointment_id:str}/attendance",
            status_code=204,
            sync_to_thread=False,
        )
        def mark_attendance(appointment_id: FromPath[str], data: JSONBody[AttendanceMark]) -> None:
            """Emulator control, not Cliniko's API: the clinic marking arrival or no-show in its own screens."""
            self.mark_attendance(appointment_id, data)

        def api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
            return Response(exc.body, status_code=exc.status, media_type=exc.content_type)

        def html_not_found(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
            if exc.status_code in (404, 405):
                return Response(NOT_FOUND_HTML, status_code=404, media_type="text/html")
            return Response(msgspec.json.encode({"message": exc.detail}), status_code=exc.status_code, media_type=JSON)

        handlers = [
            list_appointments, create_appointment, get_appointment, update_appointment, cancel_appointment, conflicts,
            archive_appointment,
            list_patients, create_patient, get_patient,
            list_practitioners, business_practitioners, type_practitioners, get_practitioner,
            list_users, get_user, list_types, practitioner_types, get_type, list_businesses, get_business,
            available_times, next_available_time, mark_attendance,
        ]  # fmt: skip
        return build_emulator_app(
            self,
            handlers,
            traffic=self.traffic,
            rate_limited=self._rate_limited_fault,
            gate=self._gate,
            exception_handlers={ApiError: api_error, HTTPException: html_not_found},
        )


# ---------------------------------------------------------------------------------------------- small helpers


def _base(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")


def _int_param(params: list[tuple[str, str]], name: str, default: int, *, minimum: int) -> int:
    raw = next((v for k, v in params if k == name), None)
    if raw is None or raw == "":
        return default
    try:
        return max(int(raw), minimum)
    except ValueError:
        raise bad_request(f"Invalid {name}") from None


def _aware(value: datetime.datetime, field: str) -> datetime.datetime:
    if value.tzinfo is None:
        raise invalid({field: "must include a UTC offset (send UTC with Z)"})
    return to_utc(value)


def _field_errors(message: str) -> dict[str, str]:
    """msgspec's message -> `{field: message}` in Cliniko's style."""
    missing = re.search(r"missing required field `([^`]+)`", message)
    if missing:
        name = missing.group(1).removesuffix("_id")
        return {name: "can't be blank"}
    at = re.search(r"at `\$\.([A-Za-z_]+)", message)
    field = at.group(1) if at else "base"
    return {field: "is invalid"}


def _getter(name: str) -> Callable[[Any], Any]:
    return lambda r: getattr(r, name)


def _appointment_field(r: AppointmentRec, name: str) -> Any:
    if name in ("deleted_at", "repeated_from_id"):
        return None
    return getattr(r, name)


def _patient_field(r: PatientRec, name: str) -> Any:
    if name in ("old_reference_id",):
        return None
    if name == "accepted_privacy_policy":
        return None
    return getattr(r, name)


def _practitioner_field(r: PractitionerRec, name: str) -> Any:
    if name == "show_in_online_bookings":
        return True
    return getattr(r, name)


def _type_field(r: AppointmentTypeRec, name: str) -> Any:
    if name == "archived_at":
        return None
    if name == "show_in_online_bookings":
        return True
    return getattr(r, name)


def _business_field(r: BusinessRec, name: str) -> Any:
    if name in ("archived_at", "deleted_at"):
        return None
    if name == "show_in_online_bookings":
        return True
    return getattr(r, name)

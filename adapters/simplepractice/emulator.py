"""A stand-in for SimplePractice: the clinician web app's JSON:API (`/frontend`) and the client-portal API
(`/client-portal-api`), served from one process with in-memory state.

Faithful to what the notes (§3) and evidence-2026-11 §5 document:
- `/frontend`: the session cookie (`_simplepractice_session`), `X-Csrf-Token`, `Accept: application/vnd.api+json`
  and `Api-Version`; JSON:API documents in and out, `{"errors": [{status, title, detail, source}]}` on failure.
- Reads: `appointments?filter[timeRange]=<start>,<end>` (types `appointments`; attributes `startTime`, `endTime`,
  `duration`, `attendanceStatus`, `clinicianId`, `officeId`, `officeName`, `title`, `cptCodes[{code, description,
  ratePerUnit}]`, string booleans `fullDay`/`isRecurring`), `appointments/{id}`, `clients/{id}`, `team-members`,
  `offices` (`name, street, city, state, zip, phone, isVideo`), `cpt-codes` (`description, duration, rate,
  callToBook`, plus `code`).
- Lists page by `page[number]`/`page[size]`, at most 50 a page, with **no total and no `links.next`**: "Neither
  returns a total. A short page is the last page" (the live portal), and no capture shows `links.next` on
  `/frontend`. `next_links=True` adds `links.next` while pages remain (the JSON:API convention the adapter still
  follows); `calendar_unpaged=True` answers the whole calendar range in one document, as integrators' single
  unpaged calendar fetch would see it.
- `Api-Version`: `2026-05-25` is accepted on both APIs (live 2026), `2025-03-21` on `/frontend` (an earlier
  fetcher). Other values are refused with a JSON:API `400` by default: nothing shows what SimplePractice does with
  a version it no longer serves, and a refusal makes a stale setting fail in tests and in `locations verify`
  instead of passing silently (`frontend_versions`/`portal_versions=None` checks presence only).
- `/client-portal-api/slots?filter[clinicianId]&filter[cptCodeId]&filter[officeId]&filter[startDate]&filter[endDate]
  &filter[timeZone]`: one resource per day with `attributes.spots[{start, end}]`. Without `Api-Version`,
  `Application-Build-Version` (presence only, any value) or `Application-Platform` it answers `400` ("Application
  build version is missing").
- Undefined paths (and methods) answer `200 text/html`: the web app's single-page catch-all.
- The CDN in front of SimplePractice (CloudFront) can refuse a request before SimplePractice sees it: a `403`
  `text/html` block page with `Server: CloudFront` (chrischall/simplepractice-mcp tests). Switched on by a control
  route, for every request, whatever the session.
- Times come back as the practice's wall time with its offset.

Choices where nothing documents SimplePractice's behaviour (UNCONFIRMED; the adapter's docstring lists the same):
- the write endpoints and bodies of adapters/simplepractice/writes.py, accepted exactly as written there, and
  answered with the whole record (a `MISSTORE` fault stores another start or length and answers normally);
- client search `clients?filter[search]=`, `sort=-updatedAt`, `filter[clinicianId]`/`filter[clientId]` on
  appointments, `createdAt`/`updatedAt` attributes;
- an expired or unknown session is `401`, a wrong CSRF token on a write a JSON:API `403`, a missing `Api-Version`
  on `/frontend` `400`, `Accept` without JSON:API `406`, over the rate limit `429` with `Retry-After`;
- overlapping appointments are accepted (the calendar does not refuse double bookings).

Faults (adapters.emulation): `MISSTORE` is applied where the create and the move store times; `REJECT` answers the
JSON:API error shape above with `title` and `detail` quoting the fault's message; `APPLY_LATE` (a create or move
answered 504 and applied later) needs nothing here.

Emulator control (not SimplePractice's API): `POST /_emulator/session/expire` and `/_emulator/session/restore`
(sign-out / expiry), `POST /_emulator/edge/block` and `/_emulator/edge/unblock` (the CDN's 403 page),
`POST /_emulator/appointments/{id}/attendance` `{"status": "No Show"}` (the clinic marking attendance in its own
screens).
"""

from __future__ import annotations

import datetime
import itertools
import math
import threading
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlencode

import litestar
import msgspec
from litestar import Request, Response, get, patch, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, JSONBody

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
from adapters.simplepractice import wire

UTC = datetime.UTC
JSONAPI = wire.JSONAPI
SESSION_COOKIE = "_simplepractice_session"
DEFAULT_SESSION = "emulator-session-4f1c2b7d9e"
DEFAULT_CSRF = "emulator-csrf-8a6d3e1f0b"
PAGE_SIZE = 50  # the largest page the portal serves ("Max page size is 50"), and the size when none is asked
FRONTEND_VERSIONS = frozenset({"2025-03-21", "2026-05-25"})
PORTAL_VERSIONS = frozenset({"2026-05-25"})
# CloudFront's block page as it serves it (request id made up).
EDGE_BLOCK_HTML = (
    b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" "http://www.w3.org/TR/html4/loose.dtd">'
    b'<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">'
    b"<TITLE>ERROR: The request could not be satisfied</TITLE></HEAD><BODY>"
    b'<H1>403 ERROR</H1><H2>The request could not be satisfied.</H2><HR noshade size="1px">'
    b"Request blocked. We can't connect to the server for this app or website at this time. There might be too much "
    b"traffic or a configuration error. Try again later, or contact the app or website owner."
    b'<BR clear="all"><HR noshade size="1px"><PRE>Generated by cloudfront (CloudFront)\n'
    b"Request ID: EmulatedRequestId0123456789abcdefghijklmnopqrstuvwx==</PRE><ADDRESS></ADDRESS></BODY></HTML>"
)
EDGE_BLOCK_HEADERS = [("Server", "CloudFront"), ("X-Cache", "Error from cloudfront")]
FRONTEND_RESOURCES = frozenset({"appointments", "clients", "team-members", "offices", "cpt-codes"})
SPA_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>SimplePractice</title>"
    b'<meta name="csrf-token" content="emulated"></head>'
    b'<body><div id="ember-application"></div><script src="/assets/frontend.js"></script></body></html>\n'
)
# Real psychotherapy CPT codes, for seeded services that carry no code of their own.
CPT_CODES = ["90791", "90834", "90837", "90832", "90847", "90846"]
CANCELLED_STATUSES = {"canceled", "cancelled", "late canceled", "late cancelled", "clinician canceled"}

R = TypeVar("R")


class ApiError(Exception):
    """Short-circuits a handler with a JSON:API error document."""

    def __init__(self, status: int, title: str, *, detail: str | None = None, pointer: str | None = None) -> None:
        super().__init__(title)
        source = wire.ErrorSource(pointer=pointer) if pointer else None
        error = wire.ErrorObject(status=str(status), title=title, detail=detail, source=source)
        self.status = status
        self.body = msgspec.json.encode(wire.ErrorDocument(errors=[error]))


def _error(status: int, title: str, headers: Sequence[tuple[str, str]] = ()) -> RawResponse:
    return RawResponse(status, ApiError(status, title).body, JSONAPI, list(headers))


def _version_refusal(version: str, known: frozenset[str] | None) -> RawResponse | None:
    """An `Api-Version` the emulator has no evidence SimplePractice serves (emulator choice: refused, see above)."""
    if known is None or version.strip() in known:
        return None
    return _error(400, "Api version is not supported")


# ---------------------------------------------------------------------------------------------- state records


@dataclass
class ClinicianRec:
    id: str
    first_name: str
    last_name: str
    email: str


@dataclass
class OfficeRec:
    id: str
    name: str


@dataclass
class CptRec:
    id: str
    code: str
    description: str
    duration: int
    rate: str = "150.0"


@dataclass
class ClientRec:
    id: str
    first_name: str
    last_name: str
    emails: list[str]
    phones: list[str]
    birth_date: datetime.date | None
    status: str
    created_at: datetime.datetime
    updated_at: datetime.datetime


@dataclass
class AppointmentRec:
    id: str
    client_id: str
    clinician_id: str
    office_id: str
    code: str
    start: datetime.datetime
    end: datetime.datetime
    created_at: datetime.datetime
    updated_at: datetime.datetime
    memo: str | None = None
    attendance: str | None = None
    cancel_reason: str | None = None

    def active(self) -> bool:
        return (self.attendance or "").lower() not in CANCELLED_STATUSES

    def overlaps(self, start: datetime.datetime, end: datetime.datetime) -> bool:
        return self.start < end and start < self.end


# ---------------------------------------------------------------------------------------------- request bodies


class InCpt(msgspec.Struct):
    code: str


class InAppointmentAttributes(msgspec.Struct):
    startTime: datetime.datetime | None = None
    endTime: datetime.datetime | None = None
    clinicianId: str | int | None = None
    officeId: str | int | None = None
    cptCodes: list[InCpt] | None = None
    memo: str | None = None
    attendanceStatus: str | None = None
    cancelReason: str | None = None


class InRelationships(msgspec.Struct):
    client: wire.ToOne | None = None


class InAppointment(msgspec.Struct):
    type: str
    attributes: InAppointmentAttributes
    id: str | None = None
    relationships: InRelationships | None = None


class InAppointmentDocument(msgspec.Struct):
    data: InAppointment


class InClientAttributes(msgspec.Struct):
    firstName: str
    lastName: str
    emails: list[wire.ClientEmail] | None = None
    phones: list[wire.ClientPhone] | None = None
    birthDate: datetime.date | None = None
    status: str | None = None


class InClient(msgspec.Struct):
    type: str
    attributes: InClientAttributes


class InClientDocument(msgspec.Struct):
    data: InClient


class AttendanceMark(msgspec.Struct):
    status: str | None


def _decode(body: bytes, type_: type[R]) -> R:
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rpartition("at `$")[2].rstrip("`") if "at `$" in message else ""
        pointer = path.replace(".", "/").replace("[", "/").replace("]", "") or "/data"
        raise ApiError(422, "is invalid", pointer=pointer) from None
    except msgspec.DecodeError:
        raise ApiError(400, "Malformed JSON") from None


# ---------------------------------------------------------------------------------------------- the emulator


class SimplePracticeEmulator(Emulator):
    slug: ClassVar[str] = "simplepractice"

    def __init__(
        self,
        seed: EmulatorSeed,
        *,
        session: str = DEFAULT_SESSION,
        csrf_token: str = DEFAULT_CSRF,
        rate_limit_per_minute: int = 600,
        clock: Callable[[], float] = time.time,
        max_exchanges: int = 5000,
        next_links: bool = False,
        calendar_unpaged: bool = False,
        frontend_versions: frozenset[str] | None = FRONTEND_VERSIONS,
        portal_versions: frozenset[str] | None = PORTAL_VERSIONS,
    ) -> None:
        self.seed = seed
        self.next_links = next_links
        self.calendar_unpaged = calendar_unpaged
        self.frontend_versions = frontend_versions
        self.portal_versions = portal_versions
        self.edge_blocked = False
        self.session = session
        self.csrf_token = csrf_token
        self.session_valid = True
        self.clock = clock
        self.faults = FaultInjector()
        self.traffic = Traffic(max_exchanges)
        self.rate_limiter = WindowLimiter(rate_limit_per_minute, clock)
        self.zone = zoneinfo.ZoneInfo(seed.time_zone)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.clinicians: dict[str, ClinicianRec] = {}
        self.offices: dict[str, OfficeRec] = {}
        self.cpt_codes: dict[str, CptRec] = {}
        self.clients: dict[str, ClientRec] = {}
        self.appointments: dict[str, AppointmentRec] = {}
        self._seed()

    # ------------------------------------------------------------------ plumbing

    @property
    def exchanges(self) -> list[Any]:
        return list(self.traffic.exchanges)

    def _new_id(self, base: int) -> str:
        return str(base + next(self._ids))

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(int(self.clock()), UTC)

    def _seed(self) -> None:
        now = self._now()
        for b in self.seed.businesses:
            office = OfficeRec(self._new_id(4_100_000), b.name)
            self.offices[office.id] = office
        for p in self.seed.practitioners:
            clinician = ClinicianRec(self._new_id(2_200_000), p.first_name, p.last_name, p.email)
            self.clinicians[clinician.id] = clinician
        spare = iter(c for c in CPT_CODES if c not in {s.code for s in self.seed.services})
        for s in self.seed.services:
            code = CptRec(self._new_id(3_800), s.code or next(spare), s.name, s.duration_minutes)
            self.cpt_codes[code.id] = code
        for pt in self.seed.patients:
            client = ClientRec(
                self._new_id(9_000_000),
                pt.first_name,
                pt.last_name,
                [pt.email] if pt.email else [],
                [pt.phone] if pt.phone else [],
                pt.date_of_birth,
                "active",
                now,
                now,
            )
            self.clients[client.id] = client

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

    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        base = base_url.rstrip("/")
        settings = {
            "practice": "demo-practice",
            "office_id": list(self.offices)[business_index],
            "base_url": f"{base}/frontend",
            "portal_url": f"{base}/client-portal-api",
        }
        credentials = {
            "session_cookie": f"{SESSION_COOKIE}={self.session}; sp_locale=en",
            "csrf_token": self.csrf_token,
        }
        return msgspec.json.encode(settings), msgspec.json.encode(credentials)

    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        return msgspec.json.encode(
            {"session_cookie": f"{SESSION_COOKIE}=signed-out-session", "csrf_token": "stale-csrf-token"}
        )

    # ------------------------------------------------------------------ gate: headers, session, CSRF, rate limit

    def _gate(self, scope: Scope) -> RawResponse | None:
        path: str = scope["path"]
        if self.edge_blocked:
            return RawResponse(403, EDGE_BLOCK_HTML, "text/html", list(EDGE_BLOCK_HEADERS))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith("/client-portal-api/"):
            if not headers.get("application-build-version"):
                return _error(400, "Application build version is missing")
            if not headers.get("application-platform"):
                return _error(400, "Application platform is missing")
            if not headers.get("api-version"):
                return _error(400, "Api version is missing")
            return _version_refusal(headers["api-version"], self.portal_versions)
        prefix, _, rest = path.lstrip("/").partition("/")
        if prefix != "frontend" or rest.split("/", 1)[0] not in FRONTEND_RESOURCES:
            return None  # not an API path: the web app's catch-all page comes from routing, whatever the headers
        if not headers.get("api-version"):
            return _error(400, "Api version is missing")
        if (refusal := _version_refusal(headers["api-version"], self.frontend_versions)) is not None:
            return refusal
        if "vnd.api+json" not in headers.get("accept", "") and "*/*" not in headers.get("accept", ""):
            return _error(406, "Not Acceptable")
        cookies = dict(part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part)
        if not self.session_valid or cookies.get(SESSION_COOKIE) != self.session:
            return _error(401, "Unauthorized")
        if scope["method"] not in ("GET", "HEAD") and headers.get("x-csrf-token") != self.csrf_token:
            return _error(403, "Invalid authenticity token")
        reset = self.rate_limiter.hit()
        if reset is not None:
            wait = max(1, math.ceil(reset - self.clock()))
            return _error(429, "Too Many Requests", [("Retry-After", str(wait))])
        return None

    def _rate_limited_fault(self, fault: Fault) -> RawResponse:
        return _error(429, "Too Many Requests", [("Retry-After", str(fault.retry_after))])

    @staticmethod
    def _rejected_fault(fault: Fault) -> RawResponse:
        """A REJECT in the JSON:API error shape the emulator answers everywhere: `title` and `detail` both quote
        `fault.message` (tests put a client's name, e-mail and phone there)."""
        status = fault.status if fault.status != 503 else 422
        text = fault.message or "is invalid"
        error = wire.ErrorObject(status=str(status), title=text, detail=text)
        return RawResponse(status, msgspec.json.encode(wire.ErrorDocument(errors=[error])), JSONAPI)

    # ------------------------------------------------------------------ rendering

    def _local(self, moment: datetime.datetime) -> datetime.datetime:
        return moment.astimezone(self.zone)

    def _appointment(self, a: AppointmentRec) -> wire.Appointment:
        client = self.clients.get(a.client_id)
        cpt = next((c for c in self.cpt_codes.values() if c.code == a.code), None)
        attributes = wire.AppointmentAttributes(
            startTime=self._local(a.start),
            endTime=self._local(a.end),
            duration=int((a.end - a.start).total_seconds() // 60),
            attendanceStatus=a.attendance,
            clinicianId=a.clinician_id,
            officeId=a.office_id,
            officeName=self.offices[a.office_id].name if a.office_id in self.offices else None,
            title=f"{client.first_name} {client.last_name}" if client else None,
            cptCodes=[wire.CptCodeLine(a.code, cpt.description if cpt else None, cpt.rate if cpt else None)],
            fullDay="false",
            cancelReason=a.cancel_reason,
            memo=a.memo,
            createdAt=self._local(a.created_at),
            updatedAt=self._local(a.updated_at),
        )
        relationships = wire.AppointmentRelationships(
            client=wire.ToOne(wire.Identifier("clients", a.client_id)),
            clinician=wire.ToOne(wire.Identifier("clinicians", a.clinician_id)),
            office=wire.ToOne(wire.Identifier("offices", a.office_id)),
        )
        return wire.Appointment(a.id, "appointments", attributes, relationships)

    def _client(self, c: ClientRec) -> wire.Client:
        attributes = wire.ClientAttributes(
            firstName=c.first_name,
            lastName=c.last_name,
            birthDate=c.birth_date,
            emails=[wire.ClientEmail(e, "home") for e in c.emails],
            phones=[wire.ClientPhone(p, "mobile") for p in c.phones],
            status=c.status,
            createdAt=self._local(c.created_at),
            updatedAt=self._local(c.updated_at),
        )
        return wire.Client(c.id, "clients", attributes)

    def _page(self, request: Request[Any, Any, Any], items: Sequence[R]) -> tuple[list[R], wire.Links | None]:
        """One page: `page[size]` at most 50 (50 when absent), no total, `links.next` only in `next_links` mode."""
        try:
            number = max(1, int(request.query_params.get("page[number]") or 1))
            size = min(PAGE_SIZE, max(1, int(request.query_params.get("page[size]") or PAGE_SIZE)))
        except ValueError:
            raise ApiError(400, "Invalid page parameter") from None
        chunk = list(items[(number - 1) * size : number * size])
        if not self.next_links or number * size >= len(items):
            return chunk, None
        query = [(k, v) for k, v in request.query_params.items() if k != "page[number]"]
        query.append(("page[number]", str(number + 1)))
        return chunk, wire.Links(next=f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(query)}")

    # ------------------------------------------------------------------ appointments

    def _find(self, table: dict[str, R], record_id: str) -> R:
        record = table.get(record_id)
        if record is None:
            raise ApiError(404, "Record not found")
        return record

    def list_appointments(self, request: Request[Any, Any, Any]) -> wire.AppointmentListDocument:
        raw = request.query_params.get("filter[timeRange]")
        if not raw or "," not in raw:
            raise ApiError(400, "filter[timeRange] is required")
        try:
            low, high = (datetime.datetime.fromisoformat(part.strip().replace(" ", "+")) for part in raw.split(",", 1))
        except ValueError:
            raise ApiError(400, "filter[timeRange] is invalid") from None
        low = low if low.tzinfo else low.replace(tzinfo=self.zone)
        high = high if high.tzinfo else high.replace(tzinfo=self.zone)
        clinician = request.query_params.get("filter[clinicianId]")
        client = request.query_params.get("filter[clientId]")
        with self._lock:
            found = sorted(
                (
                    a
                    for a in self.appointments.values()
                    if low <= a.start < high
                    and (clinician is None or a.clinician_id == clinician)
                    and (client is None or a.client_id == client)
                ),
                key=lambda a: (a.start, int(a.id)),
            )
            chunk, links = (found, None) if self.calendar_unpaged else self._page(request, found)
            return wire.AppointmentListDocument(data=[self._appointment(a) for a in chunk], links=links)

    def _times(self, attributes: InAppointmentAttributes) -> tuple[datetime.datetime, datetime.datetime]:
        start, end = attributes.startTime, attributes.endTime
        if start is None or start.tzinfo is None:
            raise ApiError(422, "can't be blank or lacks an offset", pointer="/data/attributes/startTime")
        if end is None or end.tzinfo is None:
            raise ApiError(422, "can't be blank or lacks an offset", pointer="/data/attributes/endTime")
        if end <= start:
            raise ApiError(422, "must be after the start time", pointer="/data/attributes/endTime")
        return start.astimezone(UTC), end.astimezone(UTC)

    def create_appointment(self, body: bytes) -> wire.Appointment:
        document = _decode(body, InAppointmentDocument).data
        if document.type != "appointments":
            raise ApiError(409, "Type mismatch", pointer="/data/type")
        a = document.attributes
        with self._lock:
            start, end = self._times(a)
            clinician = str(a.clinicianId) if a.clinicianId is not None else ""
            if clinician not in self.clinicians:
                raise ApiError(422, "Clinician not found", pointer="/data/attributes/clinicianId")
            office = str(a.officeId) if a.officeId is not None else ""
            if office not in self.offices:
                raise ApiError(422, "Office not found", pointer="/data/attributes/officeId")
            codes = {c.code for c in self.cpt_codes.values()}
            if not a.cptCodes or a.cptCodes[0].code not in codes:
                raise ApiError(422, "Service code not found", pointer="/data/attributes/cptCodes")
            rel = document.relationships.client if document.relationships else None
            client = rel.data.id if rel is not None and rel.data is not None else ""
            if client not in self.clients:
                raise ApiError(422, "Client not found", pointer="/data/relationships/client")
            if (fault := self.faults.misstore("POST", "/frontend/appointments")) is not None:
                start, end = fault.misstored(start, end)
            now = self._now()
            record = AppointmentRec(
                self._new_id(70_000_000), client, clinician, office, a.cptCodes[0].code, start, end, now, now, a.memo
            )
            self.appointments[record.id] = record
            return self._appointment(record)

    def update_appointment(self, appointment_id: str, body: bytes) -> wire.Appointment:
        document = _decode(body, InAppointmentDocument).data
        if document.id is not None and document.id != appointment_id:
            raise ApiError(409, "Id mismatch", pointer="/data/id")
        a = document.attributes
        with self._lock:
            record = self._find(self.appointments, appointment_id)
            if a.startTime is not None or a.endTime is not None:
                start, end = self._times(a)
                path = f"/frontend/appointments/{appointment_id}"
                if (start, end) != (record.start, record.end) and (fault := self.faults.misstore("PATCH", path)):
                    start, end = fault.misstored(start, end)
                record.start, record.end = start, end
            if a.clinicianId is not None:
                if str(a.clinicianId) not in self.clinicians:
                    raise ApiError(422, "Clinician not found", pointer="/data/attributes/clinicianId")
                record.clinician_id = str(a.clinicianId)
            if a.memo is not None:
                record.memo = a.memo
            if a.attendanceStatus is not None:
                record.attendance = a.attendanceStatus or None
            if a.cancelReason is not None:
                record.cancel_reason = a.cancelReason
            record.updated_at = self._now()
            return self._appointment(record)

    def mark_attendance(self, appointment_id: str, status: str | None) -> None:
        with self._lock:
            record = self._find(self.appointments, appointment_id)
            record.attendance = status
            record.updated_at = self._now()

    # ------------------------------------------------------------------ clients

    def list_clients(self, request: Request[Any, Any, Any]) -> wire.ClientListDocument:
        search = (request.query_params.get("filter[search]") or "").strip().lower()
        digits = "".join(ch for ch in search if ch.isdigit())
        sort = request.query_params.get("sort") or "lastName"

        def matches(c: ClientRec) -> bool:
            if not search:
                return True
            if search in f"{c.first_name} {c.last_name}".lower() or any(search in e.lower() for e in c.emails):
                return True
            return len(digits) >= 4 and any(digits in "".join(ch for ch in p if ch.isdigit()) for p in c.phones)

        with self._lock:
            found = [c for c in self.clients.values() if matches(c)]
            if sort.lstrip("-") == "updatedAt":
                found.sort(key=lambda c: (c.updated_at, int(c.id)), reverse=sort.startswith("-"))
            else:
                found.sort(key=lambda c: (c.last_name.lower(), c.first_name.lower(), int(c.id)))
            chunk, links = self._page(request, found)
            return wire.ClientListDocument(data=[self._client(c) for c in chunk], links=links)

    def create_client(self, body: bytes) -> wire.Client:
        document = _decode(body, InClientDocument).data
        a = document.attributes
        if document.type != "clients":
            raise ApiError(409, "Type mismatch", pointer="/data/type")
        if not a.firstName.strip():
            raise ApiError(422, "can't be blank", pointer="/data/attributes/firstName")
        if not a.lastName.strip():
            raise ApiError(422, "can't be blank", pointer="/data/attributes/lastName")
        with self._lock:
            now = self._now()
            record = ClientRec(
                self._new_id(9_000_000),
                a.firstName,
                a.lastName,
                [e.email for e in a.emails or []],
                [p.number for p in a.phones or []],
                a.birthDate,
                a.status or "prospective",
                now,
                now,
            )
            self.clients[record.id] = record
            return self._client(record)

    # ------------------------------------------------------------------ client-portal slots

    def slots(self, request: Request[Any, Any, Any]) -> wire.SlotListDocument:
        q = request.query_params
        clinician, cpt_id, office = (
            q.get(f"filter[{name}]") or "" for name in ("clinicianId", "cptCodeId", "officeId")
        )
        for name, value in (("clinicianId", clinician), ("cptCodeId", cpt_id), ("officeId", office)):
            if not value:
                raise ApiError(400, f"filter[{name}] is required")
        try:
            low = datetime.datetime.fromisoformat((q.get("filter[startDate]") or "").replace("Z", "+00:00"))
            high = datetime.datetime.fromisoformat((q.get("filter[endDate]") or "").replace("Z", "+00:00"))
            zone = zoneinfo.ZoneInfo(q.get("filter[timeZone]") or self.seed.time_zone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ApiError(400, "Invalid slot filters") from None
        low = low if low.tzinfo else low.replace(tzinfo=UTC)
        high = high if high.tzinfo else high.replace(tzinfo=UTC)
        with self._lock:
            if clinician not in self.clinicians or cpt_id not in self.cpt_codes or office not in self.offices:
                raise ApiError(404, "Record not found")
            starts = self._free(clinician, self.cpt_codes[cpt_id].duration, low, high)
        duration = datetime.timedelta(minutes=self.cpt_codes[cpt_id].duration)
        days: dict[str, list[wire.Spot]] = {}
        for s in starts:
            local = s.astimezone(zone)
            days.setdefault(local.date().isoformat(), []).append(wire.Spot(local, (s + duration).astimezone(zone)))
        return wire.SlotListDocument(
            data=[
                wire.SlotDay(day, "slots", wire.SlotDayAttributes(spots=spots, date=day))
                for day, spots in sorted(days.items())
            ]
        )

    def _free(
        self, clinician_id: str, minutes: int, low: datetime.datetime, high: datetime.datetime
    ) -> list[datetime.datetime]:
        seed = self.seed
        duration = datetime.timedelta(minutes=minutes)
        step = datetime.timedelta(minutes=seed.slot_step_minutes)
        open_from = datetime.time.fromisoformat(seed.open_from)
        open_until = datetime.time.fromisoformat(seed.open_until)
        now = self._now()
        busy = [a for a in self.appointments.values() if a.clinician_id == clinician_id and a.active()]
        found: list[datetime.datetime] = []
        day = low.astimezone(self.zone).date()
        last = high.astimezone(self.zone).date()
        while day <= last:
            if day.weekday() in seed.open_weekdays:
                slot = datetime.datetime.combine(day, open_from, self.zone)
                closing = datetime.datetime.combine(day, open_until, self.zone)
                while slot + duration <= closing:
                    s = slot.astimezone(UTC)
                    if low <= s < high and s >= now and not any(a.overlaps(s, s + duration) for a in busy):
                        found.append(s)
                    slot = (slot.astimezone(UTC) + step).astimezone(self.zone)
            day += datetime.timedelta(days=1)
        return found

    # ------------------------------------------------------------------ the app

    def app(self) -> litestar.Litestar:
        em = self

        def reply(content: msgspec.Struct, status: int = 200) -> Response[bytes]:
            return Response(msgspec.json.encode(content), status_code=status, media_type=JSONAPI)

        @get("/frontend/appointments", sync_to_thread=False)
        def list_appointments(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.list_appointments(request))

        @post("/frontend/appointments")
        async def create_appointment(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(wire.AppointmentDocument(em.create_appointment(await request.body())), 201)

        @get("/frontend/appointments/{appointment_id:str}", sync_to_thread=False)
        def get_appointment(appointment_id: FromPath[str]) -> Response[bytes]:
            with em._lock:
                return reply(wire.AppointmentDocument(em._appointment(em._find(em.appointments, appointment_id))))

        @patch("/frontend/appointments/{appointment_id:str}")
        async def update_appointment(request: Request[Any, Any, Any], appointment_id: FromPath[str]) -> Response[bytes]:
            return reply(wire.AppointmentDocument(em.update_appointment(appointment_id, await request.body())))

        @get("/frontend/clients", sync_to_thread=False)
        def list_clients(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.list_clients(request))

        @post("/frontend/clients")
        async def create_client(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(wire.ClientDocument(em.create_client(await request.body())), 201)

        @get("/frontend/clients/{client_id:str}", sync_to_thread=False)
        def get_client(client_id: FromPath[str]) -> Response[bytes]:
            with em._lock:
                return reply(wire.ClientDocument(em._client(em._find(em.clients, client_id))))

        @get("/frontend/team-members", sync_to_thread=False)
        def team_members(request: Request[Any, Any, Any]) -> Response[bytes]:
            members = [
                wire.TeamMember(
                    c.id, "teamMembers", wire.TeamMemberAttributes(c.first_name, c.last_name, c.email, True, True)
                )
                for c in em.clinicians.values()
            ]
            chunk, links = em._page(request, members)
            return reply(wire.TeamMemberListDocument(chunk, links))

        @get("/frontend/offices", sync_to_thread=False)
        def offices(request: Request[Any, Any, Any]) -> Response[bytes]:
            items = [
                wire.Office(o.id, "offices", wire.OfficeAttributes(o.name, "1 Main St", "Springfield", "IL", "62701"))
                for o in em.offices.values()
            ]
            chunk, links = em._page(request, items)
            return reply(wire.OfficeListDocument(chunk, links))

        @get("/frontend/cpt-codes", sync_to_thread=False)
        def cpt_codes(request: Request[Any, Any, Any]) -> Response[bytes]:
            items = [
                wire.CptCode(
                    c.id, "cptCodes", wire.CptCodeAttributes(c.description, c.duration, c.code, c.rate, "false")
                )
                for c in em.cpt_codes.values()
            ]
            chunk, links = em._page(request, items)
            return reply(wire.CptCodeListDocument(chunk, links))

        @get("/client-portal-api/slots", sync_to_thread=False)
        def slots(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.slots(request))

        @post(CONTROL_PREFIX + "/session/expire", status_code=204, sync_to_thread=False)
        def expire_session() -> None:
            """Emulator control: the clinician signed out, or the session timed out."""
            em.session_valid = False

        @post(CONTROL_PREFIX + "/session/restore", status_code=204, sync_to_thread=False)
        def restore_session() -> None:
            em.session_valid = True

        @post(CONTROL_PREFIX + "/edge/block", status_code=204, sync_to_thread=False)
        def edge_block() -> None:
            """Emulator control: the CDN/WAF in front of SimplePractice refuses every request with its 403 page."""
            em.edge_blocked = True

        @post(CONTROL_PREFIX + "/edge/unblock", status_code=204, sync_to_thread=False)
        def edge_unblock() -> None:
            em.edge_blocked = False

        @post(CONTROL_PREFIX + "/appointments/{appointment_id:str}/attendance", status_code=204, sync_to_thread=False)
        def mark_attendance(appointment_id: FromPath[str], data: JSONBody[AttendanceMark]) -> None:
            """Emulator control: the clinic marking Show / No Show in its own screens."""
            em.mark_attendance(appointment_id, data.status)

        def api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
            return Response(exc.body, status_code=exc.status, media_type=JSONAPI)

        def catch_all(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
            if exc.status_code in (404, 405):
                return Response(SPA_HTML, status_code=200, media_type="text/html")  # the web app's catch-all
            return Response(
                ApiError(exc.status_code, str(exc.detail)).body, status_code=exc.status_code, media_type=JSONAPI
            )

        handlers = [
            list_appointments, create_appointment, get_appointment, update_appointment,
            list_clients, create_client, get_client, team_members, offices, cpt_codes, slots,
            expire_session, restore_session, edge_block, edge_unblock, mark_attendance,
        ]  # fmt: skip
        return build_emulator_app(
            self,
            handlers,
            traffic=self.traffic,
            rate_limited=self._rate_limited_fault,
            rejected=self._rejected_fault,
            gate=self._gate,
            exception_handlers={ApiError: api_error, HTTPException: catch_all},
        )

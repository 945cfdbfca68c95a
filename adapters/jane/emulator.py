"""An in-memory Jane clinic answering the staff web endpoints and the public booking endpoints the adapter uses.

What it enforces, as the evidence describes Jane (reference/notes/evidence-2026-11.md §4, then emr-jane-sp-pb-ghl.md
§2.2) and, where both are silent, as adapter.py's docstring sides: the `_jane_session` cookie (401 on the admin API,
a redirect to /login from the admin page, idle expiry), the CSRF token from the admin page's meta tag on every admin
write (HTML 422 otherwise), holds (`state: reserved`) that lapse after `hold_seconds` unless booked,
`reserved -> booked -> cancelled`, the openings endpoint's `location_id` (404 without) and 7-day limit (422 beyond),
a per-clinic request budget (429 with `Retry-After` and `X-Throttle-Match`), offsets on every time.

Shapes follow the live captures: `GET /api/v2/treatments` is `{treatments: [...]}` with `scheduled_duration` in
minutes, staff members carry `all_treatment_ids` (`legacy_catalog=True` serves the booking page's older
`treatment_duration` seconds and `treatment_ids` instead); the hold answers the captured record (`location_name`,
`booker_type`, `capacity`, `room_id`, ...); the book step takes that record back with `treatment_id`, `patient_id` and
the `patient` object set, and refuses it without them. The staff calendar accepts overlaps, as Jane's does for staff.
MISSTORE faults apply where a time is stored: the hold (POST), the book step and the move (PUT). REJECT faults answer
in the emulator's own refusal shapes (`rejection`). The book step stores the record's `notes_text` (where the gateway
writes its operation marker); a hold carries none.
"""

from __future__ import annotations

import datetime
import itertools
import re
import secrets
import threading
import time
import zoneinfo
from collections.abc import Callable
from typing import Any, ClassVar

import litestar
import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from adapters.emulation import (
    Emulator,
    EmulatorSeed,
    EmulatorStats,
    Fault,
    FaultInjector,
    RawResponse,
    Scope,
    Traffic,
    build_emulator_app,
)
from adapters.jane import wire

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"
DEFAULT_SESSION = "demo-jane-session-0123456789abcdef"
SIGN_IN = msgspec.json.encode({"error": "You need to sign in or sign up before continuing."})
CSRF_REFUSED = b"<html><body><h1>The change you wanted was rejected.</h1></body></html>"
NOT_FOUND_HTML = b"<html><body><h1>The page you were looking for doesn't exist.</h1></body></html>"
INACTIVE = frozenset({"cancelled", "archived"})


class ApiError(Exception):
    def __init__(self, status: int, body: bytes, content_type: str = JSON) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


def unprocessable(field: str, message: str) -> ApiError:
    return ApiError(422, msgspec.json.encode({"errors": {field: [message]}}))


def not_found() -> ApiError:
    return ApiError(404, msgspec.json.encode({"error": "Not Found"}))


def rejection(fault: Fault) -> RawResponse:
    """A REJECT fault in the shapes this emulator answers refusals with: a 422 names the record's fields as Rails
    does (`{"errors": {"base": [<text>]}}`), any other status carries `{"error": <text>}`."""
    text = fault.message or "is invalid"
    status = fault.status if fault.status != 503 else 422
    body = {"errors": {"base": [text]}} if status == 422 else {"error": text}
    return RawResponse(status, msgspec.json.encode(body))


class Session(msgspec.Struct, kw_only=True):
    csrf: str
    expires_at: float


class Treatment(msgspec.Struct, kw_only=True):
    """`GET /api/v2/treatments` items as two clinics' live answers show them (evidence-2026-11 §4.2)."""

    id: int
    name: str
    price: str
    scheduled_duration: int  # minutes
    book_online: bool = True
    discipline_id: int | None = None
    staff_member_id: int | None = None
    location_ids: list[int] = msgspec.field(default_factory=list)
    capacity: int = 1
    online_only: bool = False


class LegacyTreatment(msgspec.Struct, kw_only=True):
    """The booking page's `routerOptions` treatments (`legacy_catalog=True`)."""

    id: int
    name: str
    treatment_duration: int  # seconds
    discipline_id: int | None = None
    call_to_book: bool = False
    book_online: bool = True


class StaffMember(msgspec.Struct, kw_only=True):
    """`GET /api/v2/staff_members` items as a live clinic's answer shows them (the live-built client's types.ts);
    `email` only when Jane sends it (ClinicSync's booking body names practitioners by it)."""

    id: int
    full_name: str
    first_name: str
    last_name: str
    professional_name: str
    prefix: str | None = None
    suffix: str | None = None
    email: str | None = None
    allow_online_booking: bool = True
    all_treatment_ids: list[int] = msgspec.field(default_factory=list)
    treatment_order: list[int] = msgspec.field(default_factory=list)
    location_ids: list[int] = msgspec.field(default_factory=list)


class LegacyStaffMember(msgspec.Struct, kw_only=True):
    id: int
    full_name: str
    first_name: str
    last_name: str
    professional_name: str
    email: str | None = None
    location_ids: list[int] = msgspec.field(default_factory=list)
    treatment_ids: list[int] = msgspec.field(default_factory=list)


class Stored(wire.Appointment):
    """The appointment record with the captured members the adapter does not read (handed back on the book step)."""

    location_name: str | None = None
    booker_id: int | None = None
    booker_type: str | None = None
    capacity: int = 1
    room_id: int | None = None
    break_: bool = msgspec.field(default=False, name="break")


class PatientRef(msgspec.Struct, kw_only=True):
    id: int


class BookedRecord(msgspec.Struct, kw_only=True):
    """What the book step reads from the record it is sent: the live capture's minimum ("treatment_id, patient_id
    (+ patient), staff_member_id, location_id, start_at, end_at")."""

    location_id: int
    staff_member_id: int
    start_at: datetime.datetime
    end_at: datetime.datetime
    treatment_id: int
    patient_id: int
    patient: PatientRef
    notes_text: str | None = None


class BookBody(msgspec.Struct, kw_only=True):
    book: bool
    appointment: BookedRecord
    browser_tab_id: str


class SentRecord(msgspec.Struct, kw_only=True):
    appointment: dict[str, object]


BOOK_REQUIRES = ("treatment_id", "patient_id", "patient", "staff_member_id", "location_id", "start_at", "end_at")


class JaneEmulator(Emulator):
    slug: ClassVar[str] = "jane"

    def __init__(
        self,
        seed: EmulatorSeed,
        *,
        session_cookie: str = DEFAULT_SESSION,
        session_idle_seconds: int = 12 * 3600,
        hold_seconds: int = 600,
        requests_per_window: int = 600,
        window_seconds: int = 300,
        clock: Callable[[], float] = time.time,
        max_exchanges: int = 5000,
        legacy_catalog: bool = False,
    ) -> None:
        self.seed = seed
        self.legacy_catalog = legacy_catalog
        self.clock = clock
        self.zone = zoneinfo.ZoneInfo(seed.time_zone)
        self.faults = FaultInjector()
        self.traffic = Traffic(max_exchanges)
        self.session_idle_seconds = session_idle_seconds
        self.hold_seconds = hold_seconds
        self.requests_per_window = requests_per_window
        self.window_seconds = window_seconds
        self._window: tuple[int, int] = (0, 0)  # (window number, requests in it)
        self._lock = threading.RLock()
        self.session_cookie = session_cookie
        self.sessions: dict[str, Session] = {
            session_cookie: Session(csrf=secrets.token_urlsafe(24), expires_at=clock() + session_idle_seconds)
        }
        self.locations: dict[int, wire.Location] = {}
        self.staff: dict[int, StaffMember] = {}
        self.treatments: dict[int, Treatment] = {}
        self.patients: dict[int, wire.Patient] = {}
        self.appointments: dict[int, Stored] = {}
        self._held_at: dict[int, float] = {}
        self._patient_ids = itertools.count(1001)
        self._appointment_ids = itertools.count(5001)
        self._seed()

    # ------------------------------------------------------------------ plumbing

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(int(self.clock()), self.zone)

    def _seed(self) -> None:
        now = self._now()
        for i, business in enumerate(self.seed.businesses, start=1):
            self.locations[i] = wire.Location(id=i, name=business.name, time_zone=self.seed.time_zone)
        treatment_ids = [101 + i for i in range(len(self.seed.services))]
        for i, s in enumerate(self.seed.services):
            self.treatments[treatment_ids[i]] = Treatment(
                id=treatment_ids[i],
                name=s.name,
                price=f"{80 + 10 * i}.0",
                scheduled_duration=s.duration_minutes,
                discipline_id=1,
                location_ids=list(self.locations),
            )
        for i, p in enumerate(self.seed.practitioners, start=1):
            self.staff[i] = StaffMember(
                id=i,
                full_name=f"{p.first_name} {p.last_name}",
                first_name=p.first_name,
                last_name=p.last_name,
                professional_name=f"{p.first_name} {p.last_name}",
                email=p.email,
                location_ids=list(self.locations),
                all_treatment_ids=treatment_ids,
                treatment_order=treatment_ids,
            )
        for pt in self.seed.patients:
            new_id = next(self._patient_ids)
            self.patients[new_id] = wire.Patient(
                id=new_id,
                first_name=pt.first_name,
                last_name=pt.last_name,
                name=f"{pt.first_name} {pt.last_name}",
                email=pt.email,
                dob=pt.date_of_birth,
                mobile_phone=pt.phone,
                member_since=now.date(),
                updated_at=now,
            )

    def served_treatments(self) -> list[Treatment] | list[LegacyTreatment]:
        with self._lock:
            if not self.legacy_catalog:
                return list(self.treatments.values())
            return [
                LegacyTreatment(
                    id=t.id,
                    name=t.name,
                    treatment_duration=t.scheduled_duration * 60,
                    discipline_id=t.discipline_id,
                    book_online=t.book_online,
                )
                for t in self.treatments.values()
            ]

    def served_staff(self) -> list[StaffMember] | list[LegacyStaffMember]:
        with self._lock:
            if not self.legacy_catalog:
                return list(self.staff.values())
            return [
                LegacyStaffMember(
                    id=s.id,
                    full_name=s.full_name,
                    first_name=s.first_name,
                    last_name=s.last_name,
                    professional_name=s.professional_name,
                    email=s.email,
                    location_ids=s.location_ids,
                    treatment_ids=s.all_treatment_ids,
                )
                for s in self.staff.values()
            ]

    def stats(self) -> EmulatorStats:
        with self._lock:
            self._lapse_holds()
            total = len(self.appointments)
            active = sum(1 for a in self.appointments.values() if a.state not in INACTIVE and a.state != "reserved")
        return EmulatorStats(
            requests=self.traffic.requests,
            appointments=total,
            active_appointments=active,
            rate_limited=self.traffic.rate_limited,
        )

    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        location_id = list(self.locations)[business_index]
        settings = {"clinic": "demo", "location_id": str(location_id), "base_url": base_url, "phone_region": "AU"}
        credentials = {"session_cookie": self.session_cookie}
        return msgspec.json.encode(settings), msgspec.json.encode(credentials)

    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        return msgspec.json.encode({"session_cookie": "signed-out-session-00000000"})

    # Test and demo controls (the clinic's own actions, not API calls).

    def expire_sessions(self) -> None:
        with self._lock:
            self.sessions.clear()

    def rotate_csrf(self) -> None:
        with self._lock:
            for session in self.sessions.values():
                session.csrf = secrets.token_urlsafe(24)

    def holds(self) -> list[Stored]:
        with self._lock:
            self._lapse_holds()
            return [a for a in self.appointments.values() if a.state == "reserved"]

    def _lapse_holds(self) -> None:
        cutoff = self.clock() - self.hold_seconds
        for hold_id in [i for i, at in self._held_at.items() if at <= cutoff]:
            del self._held_at[hold_id]
            appointment = self.appointments.get(hold_id)
            if appointment is not None and appointment.state == "reserved":
                del self.appointments[hold_id]

    # ------------------------------------------------------------------ gate: session, CSRF, request budget

    def _session(self, headers: dict[str, str]) -> Session | None:
        match = re.search(r"(?:^|;\s*)_jane_session=([^;]+)", headers.get("cookie", ""))
        if match is None:
            return None
        with self._lock:
            session = self.sessions.get(match.group(1))
            now = self.clock()
            if session is None or session.expires_at <= now:
                return None
            session.expires_at = now + self.session_idle_seconds
            return session

    def _gate(self, scope: Scope) -> RawResponse | None:
        path: str = scope["path"]
        throttled = self._throttle()
        if throttled is not None:
            return throttled
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path == "/admin":
            if self._session(headers) is None:
                return RawResponse(302, b"", HTML, [("Location", "/login")])
            return None
        if not path.startswith("/admin/"):
            return None
        session = self._session(headers)
        if session is None:
            return RawResponse(401, SIGN_IN)
        if scope["method"] != "GET" and (
            headers.get("x-csrf-token") != session.csrf or headers.get("x-requested-with") != "XMLHttpRequest"
        ):
            return RawResponse(422, CSRF_REFUSED, HTML)
        return None

    def _throttle(self) -> RawResponse | None:
        now = self.clock()
        window = int(now // self.window_seconds)
        with self._lock:
            number, count = self._window
            count = count + 1 if number == window else 1
            self._window = (window, count)
        if count <= self.requests_per_window:
            return None
        return self._too_many(int((window + 1) * self.window_seconds - now) + 1)

    def _too_many(self, retry_after: int) -> RawResponse:
        body = msgspec.json.encode({"error": "Too many requests"})
        return RawResponse(429, body, JSON, [("Retry-After", str(retry_after)), ("X-Throttle-Match", "admin/clinic")])

    def _rate_limited_fault(self, fault: Fault) -> RawResponse:
        return self._too_many(fault.retry_after)

    # ------------------------------------------------------------------ state changes

    def _appointment(self, appointment_id: int) -> Stored:
        self._lapse_holds()
        found = self.appointments.get(appointment_id)
        if found is None:
            raise not_found()
        return found

    def _body(self, raw: bytes, type_: type[Any]) -> Any:
        try:
            return msgspec.json.decode(raw, type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(400, msgspec.json.encode({"error": f"bad request: {exc}"})) from None

    def _local(self, moment: datetime.datetime, field: str) -> datetime.datetime:
        if moment.tzinfo is None:
            raise unprocessable(field, "must carry an offset")
        return moment.astimezone(self.zone)

    def _misstore(
        self, method: str, path: str, start: datetime.datetime, end: datetime.datetime
    ) -> tuple[datetime.datetime, datetime.datetime]:
        fault = self.faults.misstore(method, path)
        return fault.misstored(start, end) if fault is not None else (start, end)

    def create_hold(self, raw: bytes) -> Stored:
        body: wire.ProvisionalCreate = self._body(raw, wire.ProvisionalCreate)
        a = body.appointment
        with self._lock:
            if a.location_id not in self.locations:
                raise unprocessable("location_id", "is invalid")
            if a.staff_member_id not in self.staff:
                raise unprocessable("staff_member_id", "is invalid")
            start, end = self._local(a.start_at, "start_at"), self._local(a.end_at, "end_at")
            if end <= start:
                raise unprocessable("end_at", "must be after start_at")
            start, end = self._misstore("POST", "/admin/api/v2/appointments", start, end)
            now = self._now()
            new_id = next(self._appointment_ids)
            hold = Stored(
                id=new_id,
                state="booked" if body.book else "reserved",
                booked=body.book,
                start_at=start,
                end_at=end,
                staff_member_id=a.staff_member_id,
                location_id=a.location_id,
                location_name=self.locations[a.location_id].name,
                duration=int((end - start).total_seconds()),
                booker_id=a.staff_member_id,
                booker_type="StaffMember",
                room_id=a.room_id,
                created_at=now,
                updated_at=now,
            )
            self.appointments[new_id] = hold
            self._held_at[new_id] = self.clock()
            return hold

    def book(self, appointment_id: int, raw: bytes) -> Stored:
        """The book step: the record sent back must carry the capture's minimum, `patient` naming `patient_id`."""
        sent: SentRecord = self._body(raw, SentRecord)
        for name in BOOK_REQUIRES:
            if sent.appointment.get(name) is None:
                raise unprocessable(name, "can't be blank")
        body: BookBody = self._body(raw, BookBody)
        b = body.appointment
        with self._lock:
            hold = self._appointment(appointment_id)
            if hold.state != "reserved":
                raise unprocessable("state", "is not a provisional appointment")
            if b.treatment_id not in self.treatments:
                raise unprocessable("treatment_id", "is invalid")
            if b.patient_id not in self.patients:
                raise unprocessable("patient_id", "is invalid")
            if b.patient.id != b.patient_id:
                raise unprocessable("patient", "does not match patient_id")
            if b.staff_member_id not in self.staff:
                raise unprocessable("staff_member_id", "is invalid")
            if b.location_id not in self.locations:
                raise unprocessable("location_id", "is invalid")
            start, end = self._local(b.start_at, "start_at"), self._local(b.end_at, "end_at")
            if end <= start:
                raise unprocessable("end_at", "must be after start_at")
            start, end = self._misstore("PUT", f"/admin/api/v3/appointments/{appointment_id}/book", start, end)
            now = self._now()
            hold.start_at, hold.end_at = start, end
            hold.staff_member_id, hold.location_id = b.staff_member_id, b.location_id
            hold.location_name = self.locations[b.location_id].name
            hold.treatment_id, hold.patient_id, hold.notes_text = b.treatment_id, b.patient_id, b.notes_text
            hold.duration = int((end - start).total_seconds())
            if body.book:
                hold.state, hold.booked, hold.booked_at = "booked", True, now
                hold.booking_type = "one_on_one_booking"
                self._held_at.pop(appointment_id, None)
            hold.updated_at = now
            return hold

    def move(self, appointment_id: int, raw: bytes) -> Stored:
        body: wire.MoveRequest = self._body(raw, wire.MoveRequest)
        with self._lock:
            appointment = self._appointment(appointment_id)
            if appointment.state in INACTIVE:
                raise unprocessable("state", "cancelled appointments cannot be moved")
            m = body.appointment
            if m.staff_member_id not in self.staff:
                raise unprocessable("staff_member_id", "is invalid")
            start, end = self._local(m.start_at, "start_at"), self._local(m.end_at, "end_at")
            if end <= start:
                raise unprocessable("end_at", "must be after start_at")
            start, end = self._misstore("PUT", f"/admin/api/v2/appointments/{appointment_id}", start, end)
            appointment.start_at, appointment.end_at, appointment.staff_member_id = start, end, m.staff_member_id
            appointment.duration = int((end - start).total_seconds())
            if m.notes_text is not None:
                appointment.notes_text = m.notes_text
            appointment.updated_at = self._now()
            return appointment

    def cancel(self, appointment_id: int, raw: bytes) -> Stored:
        body: wire.CancelRequest = self._body(raw, wire.CancelRequest)
        with self._lock:
            appointment = self._appointment(appointment_id)
            if appointment.state == "reserved":
                raise unprocessable("state", "provisional appointments are deleted, not cancelled")
            if appointment.state in INACTIVE:
                raise unprocessable("state", "is already cancelled")
            now = self._now()
            appointment.state, appointment.cancelled_at = "cancelled", now
            appointment.cancelled_reason = body.cancelled_reason
            appointment.updated_at = now
            return appointment

    def delete(self, appointment_id: int) -> None:
        with self._lock:
            self._appointment(appointment_id)
            del self.appointments[appointment_id]
            self._held_at.pop(appointment_id, None)

    def mark(self, appointment_id: int, state: str) -> None:
        """Emulator control: the front desk marking arrival or no-show."""
        with self._lock:
            appointment = self._appointment(appointment_id)
            now = self._now()
            appointment.state = state
            if state == "arrived":
                appointment.arrived_at = now
            elif state == "no_show":
                appointment.no_show_at = now
            appointment.updated_at = now

    def create_patient(self, raw: bytes) -> wire.Patient:
        body: wire.PatientCreate = self._body(raw, wire.PatientCreate)
        p = body.patient
        if not p.first_name.strip() or not p.last_name.strip():
            raise unprocessable("first_name" if not p.first_name.strip() else "last_name", "can't be blank")
        with self._lock:
            now = self._now()
            new_id = next(self._patient_ids)
            patient = wire.Patient(
                id=new_id,
                first_name=p.first_name,
                last_name=p.last_name,
                name=f"{p.first_name} {p.last_name}",
                email=p.email,
                dob=p.dob,
                mobile_phone=p.mobile_phone,
                member_since=now.date(),
                updated_at=now,
            )
            self.patients[new_id] = patient
            return patient

    def lookup(self, raw: bytes) -> list[wire.Patient]:
        body: wire.PatientLookup = self._body(raw, wire.PatientLookup)
        q = body.q.strip().lower()
        digits = re.sub(r"\D", "", q)
        with self._lock:
            found = []
            for p in self.patients.values():
                phones = [re.sub(r"\D", "", n) for n in (p.mobile_phone, p.home_phone, p.work_phone) if n]
                text = f"{p.first_name} {p.last_name} {p.email or ''}".lower()
                if (q and q in text) or (len(digits) >= 6 and any(digits in n or n in digits for n in phones if n)):
                    found.append(p)
            return found[: max(1, body.limit)]

    def calendar(self, params: dict[str, str]) -> list[Stored]:
        try:
            location = int(params["location_id"])
            first = datetime.date.fromisoformat(params["start_date"])
            last = datetime.date.fromisoformat(params["end_date"])
            staff = int(params["staff_member_id"]) if params.get("staff_member_id") else None
            since = datetime.datetime.fromisoformat(params["updated_since"]) if params.get("updated_since") else None
        except (KeyError, ValueError):
            raise ApiError(
                400, msgspec.json.encode({"error": "location_id, start_date and end_date are required"})
            ) from None
        with self._lock:
            self._lapse_holds()
            return [
                a
                for a in sorted(self.appointments.values(), key=lambda a: (a.start_at, a.id))
                if a.location_id == location
                and first <= a.start_at.date() <= last
                and (staff is None or a.staff_member_id == staff)
                and (since is None or (a.updated_at is not None and a.updated_at >= since))
            ]

    def openings(self, params: dict[str, str]) -> list[wire.StaffOpenings]:
        if not params.get("location_id", "").isdigit() or int(params["location_id"]) not in self.locations:
            raise ApiError(404, NOT_FOUND_HTML, HTML)
        location = int(params["location_id"])
        try:
            first = datetime.date.fromisoformat(params.get("start_date") or params.get("date") or "")
            num_days = int(params.get("num_days", "1"))
            treatment = self.treatments[int(params["treatment_id"])]
        except (KeyError, ValueError):
            raise ApiError(400, msgspec.json.encode({"error": "start_date and treatment_id are required"})) from None
        if not 1 <= num_days <= 7:
            raise unprocessable("num_days", "must be between 1 and 7")
        staff_filter = int(params["staff_member_id"]) if params.get("staff_member_id", "").isdigit() else None
        seed = self.seed
        duration = datetime.timedelta(minutes=treatment.scheduled_duration)
        step = datetime.timedelta(minutes=seed.slot_step_minutes)
        open_from = datetime.time.fromisoformat(seed.open_from)
        open_until = datetime.time.fromisoformat(seed.open_until)
        now = self._now()
        result = []
        with self._lock:
            self._lapse_holds()
            for staff in self.staff.values():
                if staff_filter is not None and staff.id != staff_filter:
                    continue
                if location not in staff.location_ids or treatment.id not in staff.all_treatment_ids:
                    continue
                busy = [
                    a for a in self.appointments.values() if a.staff_member_id == staff.id and a.state not in INACTIVE
                ]
                openings: list[wire.Opening] = []
                shifts: list[wire.Shift] = []
                for offset in range(num_days):
                    day = first + datetime.timedelta(days=offset)
                    if day.weekday() not in seed.open_weekdays:
                        continue
                    slot = datetime.datetime.combine(day, open_from, self.zone)
                    closing = datetime.datetime.combine(day, open_until, self.zone)
                    shifts.append(wire.Shift(start_at=slot, end_at=closing))
                    while slot + duration <= closing:
                        end = slot + duration
                        if slot >= now and not any(a.start_at < end and a.end_at > slot for a in busy):
                            openings.append(
                                wire.Opening(
                                    staff_member_id=staff.id,
                                    location_id=location,
                                    treatment_id=treatment.id,
                                    duration=treatment.scheduled_duration * 60,
                                    start_at=slot,
                                    end_at=end,
                                    status="available",
                                )
                            )
                        # Wall-clock stepping in the zone: across a DST change the instants follow local time.
                        slot = (slot.replace(tzinfo=None) + step).replace(tzinfo=self.zone)
                result.append(
                    wire.StaffOpenings(
                        id=staff.id,
                        full_name=staff.full_name,
                        first_date=openings[0].start_at.date() if openings else None,
                        openings=openings,
                        shifts=shifts,
                    )
                )
        return result

    # ------------------------------------------------------------------ the app

    def app(self) -> litestar.Litestar:
        em = self

        def reply(content: object, status: int = 200) -> Response[bytes]:
            return Response(msgspec.json.encode(content), status_code=status, media_type=JSON)

        def params(request: Request[Any, Any, Any]) -> dict[str, str]:
            return {k: v for k, v in request.query_params.items()}

        @get("/admin", sync_to_thread=False)
        def admin_page(request: Request[Any, Any, Any]) -> Response[bytes]:
            session = em._session({k.lower(): v for k, v in request.headers.items()})
            token = session.csrf if session is not None else ""
            page = f'<html><head><meta name="csrf-token" content="{token}" /></head><body>Jane</body></html>'
            return Response(page.encode(), media_type=HTML)

        @get("/api/v2/locations", sync_to_thread=False)
        def locations() -> Response[bytes]:
            return reply(list(em.locations.values()))

        @get("/api/v2/staff_members", sync_to_thread=False)
        def staff_members() -> Response[bytes]:
            return reply(em.served_staff())

        @get("/api/v2/treatments", sync_to_thread=False)
        def treatments() -> Response[bytes]:
            return reply({"treatments": em.served_treatments()})

        @get("/api/v2/openings", sync_to_thread=False)
        def openings(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.openings(params(request)))

        @post("/admin/api/v2/patient_lookup/lookup")
        async def lookup(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.lookup(await request.body()))

        @post("/admin/api/v2/patients")
        async def create_patient(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.create_patient(await request.body()), 201)

        @get("/admin/api/v2/patients/{patient_id:int}", sync_to_thread=False)
        def get_patient(patient_id: FromPath[int]) -> Response[bytes]:
            with em._lock:
                if patient_id not in em.patients:
                    raise not_found()
                return reply(em.patients[patient_id])

        @get("/admin/api/v2/patients/{patient_id:int}/appointments", sync_to_thread=False)
        def patient_appointments(patient_id: FromPath[int]) -> Response[bytes]:
            with em._lock:
                if patient_id not in em.patients:
                    raise not_found()
                mine = [a for a in em.appointments.values() if a.patient_id == patient_id]
                return reply(sorted(mine, key=lambda a: (a.start_at, a.id)))

        @get("/admin/api/v2/appointments", sync_to_thread=False)
        def calendar(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.calendar(params(request)))

        @post("/admin/api/v2/appointments")
        async def create_hold(request: Request[Any, Any, Any]) -> Response[bytes]:
            return reply(em.create_hold(await request.body()), 201)

        @put("/admin/api/v2/appointments/{appointment_id:int}")
        async def move(request: Request[Any, Any, Any], appointment_id: FromPath[int]) -> Response[bytes]:
            return reply(em.move(appointment_id, await request.body()))

        @put("/admin/api/v2/appointments/{appointment_id:int}/cancel")
        async def cancel(request: Request[Any, Any, Any], appointment_id: FromPath[int]) -> Response[bytes]:
            return reply(em.cancel(appointment_id, await request.body()))

        @delete("/admin/api/v2/appointments/{appointment_id:int}", status_code=204, sync_to_thread=False)
        def remove(appointment_id: FromPath[int]) -> None:
            em.delete(appointment_id)

        @get("/admin/api/v3/appointments/{appointment_id:int}", sync_to_thread=False)
        def get_appointment(appointment_id: FromPath[int]) -> Response[bytes]:
            with em._lock:
                return reply(em._appointment(appointment_id))

        @put("/admin/api/v3/appointments/{appointment_id:int}/book")
        async def book(request: Request[Any, Any, Any], appointment_id: FromPath[int]) -> Response[bytes]:
            return reply(em.book(appointment_id, await request.body()))

        def api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
            return Response(exc.body, status_code=exc.status, media_type=exc.content_type)

        def html_not_found(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
            if exc.status_code in (404, 405):
                return Response(NOT_FOUND_HTML, status_code=404, media_type=HTML)
            return Response(msgspec.json.encode({"error": exc.detail}), status_code=exc.status_code, media_type=JSON)

        handlers = [
            admin_page, locations, staff_members, treatments, openings, lookup, create_patient, get_patient,
            patient_appointments, calendar, create_hold, move, cancel, remove, get_appointment, book,
        ]  # fmt: skip
        return build_emulator_app(
            self,
            handlers,
            traffic=self.traffic,
            rate_limited=self._rate_limited_fault,
            rejected=rejection,
            gate=self._gate,
            exception_handlers={ApiError: api_error, HTTPException: html_not_found},
        )

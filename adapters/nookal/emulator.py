"""A stand-in for Nookal's v2 REST API (`/production/v2/<method>`), faithful to what the notes and evidence document.

Served methods: verify, getLocations, getPractitioners, getAppointmentTypes, getAppointments, getPatients,
searchPatients, addPatient, addAppointmentBooking, cancelAppointment, rebookAppointment,
getAppointmentAvailabilities. Each answers GET (query string) and POST (form body) alike.

Documented behaviour it reproduces: `api_key` as a parameter (headers are ignored; missing -> L000_1 "Missing
variable: api_key", unknown -> L003, disabled -> L004); keys scoped to the locations ticked on them; the envelope
`{"status", "data": {"api_call", "results"}, "details": {"currentItems", "totalItems"}, "settings": {"currentPage",
"nextPage", "pageLength"}}`; ids and flags as strings (`"0"`/`"1"`), absent values as null; clinic-local dates and
times with no offset; `page`/`page_length` paging with `settings.nextPage`; inclusive `date_from`/`date_to` on
getAppointments; `last_modified` filters; overlapping bookings refused unless `allow_overlap_bookings`.

Seen live (evidence-2026-11 §2, a live account on 2026-08-03): a method name Nookal does not know is answered with
its themed HTML 404 page (status 404, text/html), before any key check, not with a JSON failure; so is
rebookAppointment in `rebook="absent"` mode. `getAppointmentTypes` is the real name (there is no `getServices`).

Faults: MISSTORE (`FaultInjector.misstore`) applies to addAppointmentBooking and rebookAppointment, where the time is
stored: the appointment keeps the shifted wall time and the answer is the usual one. REJECT answers Nookal's failure
envelope, its `errorMessage` and an alert quoting the fault's message (a refusal naming a patient). APPLY_LATE works
as in every emulator (504 at once, the write applied later).

`notes` on addAppointmentBooking is stored verbatim (the gateway's marker travels in it) and copied by a rebook that
makes a new appointment.

Every side it takes on an UNCONFIRMED fact is listed in adapters/nookal/adapter.py's docstring.
"""

from __future__ import annotations

import datetime
import itertools
import secrets
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import litestar
import msgspec
from litestar import Request, Response, route
from litestar.params import FromPath

from adapters.emulation import (
    Emulator,
    EmulatorSeed,
    EmulatorStats,
    Fault,
    FaultInjector,
    RawResponse,
    Traffic,
    build_emulator_app,
)

JSON = "application/json"
HTML = "text/html; charset=UTF-8"
PREFIX = "/production/v2"
DEFAULT_API_KEY = "emulator-nookal-key-0001"
STAMP = "%Y-%m-%d %H:%M:%S"
MAX_AVAILABILITY_DAYS = 62
RebookMode = Literal["in_place", "new_id", "absent"]
# Nookal's themed 404 page, reduced to the phrases integrators match on (evidence-2026-11 §2.2).
NOT_FOUND_PAGE = (
    b"<!DOCTYPE html><html><head><title>404 Page Not Found | Nookal</title></head><body>"
    b"<h1>Hold it right there!</h1><p>404 Page Not Found</p>"
    b"<p>Looks like you've found a page that doesn't exist.</p></body></html>"
)


class ApiFailure(Exception):
    def __init__(self, code: str, message: str, alerts: list[str] | None = None, status: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.alerts, self.status = code, message, alerts or [], status


class UnknownMethod(Exception):
    """A method name Nookal does not serve: answered with its HTML 404 page."""


def missing(name: str) -> ApiFailure:
    return ApiFailure("L000_1", "Missing required variables", [f"Missing variable: {name}"])


def invalid(name: str) -> ApiFailure:
    return ApiFailure("V001", "Invalid value", [f"Invalid variable: {name}"])


def s(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass
class LocationRec:
    id: str
    name: str
    time_zone: str
    modified: str


@dataclass
class PractitionerRec:
    id: str
    first_name: str
    last_name: str
    email: str
    modified: str


@dataclass
class TypeRec:
    id: str
    name: str
    duration: int


@dataclass
class PatientRec:
    id: str
    first_name: str
    last_name: str
    email: str | None
    mobile: str | None
    dob: datetime.date | None
    location_id: str
    created: str
    modified: str


@dataclass
class AppointmentRec:
    id: str
    patient_id: str
    practitioner_id: str
    location_id: str
    type_id: str
    date: datetime.date
    start: datetime.time
    end: datetime.time
    notes: str | None
    created: str
    modified: str
    cancelled: bool = False
    cancellation_date: str | None = None
    arrived: bool = False
    dna: bool = False

    def overlaps(self, date: datetime.date, start: datetime.time, end: datetime.time) -> bool:
        return not self.cancelled and self.date == date and self.start < end and self.end > start


class NookalEmulator(Emulator):
    slug: ClassVar[str] = "nookal"

    def __init__(
        self,
        seed: EmulatorSeed,
        *,
        api_key: str | None = None,
        extra_keys: dict[str, list[int]] | None = None,
        rebook: RebookMode = "in_place",
        country: str = "Australia",
        clock: Callable[[], float] = time.time,
        max_exchanges: int = 5000,
    ) -> None:
        self.seed = seed
        self.clock = clock
        self.rebook_mode: RebookMode = rebook
        self.country = country
        self.faults = FaultInjector()
        self.traffic = Traffic(max_exchanges)
        self.zone = zoneinfo.ZoneInfo(seed.time_zone)
        self._lock = threading.RLock()
        self._verb = "POST"  # the HTTP method of the call being handled (under the lock), for MISSTORE matching
        self._ids = itertools.count(1)
        self.locations: dict[str, LocationRec] = {}
        self.practitioners: dict[str, PractitionerRec] = {}
        self.types: dict[str, TypeRec] = {}
        self.patients: dict[str, PatientRec] = {}
        self.appointments: dict[str, AppointmentRec] = {}
        self.disabled_keys: set[str] = set()
        self._seed()
        # Each emulated account has its own key, as each Nookal account does: the adapter shares what getLocations
        # showed per base URL and key for the whole process, and a later emulator may be served at a reused port.
        api_key = api_key or f"{DEFAULT_API_KEY}-{secrets.token_hex(6)}"
        # key -> the locations ticked on it (by index into the seeded businesses)
        self.keys: dict[str, set[str]] = {api_key: set(self.locations)}
        ordered = list(self.locations)
        for key, indexes in (extra_keys or {}).items():
            self.keys[key] = {ordered[i] for i in indexes}
        self.api_key = api_key

    # ------------------------------------------------------------------ plumbing

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _local_now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC).astimezone(self.zone)

    def _stamp(self, previous: str | None = None) -> str:
        """`lastModified` moves forward on every change, even two changes within one second."""
        now = self._local_now().replace(tzinfo=None, microsecond=0)
        if previous is not None:
            before = datetime.datetime.strptime(previous, STAMP)
            if now <= before:
                now = before + datetime.timedelta(seconds=1)
        return now.strftime(STAMP)

    def _seed(self) -> None:
        now = self._stamp()
        for b in self.seed.businesses:
            loc = LocationRec(self._new_id(), b.name, self.seed.time_zone, now)
            self.locations[loc.id] = loc
        for p in self.seed.practitioners:
            prac = PractitionerRec(self._new_id(), p.first_name, p.last_name, p.email, now)
            self.practitioners[prac.id] = prac
        for sv in self.seed.services:
            t = TypeRec(self._new_id(), sv.name, sv.duration_minutes)
            self.types[t.id] = t
        first = next(iter(self.locations))
        for pt in self.seed.patients:
            rec = PatientRec(
                self._new_id(), pt.first_name, pt.last_name, pt.email, pt.phone, pt.date_of_birth, first, now, now
            )
            self.patients[rec.id] = rec

    def stats(self) -> EmulatorStats:
        with self._lock:
            total = len(self.appointments)
            active = sum(1 for a in self.appointments.values() if not a.cancelled)
        return EmulatorStats(
            requests=self.traffic.requests,
            appointments=total,
            active_appointments=active,
            rate_limited=self.traffic.rate_limited,
        )

    def location_ids(self) -> list[str]:
        return list(self.locations)

    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        settings = {"location_id": self.location_ids()[business_index], "base_url": base_url.rstrip("/") + PREFIX}
        return msgspec.json.encode(settings), msgspec.json.encode({"api_key": self.api_key})

    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        return msgspec.json.encode({"api_key": "not-a-nookal-key-" + self.api_key[:4]})

    def _rate_limited(self, fault: Fault) -> RawResponse:
        return RawResponse(
            429, b"Too Many Requests", "text/plain; charset=utf-8", [("Retry-After", str(fault.retry_after))]
        )

    def _server_error(self, fault: Fault) -> RawResponse:
        # v3's transient 5xx answers are HTML pages (N-CEO); v2 is assumed alike.
        body = f"<html><body><h1>{fault.status} Service Unavailable</h1></body></html>".encode()
        return RawResponse(fault.status, body, "text/html; charset=utf-8")

    def _rejected(self, fault: Fault) -> RawResponse:
        """REJECT in Nookal's failure envelope: `errorMessage` and an alert quote `fault.message` (prose such as a
        patient's name, as a real refusal may), under an invented code, at the fault's HTTP status (422 if unset)."""
        text = fault.message or "Invalid value"
        body = {
            "status": "failure",
            "details": {"errorMessage": text, "errorCode": "V001", "alerts": [text, "Invalid variable: first_name"]},
        }
        status = fault.status if fault.status != 503 else 422
        return RawResponse(status, msgspec.json.encode(body), JSON)

    # ------------------------------------------------------------------ rendering

    def _location(self, loc: LocationRec) -> dict[str, Any]:
        return {
            "ID": loc.id, "Name": loc.name, "AddressLine1": "1 Emulator Street", "AddressLine2": None,
            "AddressLine3": None, "City": "Melbourne", "State": "VIC", "Country": self.country, "Postcode": "3000",
            "Telephone": "0390000000", "Email": None, "Website": None, "Timezone": loc.time_zone,
            "lockNewPatientsToLocation": "0",
        }  # fmt: skip

    def _practitioner(self, p: PractitionerRec) -> dict[str, Any]:
        return {
            "ID": p.id, "FirstName": p.first_name, "LastName": p.last_name, "Title": None, "Speciality": None,
            "Email": p.email, "locations": list(self.locations), "ShowInDiary": "1", "status": "1",
        }  # fmt: skip

    def _type(self, t: TypeRec) -> dict[str, Any]:
        return {
            "ID": t.id, "Name": t.name, "Description": None, "Duration": str(t.duration), "Price": "0.00",
            "hasTax": "0", "Locations": list(self.locations),
        }  # fmt: skip

    def _patient(self, p: PatientRec) -> dict[str, Any]:
        return {
            "ID": p.id, "Title": None, "FirstName": p.first_name, "MiddleName": None, "Nickname": None,
            "LastName": p.last_name, "DOB": p.dob.isoformat() if p.dob else None, "Gender": None, "Email": p.email,
            "Mobile": p.mobile, "Home": None, "Work": None, "LocationID": p.location_id, "active": "1",
            "deceased": "0", "DateCreated": p.created, "DateModified": p.modified,
        }  # fmt: skip

    def _appointment(self, a: AppointmentRec) -> dict[str, Any]:
        return {
            "ID": a.id, "patientID": a.patient_id, "appointmentDate": a.date.isoformat(),
            "appointmentStartTime": a.start.strftime("%H:%M:%S"), "appointmentEndTime": a.end.strftime("%H:%M:%S"),
            "locationID": a.location_id, "appointmentType": self.types[a.type_id].name, "appointmentTypeID": a.type_id,
            "practitionerID": a.practitioner_id, "arrived": "1" if a.arrived else "0", "DNA": "1" if a.dna else "0",
            "cancelled": "1" if a.cancelled else "0", "cancellationDate": a.cancellation_date,
            "emailReminderSent": "0", "invoiceGenerated": "0", "Notes": a.notes, "dateCreated": a.created,
            "lastModified": a.modified, "status": "Cancelled" if a.cancelled else "Pending",
        }  # fmt: skip

    # ------------------------------------------------------------------ request handling

    def _authorise(self, params: dict[str, str]) -> set[str]:
        key = params.get("api_key")
        if not key:
            raise missing("api_key")
        if key in self.disabled_keys:
            raise ApiFailure("L004", "API key is not active")
        if key not in self.keys:
            raise ApiFailure("L003", "Invalid API key")
        return self.keys[key]

    @staticmethod
    def _required(params: dict[str, str], *names: str) -> list[str]:
        for name in names:
            if not params.get(name):
                raise missing(name)
        return [params[n] for n in names]

    @staticmethod
    def _date(params: dict[str, str], name: str) -> datetime.date | None:
        raw = params.get(name)
        if not raw:
            return None
        try:
            return datetime.date.fromisoformat(raw)
        except ValueError:
            raise invalid(name) from None

    @staticmethod
    def _time(params: dict[str, str], name: str) -> datetime.time:
        try:
            return datetime.time.fromisoformat(params[name])
        except ValueError:
            raise invalid(name) from None

    def _scoped_location(self, params: dict[str, str], scope: set[str]) -> str:
        (location_id,) = self._required(params, "location_id")
        if location_id not in self.locations:
            raise invalid("location_id")
        if location_id not in scope:
            raise ApiFailure("L005", "The API key does not have access to this location")
        return location_id

    def _page(self, params: dict[str, str], items: list[dict[str, Any]], key: str, method: str) -> dict[str, Any]:
        try:
            page = max(1, int(params.get("page") or "1"))
            length = min(200, max(1, int(params.get("page_length") or "100")))
        except ValueError:
            raise invalid("page") from None
        chunk = items[(page - 1) * length : page * length]
        more = page * length < len(items)
        return {
            "status": "success",
            "data": {"api_call": method, "results": {key: chunk}},
            "details": {"currentItems": len(chunk), "totalItems": str(len(items))},
            "settings": {"currentPage": str(page), "nextPage": str(page + 1) if more else None, "pageLength": length},
        }

    @staticmethod
    def _one(method: str, results: dict[str, Any]) -> dict[str, Any]:
        return {"status": "success", "data": {"api_call": method, "results": results}, "details": {}}

    def handle(self, method: str, params: dict[str, str], verb: str = "POST") -> dict[str, Any]:
        handler = self.METHODS.get(method)
        if handler is None or (method == "rebookAppointment" and self.rebook_mode == "absent"):
            raise UnknownMethod(method)
        scope = self._authorise(params)
        with self._lock:
            self._verb = verb
            return handler(self, method, params, scope)

    def _stored_times(
        self, method: str, date: datetime.date, start: datetime.time, end: datetime.time
    ) -> tuple[datetime.date, datetime.time, datetime.time]:
        """The wall date and times this write stores: as asked, or as a MISSTORE fault misreads them."""
        fault = self.faults.misstore(self._verb, f"{PREFIX}/{method}")
        if fault is None:
            return date, start, end
        begin, finish = fault.misstored(datetime.datetime.combine(date, start), datetime.datetime.combine(date, end))
        return begin.date(), begin.time(), finish.time()

    # ------------------------------------------------------------------ methods

    def verify(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        return self._one(method, {"verify": True})

    def get_locations(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        since = params.get("last_modified")
        found = [
            self._location(loc)
            for loc in self.locations.values()
            if loc.id in scope and (not since or loc.modified >= since)
        ]
        return self._page(params, found, "locations", method)

    def get_practitioners(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        since = params.get("last_modified")
        found = [self._practitioner(p) for p in self.practitioners.values() if not since or p.modified >= since]
        return self._page(params, found, "practitioners", method)

    def get_appointment_types(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        return self._page(params, [self._type(t) for t in self.types.values()], "services", method)

    def get_appointments(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        locations = {self._scoped_location(params, scope)} if params.get("location_id") else scope
        date_from, date_to = self._date(params, "date_from"), self._date(params, "date_to")
        since = params.get("last_modified")
        found = []
        for a in self.appointments.values():
            if a.location_id not in locations:
                continue
            if params.get("patient_id") and a.patient_id != params["patient_id"]:
                continue
            if params.get("practitioner_id") and a.practitioner_id != params["practitioner_id"]:
                continue
            if (date_from and a.date < date_from) or (date_to and a.date > date_to):  # inclusive (N-CEO)
                continue
            if since and a.modified < since:
                continue
            found.append(a)
        found.sort(key=lambda a: (a.date, a.start, int(a.id)))
        return self._page(params, [self._appointment(a) for a in found], "appointments", method)

    def get_patients(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        since = params.get("last_modified")
        found = [self._patient(p) for p in self.patients.values() if not since or p.modified >= since]
        return self._page(params, found, "patients", method)

    def search_patients(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        criteria = {
            k: params[k] for k in ("patient_id", "email", "first_name", "last_name", "date_of_birth") if params.get(k)
        }
        if not criteria:
            raise missing("patient_id")

        def matches(p: PatientRec) -> bool:
            values = {
                "patient_id": p.id, "email": p.email or "", "first_name": p.first_name, "last_name": p.last_name,
                "date_of_birth": p.dob.isoformat() if p.dob else "",
            }  # fmt: skip
            return all(values[k].lower() == v.strip().lower() for k, v in criteria.items())

        found = [self._patient(p) for p in self.patients.values() if matches(p)]
        return self._page(params, found, "patients", method)

    def add_patient(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        first, last = self._required(params, "first_name", "last_name")
        dob = self._date(params, "date_of_birth")
        now = self._stamp()
        rec = PatientRec(
            self._new_id(), first.strip(), last.strip(), params.get("email") or None, params.get("mobile") or None,
            dob, next(iter(scope), next(iter(self.locations))), now, now,
        )  # fmt: skip
        self.patients[rec.id] = rec
        return self._one(method, {"patient_id": rec.id})

    def _check_slot(
        self,
        practitioner_id: str,
        date: datetime.date,
        start: datetime.time,
        end: datetime.time,
        allow_overlap: bool,
        exclude: str | None = None,
    ) -> None:
        if allow_overlap:
            return
        for a in self.appointments.values():
            if a.id != exclude and a.practitioner_id == practitioner_id and a.overlaps(date, start, end):
                raise ApiFailure("A002", "The practitioner is not available at that time (overlapping booking)")

    def _end(self, type_id: str, date: datetime.date, start: datetime.time) -> datetime.time:
        begin = datetime.datetime.combine(date, start)
        end = begin + datetime.timedelta(minutes=self.types[type_id].duration)
        if end.date() != date:
            raise invalid("start_time")
        return end.time()

    def add_booking(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        location_id = self._scoped_location(params, scope)
        self._required(params, "appointment_date", "start_time", "patient_id", "practitioner_id")
        date = self._date(params, "appointment_date")
        assert date is not None
        start = self._time(params, "start_time")
        patient_id, practitioner_id = params["patient_id"], params["practitioner_id"]
        type_id = params.get("appointment_type_id") or next(iter(self.types))
        if patient_id not in self.patients:
            raise invalid("patient_id")
        if practitioner_id not in self.practitioners:
            raise invalid("practitioner_id")
        if type_id not in self.types:
            raise invalid("appointment_type_id")
        date, start, end = self._stored_times(method, date, start, self._end(type_id, date, start))
        allow = params.get("allow_overlap_bookings", "").lower() in ("1", "true")
        self._check_slot(practitioner_id, date, start, end, allow)
        now = self._stamp()
        rec = AppointmentRec(
            self._new_id(), patient_id, practitioner_id, location_id, type_id, date, start, end,
            params.get("notes") or None, now, now,
        )  # fmt: skip
        self.appointments[rec.id] = rec
        return self._one(method, {"appointment_id": rec.id})

    def _owned(self, params: dict[str, str], scope: set[str]) -> AppointmentRec:
        appointment_id, patient_id = self._required(params, "appointment_id", "patient_id")
        rec = self.appointments.get(appointment_id)
        if rec is None or rec.location_id not in scope:
            raise ApiFailure("A001", "Appointment not found")
        if rec.patient_id != patient_id:
            raise ApiFailure("A004", "The patient does not match the appointment")
        return rec

    def _cancel(self, rec: AppointmentRec) -> None:
        rec.cancelled = True
        rec.cancellation_date = self._local_now().date().isoformat()
        rec.modified = self._stamp(rec.modified)

    def cancel_appointment(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        rec = self._owned(params, scope)
        if rec.cancelled:
            raise ApiFailure("A003", "The appointment is already cancelled")
        self._cancel(rec)
        return self._one(method, {"ID": rec.id, "patientID": rec.patient_id})

    def rebook_appointment(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        rec = self._owned(params, scope)
        if rec.cancelled:
            raise ApiFailure("A003", "The appointment is already cancelled")
        location_id = params.get("location_id") or rec.location_id
        if location_id not in scope:
            raise ApiFailure("L005", "The API key does not have access to this location")
        date = self._date(params, "appointment_date") or rec.date
        start = self._time(params, "start_time") if params.get("start_time") else rec.start
        practitioner_id = params.get("practitioner_id") or rec.practitioner_id
        if practitioner_id not in self.practitioners:
            raise invalid("practitioner_id")
        date, start, end = self._stored_times(method, date, start, self._end(rec.type_id, date, start))
        cancel_first = params.get("cancel_first", "").lower() in ("1", "true")
        exclude = rec.id if (self.rebook_mode == "in_place" or cancel_first) else None
        self._check_slot(practitioner_id, date, start, end, False, exclude)
        if self.rebook_mode == "in_place":
            rec.location_id, rec.date, rec.start, rec.end = location_id, date, start, end
            rec.practitioner_id = practitioner_id
            rec.modified = self._stamp(rec.modified)
            return self._one(method, {"appointment_id": rec.id})
        self._cancel(rec)
        now = self._stamp()
        new = AppointmentRec(
            self._new_id(), rec.patient_id, practitioner_id, location_id, rec.type_id, date, start, end, rec.notes,
            now, now,
        )  # fmt: skip
        self.appointments[new.id] = new
        return self._one(method, {"appointment_id": new.id})

    def availabilities(self, method: str, params: dict[str, str], scope: set[str]) -> dict[str, Any]:
        location_id = self._scoped_location(params, scope)
        (practitioner_id,) = self._required(params, "practitioner_id")
        date_from, date_to = self._date(params, "date_from"), self._date(params, "date_to")
        if date_from is None:
            raise missing("date_from")
        if date_to is None:
            raise missing("date_to")
        if date_to < date_from or (date_to - date_from).days >= MAX_AVAILABILITY_DAYS:
            raise invalid("date_to")
        seed = self.seed
        step = datetime.timedelta(minutes=seed.slot_step_minutes)
        open_from, open_until = (
            datetime.time.fromisoformat(seed.open_from),
            datetime.time.fromisoformat(seed.open_until),
        )
        now = self._local_now()
        busy = [a for a in self.appointments.values() if a.practitioner_id == practitioner_id and not a.cancelled]
        result: dict[str, dict[str, str]] = {}
        day = date_from
        while day <= date_to:
            if day.weekday() in seed.open_weekdays:
                cells: dict[str, str] = {}
                cell = datetime.datetime.combine(day, open_from)
                closing = datetime.datetime.combine(day, open_until)
                while cell + step <= closing:
                    starts_at = cell.replace(tzinfo=self.zone)
                    taken = any(a.overlaps(day, cell.time(), (cell + step).time()) for a in busy)
                    free = not taken and starts_at >= now
                    cells[cell.strftime("%H:%M")] = "available" if free else "unavailable"
                    cell += step
                result[day.isoformat()] = cells
            day += datetime.timedelta(days=1)
        return self._one(
            method,
            {
                "date_from": date_from.isoformat(), "date_to": date_to.isoformat(), "location_id": location_id,
                "practitioner_id": practitioner_id, "availabilities": result,
            },
        )  # fmt: skip

    METHODS: ClassVar[dict[str, Callable[[NookalEmulator, str, dict[str, str], set[str]], dict[str, Any]]]] = {
        "verify": verify,
        "getLocations": get_locations,
        "getPractitioners": get_practitioners,
        "getAppointmentTypes": get_appointment_types,
        "getAppointments": get_appointments,
        "getPatients": get_patients,
        "searchPatients": search_patients,
        "addPatient": add_patient,
        "addAppointmentBooking": add_booking,
        "cancelAppointment": cancel_appointment,
        "rebookAppointment": rebook_appointment,
        "getAppointmentAvailabilities": availabilities,
    }

    # ------------------------------------------------------------------ control (the clinic's own screens)

    def mark(self, appointment_id: str, *, arrived: bool = False, dna: bool = False) -> None:
        with self._lock:
            rec = self.appointments[appointment_id]
            rec.arrived, rec.dna = arrived, dna
            rec.modified = self._stamp(rec.modified)

    def edit_location(self, location_id: str, *, time_zone: str) -> None:
        """The clinic moves the location to another zone in Nookal's settings (its wall times stay as stored)."""
        with self._lock:
            rec = self.locations[location_id]
            rec.time_zone = time_zone
            rec.modified = self._stamp(rec.modified)

    def edit_patient(self, patient_id: str, *, email: str | None = None, mobile: str | None = None) -> None:
        with self._lock:
            rec = self.patients[patient_id]
            rec.email = email if email is not None else rec.email
            rec.mobile = mobile if mobile is not None else rec.mobile
            rec.modified = self._stamp(rec.modified)

    # ------------------------------------------------------------------ the app

    def app(self) -> litestar.Litestar:
        em = self

        @route(PREFIX + "/{method:str}", http_method=["GET", "POST"])
        async def call(request: Request[Any, Any, Any], method: FromPath[str]) -> Response[bytes]:
            params = dict(request.query_params.items())
            if request.method == "POST":
                form = await request.form()
                params.update({k: str(v) for k, v in form.items()})
            try:
                body = em.handle(method, params, request.method)
                status = 200
            except UnknownMethod:
                return Response(NOT_FOUND_PAGE, status_code=404, media_type=HTML)
            except ApiFailure as exc:
                body = {
                    "status": "failure",
                    "details": {"errorMessage": exc.message, "errorCode": exc.code, "alerts": exc.alerts},
                }
                status = exc.status
            return Response(msgspec.json.encode(body), status_code=status, media_type=JSON)

        def not_found(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
            return Response(NOT_FOUND_PAGE, status_code=404, media_type=HTML)

        return build_emulator_app(
            self,
            [call],
            traffic=self.traffic,
            rate_limited=self._rate_limited,
            server_error=self._server_error,
            rejected=self._rejected,
            exception_handlers={404: not_found, 405: not_found},
        )

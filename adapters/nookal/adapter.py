"""The Nookal adapter (v2 REST API): one gateway location is one Nookal location (`settings.location_id`).

Nookal v2 has no fetch-by-id for appointments, no way to change an appointment in place that anyone has shown to
work, no idempotency keys and no change feed besides `last_modified` filters. So this adapter finds an appointment
by searching the location's calendar (by patient when it knows the patient), checks the practitioner's calendar
before every write that takes a slot, sends `allow_overlap_bookings=0`, reconciles writes whose answer was lost,
and polls `last_modified` for changes. Times go to and from Nookal as the location's wall clock (`Timezone` from
`getLocations`), converted with zoneinfo.

UNCONFIRMED statements from the notes (reference/notes/emr-cliniko-nookal.md §2) this adapter and its emulator take
a side on:
- HTTP status of a failure envelope: the emulator answers failures with HTTP 200 (auth, validation, conflicts) or
  404 (unknown method); the adapter reads `status` in the body whatever the HTTP status.
- Error codes other than L000_1/L003/L004: the emulator invents L001 (unknown method), L005 (location not covered
  by the key), A001 (no such appointment), A002 (overlapping booking), A003 (already cancelled), A004 (patient does
  not match the appointment), V001 (invalid value). The adapter never relies on them: it classifies by context
  (e.g. re-checks the calendar after a refused booking) and treats only L003/L004 as auth failures.
- A key that does not cover the location: the emulator leaves that location out of `getLocations` (and refuses
  location-scoped calls with L005); the adapter checks `getLocations` and raises AuthFailed naming the cause.
- Shape of `getAppointmentAvailabilities.availabilities`: the emulator serves `{"YYYY-MM-DD": {"HH:MM":
  "available"|"unavailable"}}` in 15-minute cells over the opening hours (the shape N-3L reads); the adapter also
  accepts date -> list of free times, lists of slot objects and v3's `range.slots` (mapping.free_cells). Slots are
  not filtered by appointment type (no such parameter is confirmed): an appointment needs consecutive free cells.
  The emulator requires `practitioner_id` and at most 62 days per call; the adapter asks 28 days at a time.
- `addAppointmentBooking` has no end/duration parameter: the end comes from the appointment type, so a booking
  with an explicit end that differs is refused by the adapter. The emulator refuses an overlap unless
  `allow_overlap_bookings` is true.
- `rebookAppointment`: the emulator moves the appointment and keeps its id by default (`rebook="in_place"`), and
  can instead cancel it and create a new one (`"new_id"`) or not know the method (`"absent"`). The adapter handles
  all three: a new id comes back with `replaces_id`; when rebook fails and nothing changed it falls back to
  book-then-cancel (also a new id). Its answer is read like addAppointmentBooking (`appointment_id`).
- `cancelAppointment`: requires `patient_id` (sent; looked up when the caller did not give it); no reason field,
  so the reason is echoed in the cancel response only and is not stored in Nookal. The emulator answers
  `{"ID", "patientID"}` (the SDK class's fields).
- `updateAppointmentBooking` is not used (its existence is unconfirmed), so notes cannot be changed on an
  existing appointment (Unsupported).
- `addPatient`: the phone goes in `mobile`; `date_of_birth` is optional in the emulator (N-AE marks it required;
  if Nookal says it is missing the caller gets a clear Rejected).
- `searchPatients`: the emulator accepts any of email / first_name / last_name / date_of_birth, ANDed, exact and
  case-insensitive (N-AE documents only the full combination). No phone search (no capability).
- `last_modified`: `YYYY-MM-DD HH:MM:SS` clinic-local, records modified at or after it; the emulator applies it to
  getAppointments and getPatients. Near a DST fall-back the adapter asks from an hour earlier.
- Pagination: the emulator's default page length is 100 (max 200); `settings.nextPage` is null on the last page.
- Rate limits are unpublished: the emulator only rate-limits under fault injection (429 + Retry-After).
- Appointment `status` values: "Pending" (booked), "Cancelled"; `arrived`/`DNA` flags as "0"/"1".
- Phones are stored as typed; the adapter formats them E.164 using the location's Country.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import ClassVar, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from adapters.base import AdapterContext, Capability, EMRAdapter
from adapters.errors import (
    AdapterError,
    AuthFailed,
    NotFound,
    OutcomeUnknown,
    Rejected,
    SlotUnavailable,
    Unsupported,
)
from adapters.http import DEFAULT_RETRY, RetryPolicy
from adapters.nookal import mapping, wire
from adapters.nookal.client import NookalClient, NookalFailure
from adapters.nookal.settings import NookalCredentials, NookalSettings
from adapters.pacing import RateLimit
from adapters.reconcile import AmbiguousWrite, reconciled, unknown
from schemas.appointments import Appointment, AppointmentStatus
from schemas.availability import Slot
from schemas.catalog import Location, Practitioner, Service
from schemas.changes import ChangeSet
from schemas.commands import (
    AppointmentQuery,
    AvailabilityQuery,
    BookCommand,
    CancelCommand,
    NewPatient,
    RescheduleCommand,
)
from schemas.patients import Patient, PatientQuery

T = TypeVar("T")

ID_RE = re.compile(r"^\d{1,12}$")
AVAILABILITY_DAYS = 28
# Where to look for an appointment by id (days from today, clinic-local), nearest first: v2 cannot fetch by id.
SEARCH_WINDOWS = ((-1, 13), (14, 90), (-30, -2), (91, 400), (-400, -31))
KNOWN_PATIENTS = 2000


EMR_NAME = "Nookal"


class NookalAdapter(EMRAdapter[NookalSettings, NookalCredentials]):
    """Nookal v2 REST.

    FIND_PATIENT_BY_PHONE is absent: v2 has no documented phone search; a phone narrows a search by name or e-mail.
    """

    slug: ClassVar[str] = "nookal"
    display_name: ClassVar[str] = "Nookal"
    verified_against: ClassVar[str] = (
        "unverified against a live account: Nookal v2 as integrators' code uses it (PHP SDK 0.1.14, Elixir client "
        "fixtures, a modeled OpenAPI); several shapes UNCONFIRMED (see the adapter's docstring)"
    )
    settings_type: ClassVar[type[NookalSettings]] = NookalSettings
    credentials_type: ClassVar[type[NookalCredentials]] = NookalCredentials
    # Nookal publishes no rate limit; integrators pace themselves at ~2 requests/s. An idle poll costs 2 requests
    # (patients and appointments by last_modified): every 120 s is negligible, and well inside ClinicSync's 5-45 min.
    default_poll_seconds: ClassVar[int] = 120
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=2.0, burst=5),)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.BOOK,
            Capability.GET_APPOINTMENT,
            Capability.RESCHEDULE,
            Capability.CANCEL,
            Capability.LIST_APPOINTMENTS,
            Capability.AVAILABILITY,
            Capability.NEXT_AVAILABILITY,
            Capability.FIND_PATIENT_BY_EMAIL,
            Capability.FIND_PATIENT_BY_NAME,
            Capability.CREATE_PATIENT,
            Capability.CATALOG,
            Capability.CHANGES_SINCE,
            Capability.RECONCILES_TIMED_OUT_CREATE,
            # The adapter checks the calendar first and sends allow_overlap_bookings=0.
            Capability.REJECTS_DOUBLE_BOOKING,
        }
    )

    def __init__(
        self,
        settings: NookalSettings,
        credentials: NookalCredentials,
        http: httpx.AsyncClient,
        context: AdapterContext,
    ) -> None:
        super().__init__(settings, credentials, http, context)
        self.client = NookalClient(http, settings, credentials, DEFAULT_RETRY)
        self._location: wire.Location | None = None
        self._durations: dict[str, int] = {}
        self._patients: OrderedDict[str, str] = OrderedDict()  # appointment id -> patient id (ids only)
        self._rebook_works = True

    @property
    def retry(self) -> RetryPolicy:
        return self.client.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.client.retry = policy

    # ------------------------------------------------------------------------------------------------ location

    @property
    def location_id(self) -> str:
        return self.settings.location_id

    async def _get_location(self) -> wire.Location:
        """This location from getLocations; a key that does not list it does not cover it."""
        if self._location is None:
            found = await self.client.read_all("getLocations", wire.Locations, lambda r: r.locations)
            for location in found:
                if mapping.ident(location.ID) == self.location_id:
                    self._location = location
                    break
            else:
                raise AuthFailed(
                    f"the Nookal API key does not cover location {self.location_id}: tick that location on the key "
                    "(Nookal Setup → Connections → API Keys) or check the location's location_id"
                )
        return self._location

    async def _zone(self) -> ZoneInfo:
        location = await self._get_location()
        for name in (mapping.text(location.Timezone), self.context.time_zone):
            if name:
                try:
                    return ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError):
                    continue
        return ZoneInfo("UTC")

    async def _region(self) -> str | None:
        return mapping.region_of(mapping.text((await self._get_location()).Country))

    async def _appointment(self, a: wire.Appointment, replaces_id: str | None = None) -> Appointment:
        result = mapping.appointment_of(a, await self._zone(), self.context.location_id)
        self._remember(result.id, result.patient_id)
        if replaces_id is not None and replaces_id != result.id:
            result.replaces_id = replaces_id
        return result

    def _remember(self, appointment_id: str, patient_id: str) -> None:
        if appointment_id and patient_id:
            self._patients[appointment_id] = patient_id
            self._patients.move_to_end(appointment_id)
            while len(self._patients) > KNOWN_PATIENTS:
                self._patients.popitem(last=False)

    # ------------------------------------------------------------------------------------------------ reads

    async def _appointments(self, params: list[tuple[str, str]]) -> list[wire.Appointment]:
        """This location's appointments matching `params` (other locations' never leak through)."""
        found = await self.client.read_all(
            "getAppointments", wire.Appointments, lambda r: r.appointments, [("location_id", self.location_id), *params]
        )
        return [a for a in found if mapping.ident(a.locationID) in ("", self.location_id)]

    async def _fetch(self, appointment_id: str, patient_id: str | None = None) -> wire.Appointment:
        if not ID_RE.match(appointment_id):
            raise NotFound("Nookal appointment ids are numeric")
        await self._get_location()
        patient_id = patient_id or self._patients.get(appointment_id)
        if patient_id is not None and ID_RE.match(patient_id):
            for a in await self._appointments([("patient_id", patient_id)]):
                if mapping.ident(a.ID) == appointment_id:
                    return a
        zone = await self._zone()
        today = dt.datetime.now(zone).date()
        for first, last in SEARCH_WINDOWS:
            window = [
                ("date_from", (today + dt.timedelta(days=first)).isoformat()),
                ("date_to", (today + dt.timedelta(days=last)).isoformat()),
            ]
            for a in await self._appointments(window):
                if mapping.ident(a.ID) == appointment_id:
                    return a
        raise NotFound("Nookal has no such appointment at this location")

    async def _duration(self, service_id: str) -> int:
        if service_id not in self._durations:
            await self.list_services()
        if service_id not in self._durations:
            raise Rejected(f"Nookal has no appointment type {service_id} at this location")
        return self._durations[service_id]

    async def _overlapping(
        self, practitioner_id: str, start: dt.datetime, end: dt.datetime, exclude_id: str | None = None
    ) -> list[wire.Appointment]:
        """The practitioner's live appointments overlapping [start, end) at this location."""
        zone = await self._zone()
        first, _ = mapping.wall(start, zone)
        last, _ = mapping.wall(end, zone)
        found = await self._appointments(
            [("practitioner_id", practitioner_id), ("date_from", first), ("date_to", last)]
        )
        result = []
        for a in found:
            if mapping.ident(a.ID) == exclude_id or mapping.status_of(a) is AppointmentStatus.CANCELLED:
                continue
            if mapping.ident(a.practitionerID) not in ("", practitioner_id):
                continue
            a_start, a_end = mapping.times_of(a, zone)
            if a_start < end and a_end > start:
                result.append(a)
        return result

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return await self._appointment(await self._fetch(appointment_id))

    async def list_appointments(self, query: AppointmentQuery) -> list[Appointment]:
        zone = await self._zone()
        params: list[tuple[str, str]] = []
        for name, value in (("patient_id", query.patient_id), ("practitioner_id", query.practitioner_id)):
            if value is not None:
                if not ID_RE.match(value):
                    return []
                params.append((name, value))
        start = mapping.utc(query.start_from, zone) if query.start_from is not None else None
        end = mapping.utc(query.start_to, zone) if query.start_to is not None else None
        if start is not None:
            params.append(("date_from", mapping.wall(start, zone)[0]))
        if end is not None:
            params.append(("date_to", mapping.wall(end, zone)[0]))  # inclusive (N-CEO)
        found = [await self._appointment(a) for a in await self._appointments(params)]
        if query.patient_id is not None:
            found = [a for a in found if a.patient_id == query.patient_id]
        if query.practitioner_id is not None:
            found = [a for a in found if a.practitioner_id == query.practitioner_id]
        found = [a for a in found if (start is None or a.start >= start) and (end is None or a.start < end)]
        return sorted(found, key=lambda a: (a.start, int(a.id) if a.id.isdigit() else 0, a.id))

    # ------------------------------------------------------------------------------------------------ writes

    async def _reconciled(
        self, write: Callable[[], Awaitable[T]], landed: Callable[[], Awaitable[T | None]], what: str
    ) -> T:
        return await reconciled(write, landed, what=what, emr=EMR_NAME)

    @staticmethod
    def _unknown(what: str, cause: str) -> OutcomeUnknown:
        return unknown(EMR_NAME, what, cause)

    async def _span(self, service_id: str, start: dt.datetime, end: dt.datetime | None) -> dt.datetime:
        """The end Nookal will give the appointment (from its type); a different explicit end cannot be booked."""
        derived = start + dt.timedelta(minutes=await self._duration(service_id))
        if end is not None and end != derived:
            raise Rejected("Nookal takes an appointment's length from its appointment type; omit `end` or match it")
        return derived

    async def _find_booked(
        self, patient_id: str, practitioner_id: str, service_id: str | None, start: dt.datetime
    ) -> wire.Appointment | None:
        """A live appointment exactly like the one just sent (reconciliation)."""
        zone = await self._zone()
        day, _ = mapping.wall(start, zone)
        found = await self._appointments([("patient_id", patient_id), ("date_from", day), ("date_to", day)])
        for a in sorted(found, key=lambda a: -int(mapping.ident(a.ID) or "0")):
            if (
                mapping.ident(a.patientID) == patient_id
                and mapping.ident(a.practitionerID) == practitioner_id
                and (service_id is None or mapping.ident(a.appointmentTypeID) == service_id)
                and mapping.status_of(a) is not AppointmentStatus.CANCELLED
                and mapping.times_of(a, zone)[0] == start
            ):
                return a
        return None

    async def _add_booking(
        self, patient_id: str, practitioner_id: str, service_id: str, start: dt.datetime, end: dt.datetime,
        notes: str | None, *, allow_overlap: bool = False, exclude_id: str | None = None,
    ) -> wire.Appointment:  # fmt: skip
        zone = await self._zone()
        day, time = mapping.wall(start, zone)
        params = [
            ("location_id", self.location_id),
            ("appointment_date", day),
            ("start_time", time),
            ("patient_id", patient_id),
            ("practitioner_id", practitioner_id),
            ("appointment_type_id", service_id),
            ("allow_overlap_bookings", "1" if allow_overlap else "0"),
        ]
        if notes is not None:
            params.append(("notes", notes))

        async def create() -> wire.Appointment:
            booked = await self.client.write("addAppointmentBooking", wire.Booked, params)
            new_id = mapping.text(booked.appointment_id)
            if new_id is not None:
                self._remember(new_id, patient_id)
                try:
                    return await self._fetch(new_id, patient_id)
                except NotFound:
                    pass
            found = await self._find_booked(patient_id, practitioner_id, service_id, start)
            if found is None:
                raise AmbiguousWrite("Nookal accepted the booking but it cannot be found")
            return found

        async def landed() -> wire.Appointment | None:
            return await self._find_booked(patient_id, practitioner_id, service_id, start)

        try:
            return await self._reconciled(create, landed, "booking")
        except NookalFailure as exc:
            if await self._overlapping(practitioner_id, start, end, exclude_id=exclude_id):
                raise SlotUnavailable(
                    "the practitioner already has an appointment at that time", emr_message=exc.emr_message
                ) from None
            raise

    async def book(self, command: BookCommand) -> Appointment:
        zone = await self._zone()
        start = mapping.utc(command.start, zone)
        end = await self._span(command.service_id, start, mapping.utc(command.end, zone) if command.end else None)
        for value in (command.patient_id, command.practitioner_id, command.service_id):
            if not ID_RE.match(value):
                raise Rejected("Nookal ids are numeric")
        if await self._overlapping(command.practitioner_id, start, end):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        created = await self._add_booking(
            command.patient_id, command.practitioner_id, command.service_id, start, end, command.notes
        )
        return await self._appointment(created)

    async def reschedule(self, command: RescheduleCommand) -> Appointment:
        current = await self._fetch(command.appointment_id)
        if mapping.status_of(current) is AppointmentStatus.CANCELLED:
            raise Rejected("a cancelled appointment cannot be rescheduled")
        zone = await self._zone()
        old_start, _old_end = mapping.times_of(current, zone)
        service_id = mapping.ident(current.appointmentTypeID)
        practitioner_id = command.practitioner_id or mapping.ident(current.practitionerID)
        if command.notes is not None and command.notes != (mapping.text(current.Notes) or ""):
            raise Unsupported("Nookal v2 cannot change the notes of an existing appointment")
        start = mapping.utc(command.start, zone) if command.start is not None else old_start
        if start == old_start and practitioner_id == mapping.ident(current.practitionerID):
            return await self._appointment(current)
        end = await self._span(service_id, start, mapping.utc(command.end, zone) if command.end else None)
        if await self._overlapping(practitioner_id, start, end, exclude_id=mapping.ident(current.ID)):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        if self._rebook_works:
            moved = await self._rebook(current, practitioner_id, start, end)
            if moved is not None:
                return await self._appointment(moved, replaces_id=mapping.ident(current.ID))
        moved = await self._book_then_cancel(current, practitioner_id, start, end)
        return await self._appointment(moved, replaces_id=mapping.ident(current.ID))

    async def _rebook(
        self, current: wire.Appointment, practitioner_id: str, start: dt.datetime, end: dt.datetime
    ) -> wire.Appointment | None:
        """rebookAppointment; None when Nookal refused it and nothing changed (then the caller falls back)."""
        zone = await self._zone()
        old_id, patient_id = mapping.ident(current.ID), mapping.ident(current.patientID)
        service_id = mapping.ident(current.appointmentTypeID)
        day, time = mapping.wall(start, zone)
        params = [
            ("appointment_id", old_id),
            ("patient_id", patient_id),
            ("location_id", self.location_id),
            ("appointment_date", day),
            ("start_time", time),
            ("practitioner_id", practitioner_id),
            ("cancel_first", "1"),
        ]

        async def where() -> wire.Appointment | None:
            seen = await self._fetch(old_id, patient_id)
            if mapping.status_of(seen) is not AppointmentStatus.CANCELLED and mapping.times_of(seen, zone)[0] == start:
                return seen  # moved in place
            return await self._find_booked(patient_id, practitioner_id, service_id, start)

        async def rebook() -> wire.Appointment:
            answer = await self.client.write("rebookAppointment", wire.Booked, params)
            new_id = mapping.text(answer.appointment_id)
            if new_id is not None:
                self._remember(new_id, patient_id)
                try:
                    found = await self._fetch(new_id, patient_id)
                    if mapping.times_of(found, zone)[0] == start:
                        return found
                except NotFound:
                    pass
            found_where = await where()
            if found_where is None:
                raise AmbiguousWrite("Nookal accepted the rebooking but it cannot be found")
            return found_where

        try:
            return await self._reconciled(rebook, where, "reschedule")
        except NookalFailure as exc:
            if await self._overlapping(practitioner_id, start, end, exclude_id=old_id):
                raise SlotUnavailable(
                    "the practitioner already has an appointment at that time", emr_message=exc.emr_message
                ) from None
            seen = await self._fetch(old_id, patient_id)
            unchanged = mapping.status_of(seen) is not AppointmentStatus.CANCELLED and mapping.times_of(
                seen, zone
            ) == mapping.times_of(current, zone)
            if unchanged and await self._find_booked(patient_id, practitioner_id, service_id, start) is None:
                self._rebook_works = False  # this account does not rebook through the API: cancel + book from now on
                return None
            raise

    async def _book_then_cancel(
        self, current: wire.Appointment, practitioner_id: str, start: dt.datetime, end: dt.datetime
    ) -> wire.Appointment:
        """Book the new time first (so a refusal leaves the original alone), then cancel the original."""
        zone = await self._zone()
        old_id, patient_id = mapping.ident(current.ID), mapping.ident(current.patientID)
        old_start, old_end = mapping.times_of(current, zone)
        # Only the appointment being moved may overlap the new time (checked above), so the overlap is allowed.
        self_overlap = practitioner_id == mapping.ident(current.practitionerID) and old_start < end and old_end > start
        created = await self._add_booking(
            patient_id, practitioner_id, mapping.ident(current.appointmentTypeID), start, end,
            mapping.text(current.Notes), allow_overlap=self_overlap, exclude_id=old_id,
        )  # fmt: skip
        try:
            await self._cancel_write(current)
        except AdapterError:
            raise OutcomeUnknown(
                f"appointment {mapping.ident(created.ID)} was booked at the new time but cancelling the original "
                f"{old_id} failed; both exist until a person cancels one",
                operation_id=str(uuid.uuid4()),
            ) from None
        return created

    async def _cancel_write(self, current: wire.Appointment) -> wire.Appointment:
        old_id, patient_id = mapping.ident(current.ID), mapping.ident(current.patientID)
        params = [("appointment_id", old_id), ("patient_id", patient_id)]

        async def cancel() -> wire.Appointment:
            await self.client.write("cancelAppointment", wire.Nothing, params)
            return await self._fetch(old_id, patient_id)

        async def landed() -> wire.Appointment | None:
            seen = await self._fetch(old_id, patient_id)
            return seen if mapping.status_of(seen) is AppointmentStatus.CANCELLED else None

        return await self._reconciled(cancel, landed, "cancellation")

    async def cancel(self, command: CancelCommand) -> Appointment:
        current = await self._fetch(command.appointment_id, command.patient_id)
        if command.patient_id is not None and mapping.ident(current.patientID) != command.patient_id:
            raise NotFound("Nookal has no such appointment for this patient")
        if mapping.status_of(current) is AppointmentStatus.CANCELLED:
            return await self._appointment(current)  # cancelling twice is a no-op
        cancelled = await self._appointment(await self._cancel_write(current))
        # Nookal v2 stores no reason: the caller's reason is reported back but lives only in the gateway.
        cancelled.cancel_reason = command.reason
        cancelled.cancel_note = command.note
        return cancelled

    # ------------------------------------------------------------------------------------------------ patients

    async def find_patients(self, query: PatientQuery) -> list[Patient]:
        params: list[tuple[str, str]] = []
        if query.email:
            params.append(("email", query.email))
        if query.first_name:
            params.append(("first_name", query.first_name))
        if query.last_name:
            params.append(("last_name", query.last_name))
        if query.date_of_birth is not None:
            params.append(("date_of_birth", query.date_of_birth.isoformat()))
        if not params:
            if query.phone:
                raise Unsupported("Nookal cannot search patients by phone alone; add a name or an email")
            raise Rejected("a patient search needs an email, a name or a date of birth")
        found = await self.client.read_all("searchPatients", wire.Patients, lambda r: r.patients, params)
        region, zone = await self._region(), await self._zone()
        patients = [mapping.patient_of(p, region, zone) for p in found]
        # Nookal's matching rules are not documented: hold every result to what was asked.
        if query.email:
            patients = [p for p in patients if (p.email or "").lower() == query.email.lower()]
        if query.first_name:
            patients = [p for p in patients if p.first_name.lower() == query.first_name.lower()]
        if query.last_name:
            patients = [p for p in patients if p.last_name.lower() == query.last_name.lower()]
        if query.date_of_birth is not None:
            patients = [p for p in patients if p.date_of_birth == query.date_of_birth]
        if query.phone:
            patients = [p for p in patients if query.phone in p.phones]
        return patients

    async def get_patient(self, patient_id: str) -> Patient:
        if not ID_RE.match(patient_id):
            raise NotFound("Nookal patient ids are numeric")
        found = await self.client.read_all(
            "searchPatients", wire.Patients, lambda r: r.patients, [("patient_id", patient_id)]
        )
        region, zone = await self._region(), await self._zone()
        for p in found:
            if mapping.ident(p.ID) == patient_id:
                return mapping.patient_of(p, region, zone)
        raise NotFound("Nookal has no such patient")

    async def create_patient(self, patient: NewPatient) -> Patient:
        params = [("first_name", patient.first_name), ("last_name", patient.last_name)]
        if patient.date_of_birth is not None:
            params.append(("date_of_birth", patient.date_of_birth.isoformat()))
        if patient.email:
            params.append(("email", patient.email))
        if patient.phone:
            params.append(("mobile", patient.phone))

        async def landed() -> Patient | None:
            query = PatientQuery(
                email=patient.email,
                first_name=patient.first_name,
                last_name=patient.last_name,
                date_of_birth=patient.date_of_birth,
            )
            found = await self.find_patients(query)
            return max(found, key=lambda p: int(p.id) if p.id.isdigit() else 0) if found else None

        async def create() -> Patient:
            created = await self.client.write("addPatient", wire.PatientCreated, params)
            new_id = mapping.text(created.patient_id)
            if new_id is not None:
                try:
                    return await self.get_patient(new_id)
                except NotFound:
                    pass
            found = await landed()
            if found is None:
                raise AmbiguousWrite("Nookal accepted the patient but it cannot be found")
            return found

        try:
            return await self._reconciled(create, landed, "patient creation")
        except NookalFailure as exc:
            if any("date_of_birth" in a for a in exc.alerts):
                raise Rejected(
                    "Nookal requires a date of birth to create a patient", emr_message=exc.emr_message
                ) from None
            raise

    # ------------------------------------------------------------------------------------------------ catalog

    def _here(self, location_ids: set[str] | None) -> bool:
        return location_ids is None or not location_ids or self.location_id in location_ids

    async def list_practitioners(self) -> list[Practitioner]:
        found = await self.client.read_all("getPractitioners", wire.Practitioners, lambda r: r.practitioners)
        return [mapping.practitioner_of(p) for p in found if self._here(mapping.ids(p.locations))]

    async def list_services(self) -> list[Service]:
        found = await self.client.read_all("getAppointmentTypes", wire.Services, lambda r: r.services)
        here = [s for s in found if self._here(mapping.ids(s.Locations))]
        for s in here:
            self._durations[mapping.ident(s.ID)] = mapping.duration_of(s)
        return [mapping.service_of(s) for s in here]

    async def list_locations(self) -> list[Location]:
        return [mapping.location_of(await self._get_location())]

    async def check(self) -> None:
        """Reads getLocations: proves the key and that it covers `location_id`."""
        await self._get_location()

    # ------------------------------------------------------------------------------------------------ availability

    async def availability(self, query: AvailabilityQuery) -> list[Slot]:
        return await self._slots(query, first_only=False)

    async def next_available(self, query: AvailabilityQuery) -> Slot | None:
        slots = await self._slots(query, first_only=True)
        return slots[0] if slots else None

    async def _slots(self, query: AvailabilityQuery, *, first_only: bool) -> list[Slot]:
        for value in (query.practitioner_id, query.service_id):
            if not ID_RE.match(value):
                raise NotFound("Nookal ids are numeric")
        zone = await self._zone()
        start, end = mapping.utc(query.start_from, zone), mapping.utc(query.start_to, zone)
        minutes = await self._duration(query.service_id)
        now = dt.datetime.now(dt.UTC)
        day = max(start, now).astimezone(zone).date()
        last = end.astimezone(zone).date()
        slots: list[Slot] = []
        while day <= last and start < end:
            window_end = min(day + dt.timedelta(days=AVAILABILITY_DAYS - 1), last)
            answer = await self.client.read(
                "getAppointmentAvailabilities",
                wire.Availabilities,
                [
                    ("location_id", self.location_id),
                    ("practitioner_id", query.practitioner_id),
                    ("date_from", day.isoformat()),
                    ("date_to", window_end.isoformat()),
                ],
            )
            for s in mapping.bookable_starts(mapping.free_cells(answer.availabilities), minutes, zone):
                if start <= s < end and s >= now:
                    slots.append(
                        Slot(
                            start=s,
                            end=s + dt.timedelta(minutes=minutes),
                            practitioner_id=query.practitioner_id,
                            service_id=query.service_id,
                            time_zone=zone.key,
                        )
                    )
            if first_only and slots:
                return [min(slots, key=lambda s: s.start)]
            day = window_end + dt.timedelta(days=1)
        unique = {s.start: s for s in slots}
        return [unique[k] for k in sorted(unique)]

    # ------------------------------------------------------------------------------------------------ change feed

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        """Patients and this location's appointments with `last_modified` at or after the cursor.

        With no cursor the feed starts now. The cursor is an RFC 3339 UTC instant; Nookal is asked in clinic-local
        wall time. Repeats are harmless (the caller compares snapshots); misses are not.
        """
        zone = await self._zone()
        if cursor is None:
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            return ChangeSet(patients=[], appointments=[], cursor=now.isoformat().replace("+00:00", "Z"))
        try:
            since = dt.datetime.fromisoformat(cursor.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected("the change cursor is not an RFC 3339 time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        stamp = mapping.since_stamp(since, zone)
        patients = await self.client.read_all(
            "getPatients", wire.Patients, lambda r: r.patients, [("last_modified", stamp)]
        )
        appointments = await self._appointments([("last_modified", stamp)])
        region = await self._region()
        changed_patients = [mapping.patient_of(p, region, zone) for p in patients]
        changed_appointments = [await self._appointment(a) for a in appointments]
        epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
        changed_patients.sort(key=lambda p: p.updated_at or epoch)
        changed_appointments.sort(key=lambda a: a.updated_at or epoch)
        stamps = [p.updated_at for p in changed_patients if p.updated_at] + [
            a.updated_at for a in changed_appointments if a.updated_at
        ]
        latest = max([since, *stamps])
        return ChangeSet(
            patients=changed_patients,
            appointments=changed_appointments,
            cursor=latest.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        )

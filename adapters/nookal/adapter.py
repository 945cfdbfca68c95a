"""The Nookal adapter (v2 REST API): one gateway location is one Nookal location (`settings.location_id`).

Nookal v2 has no fetch-by-id for appointments, no way to change an appointment in place that anyone has shown to
work, no idempotency keys and no change feed besides `last_modified` filters. So this adapter finds an appointment
by searching the location's calendar (by patient when it knows the patient), checks the practitioner's calendar
before every write that takes a slot, sends `allow_overlap_bookings=0`, reconciles writes whose answer was lost,
and polls `last_modified` for changes. Times go to and from Nookal as the clinic's wall clock (a date and a start
time, no offset) in the clinic's Nookal zone (`Timezone` from `getLocations`; the location's time_zone when Nookal
gives none), converted with zoneinfo. `getLocations` is read once an hour per API key for the whole process
(adapters/nookal/locations.py; `check()` and `observed_settings()` read it afresh), so a quiet poll costs 2 requests
(patients and appointments by `last_modified`) and the first poll of a new location none (issue 17).

Every booking and reschedule is verified (adapters/verify.py) against a read-back: Nookal answers a booking with
an id only, so the adapter reads the appointment back and maps it from Nookal's own stored date, start and end times
and ids, and compares that with what was asked (the command's instant, the end from the appointment type's length).
The read-back is the practitioner's calendar for the day (`getAppointments` by practitioner and date), so it is also
the race check: whether Nookal refuses an overlap is unconfirmed, so a rival booked into the same time earlier
(`dateCreated`, then id) keeps the slot and this booking is cancelled (`SlotUnavailable`); a moved appointment
meeting anything there is moved back. A read-back that cannot run is not "no conflict": the booking is cancelled
(the move undone) and the caller gets `Unavailable`; if that undo fails too, `OutcomeUnknown`.

A booking costs 3 Nookal calls: the calendar pre-check (`getAppointments` by practitioner and date),
`addAppointmentBooking`, and the read-back/race check; a fresh adapter adds `getAppointmentTypes` once (and
`getLocations` once an hour per key). A reschedule reads the appointment (one `getAppointments` by patient when the
adapter knows the patient, else a search over date windows), checks the calendar, `rebookAppointment`s and reads the
calendar back (4 at least), or, where Nookal lacks rebook, books through the raw `_book` (3 more calls), then
cancels the original (`previous` is the appointment before the move). The zone cannot be caught by a read-back
(Nookal stores and returns the same wall time), so `observed_settings()` compares the location's time_zone with
Nookal's.

One appointment per request (issue 15): a write whose answer was lost (no answer, a 500/502/504 a proxy may send
while Nookal still finishes) is watched for `write_patience_seconds` and adopted when it appears; a create
(`addAppointmentBooking`, the book-then-cancel fallback, `addPatient`) and `rebookAppointment` (which may create) are
never sent twice: still absent, they are `OutcomeUnknown` with the command's `operation_id`, for the gateway's
reconciler (`find_booking`: the base's lookup by patient, practitioner and start suffices here). The booking's
`notes` carry the operation's marker (adapters/markers.py), so a lost create is recognised as this one and not the
same patient's other appointment at that time; callers see the notes without it. A book-then-cancel copy keeps the
original's notes and marker. Nookal's failure `errorMessage` and alert prose never reach a message, `emr_message`
or a log: only its `errorCode` and the parameter names its alerts blame (client.failure_error).

CONFIRMED by a live account (AdrianPow/Nookal-GP-CCMP FINDINGS.md and nookal_client.py, 2026-08-03;
reference/notes/evidence-2026-11.md §2.1-2.2):
- writes as form-encoded POST to `/production/v2/<method>` with `api_key` as a parameter;
- the `{"status", "data": {"results"}}` envelope;
- `getAppointmentTypes` is the method's real name (`getServices` does not exist);
- `searchPatients` by `first_name` + `last_name` + `date_of_birth` (no e-mail) is an exact search and
  `fuzzy_search` is a real flag: N-AE's "e-mail + first + last + dob only" combination is not strict;
- `page_length=200` paging;
- a method name Nookal does not know is answered with its themed HTML 404 page (status 404), not a JSON failure:
  the client raises `MethodUnavailable`; for `rebookAppointment` the adapter then books-then-cancels.

UNCONFIRMED statements from the notes (reference/notes/emr-cliniko-nookal.md §2; still open in evidence-2026-11
§2.2/§7) this adapter and its emulator take a side on:
- Every write is unverified by any live source: the live integrator deliberately never called
  `addAppointmentBooking`, `cancelAppointment` or `rebookAppointment` (evidence §2.2); their parameters come from
  N-AE and the SDK, their answers from the SDK's classes. Hence the read-back after every write.
- HTTP status of a failure envelope for a known method: the emulator answers failures with HTTP 200 (auth,
  validation, conflicts); the adapter reads `status` in the body whatever the HTTP status. Live, a known method
  with a missing parameter gives a JSON failure envelope (evidence §2.2); its HTTP status is not stated.
- Error codes other than L000_1/L003/L004: the emulator invents L005 (location not covered by the key), A001 (no
  such appointment), A002 (overlapping booking), A003 (already cancelled), A004 (patient does not match the
  appointment), V001 (invalid value). The adapter never relies on them: it classifies by context (e.g. re-checks
  the calendar after a refused booking) and treats only L003/L004 as auth failures.
- A key that does not cover the location: the emulator leaves that location out of `getLocations` (and refuses
  location-scoped calls with L005); the adapter checks `getLocations` and raises AuthFailed naming the cause.
- Shape of `getAppointmentAvailabilities.availabilities` (evidence §7): the emulator serves `{"YYYY-MM-DD":
  {"HH:MM": "available"|"unavailable"}}` in 15-minute cells over the opening hours (the shape N-3L reads); the
  adapter also accepts date -> list of free times, lists of slot objects and v3's `range.slots`
  (mapping.free_cells). Slots are not filtered by appointment type (no such parameter is confirmed): an appointment
  needs consecutive free cells. The emulator requires `practitioner_id` and at most 62 days per call; the adapter
  asks 28 days at a time.
- `addAppointmentBooking` has no end/duration parameter: the end comes from the appointment type (`Duration`, read
  as minutes), so a booking with an explicit end that differs is refused by the adapter. Whether Nookal refuses an
  overlap by default is open (evidence §7): the emulator refuses one unless `allow_overlap_bookings` is true; the
  adapter sends `0` and still checks the calendar after every write (above).
- `notes` on `addAppointmentBooking` (N-AE, N-3L) carries the gateway's marker; whether Nookal keeps it verbatim and
  how long a note may be are unconfirmed. The emulator stores it verbatim. A lost create whose marker did not
  survive is still recognised by patient, practitioner, type and start, but never one carrying another marker.
- `rebookAppointment` (answer open, evidence §7): the emulator moves the appointment and keeps its id by default
  (`rebook="in_place"`), and can instead cancel it and create a new one (`"new_id"`) or not know the method
  (`"absent"`: the HTML 404 page). The adapter handles all three: a new id comes back with `replaces_id`; when
  rebook is unknown, or fails and nothing changed, it falls back to book-then-cancel (also a new id). Its answer is
  read like addAppointmentBooking (`appointment_id`).
- `cancelAppointment` (answer open, evidence §7): requires `patient_id` (sent; looked up when the caller did not
  give it); no reason field, so the reason is echoed in the cancel response only and is not stored in Nookal. The
  emulator answers `{"ID", "patientID"}` (the SDK class's fields); the adapter reads the appointment back.
- `updateAppointmentBooking` is not used (its existence is unconfirmed), so notes cannot be changed on an
  existing appointment (Unsupported).
- `addPatient`: the phone goes in `mobile` (the documented field table lists home/mobile/work; a doc example shows
  `phone`: evidence §2.1, medium); `date_of_birth` is optional in the emulator (N-AE marks it required; if Nookal
  says it is missing the caller gets a clear Rejected).
- `searchPatients` by e-mail alone (FIND_PATIENT_BY_EMAIL) is unverified (evidence §2.1): the emulator accepts any
  of email / first_name / last_name / date_of_birth, ANDed, exact and case-insensitive, and the adapter holds every
  result to what was asked. No phone search (no capability).
- `last_modified` format (evidence §7): `YYYY-MM-DD HH:MM:SS` clinic-local, records modified at or after it; the
  emulator applies it to getAppointments and getPatients. Near a DST fall-back the adapter asks from an hour
  earlier.
- Pagination: the emulator's default page length is 100 (max 200); `settings.nextPage` is null on the last page.
- Rate limits are unpublished: the emulator only rate-limits under fault injection (429 + Retry-After).
- Appointment `status` values: "Pending" (booked), "Cancelled"; `arrived`/`DNA` flags as "0"/"1" (a second-hand
  client lists "Completed, Pending, Cancelled, DNA": evidence §2.3, thin).
- Phones are stored as typed; the adapter formats them E.164 using the location's Country.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import OrderedDict
from typing import ClassVar, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msgspec

from adapters import probes
from adapters.base import AdapterContext, Capability, EMRAdapter
from adapters.errors import (
    AdapterError,
    AlreadyCancelled,
    AuthFailed,
    NotFound,
    OutcomeUnknown,
    Rejected,
    SlotUnavailable,
    Unavailable,
    Unsupported,
)
from adapters.http import DEFAULT_RETRY, RetryPolicy
from adapters.markers import operation_of, with_marker, without_marker
from adapters.nookal import mapping, wire
from adapters.nookal.client import MethodUnavailable, NookalClient, NookalFailure
from adapters.nookal.locations import LOCATIONS, account_of
from adapters.nookal.settings import NookalCredentials, NookalSettings
from adapters.pacing import RateLimit
from adapters.reconcile import AmbiguousWrite
from adapters.stamps import settled_cursor
from adapters.verify import Asked, Written
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
from schemas.verify import SettingCheck

T = TypeVar("T")

ID_RE = re.compile(r"^\d{1,12}$")
AVAILABILITY_DAYS = 28
# Where to look for an appointment by id (days from today, clinic-local), nearest first: v2 cannot fetch by id.
SEARCH_WINDOWS = ((-1, 13), (14, 90), (-30, -2), (91, 400), (-400, -31))
KNOWN_PATIENTS = 2000
PROBE_PAGE = "20"  # `locations verify` reads one short page of patients: counts only
ZONE_SOURCE = (
    "evidence-2026-11 §2 / notes §2.8: Nookal times are clinic-local wall times in the location's getLocations "
    "Timezone; a read-back cannot catch a wrong zone"
)
LENGTH_SOURCE = "notes §2.2: addAppointmentBooking takes no end; the end follows the type's Duration (minutes, N-3L)"


EMR_NAME = "Nookal"


def _number(value: object) -> int:
    s = mapping.ident(value)
    return int(s) if s.isdigit() else 0


def _created(a: wire.Appointment) -> tuple[str, int]:
    """Which of two bookings came first: Nookal's `dateCreated` (clinic-local, to the second), then its id. A rival
    without a `dateCreated` counts as the earlier one."""
    return (mapping.text(a.dateCreated) or "", _number(a.ID))


def _now(back_id: str, previous: Appointment) -> str:
    """How a caller finds an appointment that a move back gave a new id."""
    return "" if back_id == previous.id else f" (now appointment {back_id})"


class NookalAdapter(EMRAdapter[NookalSettings, NookalCredentials]):
    """Nookal v2 REST.

    FIND_PATIENT_BY_PHONE is absent: v2 has no documented phone search; a phone narrows a search by name or e-mail.
    """

    slug: ClassVar[str] = "nookal"
    display_name: ClassVar[str] = "Nookal"
    verified_against: ClassVar[str] = (
        "Nookal v2 as integrators' code uses it (PHP SDK 0.1.14, Elixir client fixtures, a modeled OpenAPI); "
        "transport, envelope, method names and paging confirmed by an integrator's live account (2026-08); every "
        "write unverified by any live source, so each is read back and compared (see the adapter's docstring)"
    )
    settings_type: ClassVar[type[NookalSettings]] = NookalSettings
    credentials_type: ClassVar[type[NookalCredentials]] = NookalCredentials
    # Nookal publishes no rate limit; integrators pace themselves at ~2 requests/s. An idle poll costs 2 requests
    # (patients and appointments by last_modified): every 120 s is negligible, and well inside ClinicSync's 5-45 min.
    default_poll_seconds: ClassVar[int] = 120
    write_settings: ClassVar[dict[str, str]] = {
        "start": "the location's time_zone, which must be the clinic's Nookal zone (getLocations Timezone, which the "
        "adapter uses when Nookal gives one)",
        "end": "the appointment type's Duration in Nookal (read as minutes)",
    }
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=2.0, burst=5),)
    min_booking_calls: ClassVar[int] = 3  # pre-check, create, post-check (the calendar again: no read by id)
    full_listing_complete: ClassVar[bool] = True  # every patient and this location's appointments by `last_modified`
    reissues_ids: ClassVar[bool] = True  # a reschedule may fall back to book-then-cancel
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
        self._account = account_of(self.client.base_url, credentials.api_key)
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

    async def _read_locations(self) -> list[wire.Location]:
        return await self.client.read_all("getLocations", wire.Locations, lambda r: r.locations)

    async def _get_location(self, *, fresh: bool = False) -> wire.Location:
        """This location from getLocations; a key that does not list it does not cover it. Shared by every instance
        of the key for an hour (adapters/nookal/locations.py), so a poll does not re-read it; `fresh` reads it now
        and refreshes what the others see."""
        if fresh:
            found = await self._read_locations()
            LOCATIONS.put(self._account, found)
            location = next((loc for loc in found if mapping.ident(loc.ID) == self.location_id), None)
        else:
            location = await LOCATIONS.get(self._account, self.location_id, self._read_locations)
        if location is None:
            raise AuthFailed(
                f"the Nookal API key does not cover location {self.location_id}: tick that location on the key "
                "(Nookal Setup → Connections → API Keys) or check the location's location_id"
            )
        return location

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

    async def _span(self, service_id: str, start: dt.datetime, end: dt.datetime | None) -> dt.datetime:
        """The end Nookal will give the appointment (from its type); a different explicit end cannot be booked."""
        derived = start + dt.timedelta(minutes=await self._duration(service_id))
        if end is not None and end != derived:
            raise Rejected("Nookal takes an appointment's length from its appointment type; omit `end` or match it")
        return derived

    async def _find_booked(
        self,
        patient_id: str,
        practitioner_id: str,
        service_id: str | None,
        start: dt.datetime,
        operation_id: str | None = None,
    ) -> wire.Appointment | None:
        """A live appointment exactly like the one just sent (reconciliation). With an operation id: the one carrying
        its marker, else an unmarked one; one carrying another operation's marker is never it (the same patient's
        other booking at that time, made by a retry or by staff)."""
        zone = await self._zone()
        day, _ = mapping.wall(start, zone)
        found = await self._appointments([("patient_id", patient_id), ("date_from", day), ("date_to", day)])
        alike = [
            a
            for a in sorted(found, key=lambda a: -_number(a.ID))
            if mapping.ident(a.patientID) == patient_id
            and mapping.ident(a.practitionerID) == practitioner_id
            and (service_id is None or mapping.ident(a.appointmentTypeID) == service_id)
            and mapping.status_of(a) is not AppointmentStatus.CANCELLED
            and mapping.times_of(a, zone)[0] == start
        ]
        if operation_id is not None:
            marked = [a for a in alike if operation_of(a.Notes) == operation_id]
            alike = marked or [a for a in alike if operation_of(a.Notes) is None]
        return alike[0] if alike else None

    async def _read_back(
        self,
        appointment_id: str,
        patient_id: str,
        practitioner_id: str,
        start: dt.datetime,
        end: dt.datetime,
        others: set[str],
    ) -> tuple[wire.Appointment, list[wire.Appointment]]:
        """The appointment as Nookal stored it, read from the practitioner's calendar over the asked days (one call),
        and the live appointments overlapping it there, `others` aside: the write's read-back and its race check in
        one. Stored elsewhere (another day or practitioner: what verification then reports), it is looked up by
        patient, and there are no rivals to weigh."""
        zone = await self._zone()
        first, last = mapping.wall(start, zone)[0], mapping.wall(end, zone)[0]
        calendar = await self._appointments(
            [("practitioner_id", practitioner_id), ("date_from", first), ("date_to", last)]
        )
        mine = next((a for a in calendar if mapping.ident(a.ID) == appointment_id), None)
        if mine is None or mapping.ident(mine.practitionerID) not in ("", practitioner_id):
            return await self._fetch(appointment_id, patient_id), []
        mine_start, mine_end = mapping.times_of(mine, zone)
        rivals = []
        for a in calendar:
            if mapping.ident(a.ID) in others | {appointment_id}:
                continue
            if mapping.status_of(a) is AppointmentStatus.CANCELLED:
                continue
            if mapping.ident(a.practitionerID) not in ("", practitioner_id):
                continue
            a_start, a_end = mapping.times_of(a, zone)
            if a_start < mine_end and a_end > mine_start:
                rivals.append(a)
        return mine, rivals

    async def _add_booking(
        self, patient_id: str, practitioner_id: str, service_id: str, start: dt.datetime, end: dt.datetime,
        notes: str | None, *, marker: str | None, operation_id: str | None, allow_overlap: bool = False,
        exclude_id: str | None = None,
    ) -> str:  # fmt: skip
        """addAppointmentBooking, sent once: the new appointment's id, from Nookal's answer or, when that was lost,
        from watching the calendar for it (by `marker`, the operation whose marker `notes` carry)."""
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

        async def create() -> str:
            booked = await self.client.write("addAppointmentBooking", wire.Booked, params)
            new_id = mapping.text(booked.appointment_id)
            if new_id is None:
                raise AmbiguousWrite("Nookal accepted the booking without its id")
            return new_id

        async def landed() -> str | None:
            found = await self._find_booked(patient_id, practitioner_id, service_id, start, marker)
            return None if found is None else mapping.ident(found.ID)

        try:
            new_id = await self._reconciled(create, landed, "booking", resend=False, operation_id=operation_id)
        except NookalFailure as exc:
            if await self._overlapping(practitioner_id, start, end, exclude_id=exclude_id):
                raise SlotUnavailable(
                    "the practitioner already has an appointment at that time", emr_message=exc.emr_message
                ) from None
            raise
        self._remember(new_id, patient_id)
        return new_id

    async def _book(self, command: BookCommand, *, replacing: wire.Appointment | None = None) -> Written:
        """addAppointmentBooking (its `notes` carrying the operation's marker), then the read-back from the
        practitioner's calendar, which is also the race check; `stored` is what Nookal holds, `asked` the command's
        instant and the type's length.

        `replacing`: the appointment a book-then-cancel reschedule moves (the caller has checked the calendar
        without it); only that appointment may overlap the new time. Its marker, not a new one, goes on the copy.
        """
        for value in (command.patient_id, command.practitioner_id, command.service_id):
            if not ID_RE.match(value):
                raise Rejected("Nookal ids are numeric")
        zone = await self._zone()
        start = mapping.utc(command.start, zone)
        end = await self._span(command.service_id, start, mapping.utc(command.end, zone) if command.end else None)
        exclude_id: str | None = None
        self_overlap = False
        if replacing is None:
            if await self._overlapping(command.practitioner_id, start, end):
                raise SlotUnavailable("the practitioner already has an appointment at that time")
        else:
            exclude_id = mapping.ident(replacing.ID)
            old_start, old_end = mapping.times_of(replacing, zone)
            self_overlap = (
                command.practitioner_id == mapping.ident(replacing.practitionerID)
                and old_start < end
                and old_end > start
            )
        # A caller's operation id names this booking in `504 emr_outcome_unknown`; a reschedule's copy has none.
        reported = command.operation_id if replacing is None else None
        new_id = await self._add_booking(
            command.patient_id, command.practitioner_id, command.service_id, start, end,
            with_marker(command.notes, command.operation_id), marker=command.operation_id, operation_id=reported,
            allow_overlap=self_overlap, exclude_id=exclude_id,
        )  # fmt: skip
        others = {exclude_id} if exclude_id else set()
        try:
            created, rivals = await self._read_back(
                new_id, command.patient_id, command.practitioner_id, start, end, others
            )
        except AdapterError:
            # The read-back is the race check: unverifiable is not "no conflict". Withdraw rather than risk two.
            await self._withdraw(new_id, command.patient_id, reported)
            raise Unavailable(
                "Nookal could not confirm the slot was free after booking; the booking was withdrawn"
            ) from None
        if any(_created(r) < _created(created) for r in rivals):
            # Two bookings raced into one slot (Nookal's overlap refusal is unconfirmed): the earlier keeps it.
            await self._withdraw(new_id, command.patient_id, reported)
            raise SlotUnavailable("the slot was taken at the same moment; the new booking was cancelled")
        asked = Asked(start=start, end=end, practitioner_id=command.practitioner_id, patient_id=command.patient_id)
        return Written(stored=await self._appointment(created), asked=asked)

    async def _withdraw(self, appointment_id: str, patient_id: str, operation_id: str | None) -> None:
        """Cancel a booking just made that cannot be kept; if that fails too, the outcome is unknown."""
        try:
            await self._cancel_write(appointment_id, patient_id)
        except AdapterError:
            raise OutcomeUnknown(
                f"appointment {appointment_id} was booked but could not be kept, and cancelling it failed; "
                "it needs a person to look at it",
                operation_id=operation_id or str(uuid.uuid4()),
            ) from None

    async def _reschedule(self, command: RescheduleCommand) -> Written:
        current = await self._fetch(command.appointment_id)
        if mapping.status_of(current) is AppointmentStatus.CANCELLED:
            raise AlreadyCancelled("a cancelled appointment cannot be rescheduled")
        zone = await self._zone()
        previous = await self._appointment(current)
        service_id = mapping.ident(current.appointmentTypeID)
        practitioner_id = command.practitioner_id or previous.practitioner_id
        if command.notes is not None and command.notes != (previous.notes or ""):
            raise Unsupported("Nookal v2 cannot change the notes of an existing appointment")
        start = mapping.utc(command.start, zone) if command.start is not None else previous.start
        if start == previous.start and practitioner_id == previous.practitioner_id:
            unchanged = Asked(start=previous.start, end=previous.end, practitioner_id=previous.practitioner_id)
            return Written(stored=previous, asked=unchanged, previous=previous)  # nothing was written
        end = await self._span(service_id, start, mapping.utc(command.end, zone) if command.end else None)
        asked = Asked(start=start, end=end, practitioner_id=practitioner_id)
        if await self._overlapping(practitioner_id, start, end, exclude_id=previous.id):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        if self._rebook_works:
            moved_id = await self._rebook(current, practitioner_id, start, end, fallback=True)
            if moved_id is not None:
                moved = await self._settle_move(moved_id, current, previous, practitioner_id, start, end)
                stored = await self._appointment(moved, replaces_id=previous.id)
                return Written(stored=stored, asked=asked, previous=previous)
        stored = await self._book_then_cancel(current, practitioner_id, start)
        return Written(stored=stored, asked=asked, previous=previous)

    async def _rebook(
        self,
        current: wire.Appointment,
        practitioner_id: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        fallback: bool,
    ) -> str | None:
        """rebookAppointment, sent once (it may create an appointment: never twice): the moved appointment's id.
        With `fallback`, None when Nookal does not know the method, or refused it and nothing changed (the caller
        then books-then-cancels)."""
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

        async def where() -> str | None:
            seen = await self._fetch(old_id, patient_id)
            if mapping.status_of(seen) is not AppointmentStatus.CANCELLED and mapping.times_of(seen, zone)[0] == start:
                return old_id  # moved in place
            found = await self._find_booked(patient_id, practitioner_id, service_id, start, operation_of(current.Notes))
            return None if found is None else mapping.ident(found.ID)

        async def rebook() -> str:
            answer = await self.client.write("rebookAppointment", wire.Booked, params)
            new_id = mapping.text(answer.appointment_id)
            if new_id is None:
                raise AmbiguousWrite("Nookal accepted the rebooking without an appointment id")
            return new_id

        try:
            moved_id = await self._reconciled(rebook, where, "reschedule", resend=False)
        except MethodUnavailable:
            if not fallback:
                raise
            self._rebook_works = False  # Nookal answered its 404 page: nothing was done; cancel + book from now on
            return None
        except NookalFailure as exc:
            if await self._overlapping(practitioner_id, start, end, exclude_id=old_id):
                raise SlotUnavailable(
                    "the practitioner already has an appointment at that time", emr_message=exc.emr_message
                ) from None
            if not fallback:
                raise
            seen = await self._fetch(old_id, patient_id)
            unchanged = mapping.status_of(seen) is not AppointmentStatus.CANCELLED and mapping.times_of(
                seen, zone
            ) == mapping.times_of(current, zone)
            if unchanged and await self._find_booked(patient_id, practitioner_id, service_id, start) is None:
                self._rebook_works = False  # this account does not rebook through the API: cancel + book from now on
                return None
            raise
        self._remember(moved_id, patient_id)
        return moved_id

    async def _settle_move(
        self,
        moved_id: str,
        current: wire.Appointment,
        previous: Appointment,
        practitioner_id: str,
        start: dt.datetime,
        end: dt.datetime,
    ) -> wire.Appointment:
        """The moved appointment read back from the practitioner's calendar, which is also the race check: anything
        else there at the new time (another booking that raced in) sends it back where it was, as does a calendar
        that cannot be read (unverifiable is not "no conflict")."""
        try:
            moved, rivals = await self._read_back(
                moved_id, previous.patient_id, practitioner_id, start, end, {previous.id}
            )
            if mapping.status_of(moved) is AppointmentStatus.CANCELLED:
                # Answered with the id it cancelled: the live copy at the new time is the moved appointment.
                copy = await self._find_booked(
                    previous.patient_id, practitioner_id, previous.service_id, start, operation_of(current.Notes)
                )
                if copy is not None:
                    moved_id = mapping.ident(copy.ID)
                    moved, rivals = await self._read_back(
                        moved_id, previous.patient_id, practitioner_id, start, end, {previous.id}
                    )
        except AdapterError:
            back = await self._move_back(moved_id, current, previous)
            raise Unavailable(
                f"Nookal could not confirm the new slot was free; the appointment was moved back{_now(back, previous)}"
            ) from None
        if rivals:
            back = await self._move_back(moved_id, current, previous)
            raise SlotUnavailable(
                f"the new slot was taken at the same moment; the appointment was moved back{_now(back, previous)}"
            )
        return moved

    async def _move_back(self, moved_id: str, current: wire.Appointment, previous: Appointment) -> str:
        """rebookAppointment back to where the appointment was; the id it now has. Failing that, the outcome is
        unknown (the appointment may be at either time)."""
        moved = msgspec.structs.replace(current, ID=moved_id)
        try:
            back = await self._rebook(moved, previous.practitioner_id, previous.start, previous.end, fallback=False)
        except (AdapterError, AmbiguousWrite):
            back = None
        if back is None:
            raise OutcomeUnknown(
                f"appointment {moved_id} was moved, could not be kept at the new time, and moving it back failed; "
                "it needs a person to look at it",
                operation_id=str(uuid.uuid4()),
            )
        return back

    async def _book_then_cancel(
        self, current: wire.Appointment, practitioner_id: str, start: dt.datetime
    ) -> Appointment:
        """Book the new time first (so a refusal leaves the original alone), then cancel the original. The booking
        goes through the raw `_book` (verified once, by the caller), sent once like every create, and carries the
        original's notes and marker."""
        old_id = mapping.ident(current.ID)
        command = BookCommand(
            patient_id=mapping.ident(current.patientID),
            practitioner_id=practitioner_id,
            service_id=mapping.ident(current.appointmentTypeID),
            start=start,
            notes=without_marker(mapping.text(current.Notes)),
            operation_id=operation_of(current.Notes),
        )
        try:
            created = (await self._book(command, replacing=current)).stored
        except OutcomeUnknown as exc:
            raise OutcomeUnknown(
                f"the new time was sent to Nookal as a new booking and its outcome is unknown; the original "
                f"appointment {old_id} was left as it was",
                operation_id=exc.operation_id,
            ) from None
        try:
            await self._cancel_write(old_id, command.patient_id)
        except AdapterError:
            raise OutcomeUnknown(
                f"appointment {created.id} was booked at the new time but cancelling the original "
                f"{old_id} failed; both exist until a person cancels one",
                operation_id=str(uuid.uuid4()),
            ) from None
        created.replaces_id = old_id
        return created

    async def _cancel_write(self, appointment_id: str, patient_id: str) -> None:
        """cancelAppointment; Nookal's success envelope confirms it. A lost answer is watched for, and the cancel
        (which lands the same way twice) sent at most once more."""
        params = [("appointment_id", appointment_id), ("patient_id", patient_id)]

        async def cancel() -> bool:
            await self.client.write("cancelAppointment", wire.Nothing, params)
            return True

        async def landed() -> bool | None:
            seen = await self._fetch(appointment_id, patient_id)
            return True if mapping.status_of(seen) is AppointmentStatus.CANCELLED else None

        await self._reconciled(cancel, landed, "cancellation", resend=True)

    async def cancel(self, command: CancelCommand) -> Appointment:
        current = await self._fetch(command.appointment_id, command.patient_id)
        if command.patient_id is not None and mapping.ident(current.patientID) != command.patient_id:
            raise NotFound("Nookal has no such appointment for this patient")
        if mapping.status_of(current) is AppointmentStatus.CANCELLED:
            return await self._appointment(current)  # cancelling twice is a no-op
        appointment_id, patient_id = mapping.ident(current.ID), mapping.ident(current.patientID)
        await self._cancel_write(appointment_id, patient_id)
        try:
            seen = await self._fetch(appointment_id, patient_id)
        except AdapterError:  # Nookal confirmed the cancel; only the read-back failed
            seen = msgspec.structs.replace(current, cancelled="1", status="Cancelled")
        cancelled = await self._appointment(seen)
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

        async def found() -> Patient | None:
            query = PatientQuery(
                email=patient.email,
                first_name=patient.first_name,
                last_name=patient.last_name,
                date_of_birth=patient.date_of_birth,
            )
            matches = await self.find_patients(query)
            return max(matches, key=lambda p: _number(p.id)) if matches else None

        async def landed() -> str | None:
            match = await found()
            return None if match is None else match.id

        async def create() -> str:
            created = await self.client.write("addPatient", wire.PatientCreated, params)
            new_id = mapping.text(created.patient_id)
            if new_id is None:
                raise AmbiguousWrite("Nookal accepted the patient without its id")
            return new_id

        try:
            new_id = await self._reconciled(
                create, landed, "patient creation", resend=False
            )  # a create: never sent twice
        except NookalFailure as exc:
            if "date_of_birth" in exc.fields:
                raise Rejected(
                    "Nookal requires a date of birth to create a patient", emr_message=exc.emr_message
                ) from None
            raise
        try:
            return await self.get_patient(new_id)
        except NotFound:
            match = await found()
            if match is None:
                raise
            return match
        except AdapterError:  # Nookal gave the new id; only the read-back failed: report what was sent
            try:
                region = await self._region()
            except AdapterError:
                region = None
            phone = mapping.e164(patient.phone, region)
            return Patient(
                id=new_id,
                first_name=patient.first_name,
                last_name=patient.last_name,
                email=patient.email,
                phones=[phone] if phone else [],
                date_of_birth=patient.date_of_birth,
            )

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
        """Reads getLocations afresh (never the shared copy): proves the key and that it covers `location_id`."""
        await self._get_location(fresh=True)

    # ------------------------------------------------------------------------------------------------ verify

    def verify_probes(self) -> list[tuple[str, probes.ProbeFn]]:
        """The lists the generic probes leave alone: getPatients (one short page), searchPatients (one patient by
        id) and the `last_modified` change feed over the last day."""
        seen: list[str] = []

        async def patients() -> str:
            page = await self.client.read("getPatients", wire.Patients, [("page", "1"), ("page_length", PROBE_PAGE)])
            seen.extend(i for i in (mapping.ident(p.ID) for p in page.patients) if ID_RE.match(i))
            return f"{len(page.patients)} patient(s) on the first page"

        async def patient_search() -> str | None:
            if not seen:
                raise probes.Skip("no patient to look up")
            await self.get_patient(seen[0])
            return None

        async def change_feed() -> str:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
            changes = await self.changes_since(since.isoformat().replace("+00:00", "Z"))
            return f"{len(changes.patients)} patient(s), {len(changes.appointments)} appointment(s) changed in a day"

        return [("patients", patients), ("patient search", patient_search), ("change feed (last day)", change_feed)]

    async def observed_settings(self) -> list[SettingCheck]:
        """The zone the location is configured with against the `Timezone` Nookal shows for it, and whether existing
        appointments last their type's `Duration` read as minutes (read-only: the last 4 weeks and the next one)."""
        shown = mapping.text((await self._get_location(fresh=True)).Timezone)
        configured = self.context.time_zone
        zone = SettingCheck(
            setting="time_zone",
            configured=configured,
            observed=shown,
            agrees=None if shown is None else mapping.same_zone(configured, shown),
            source=ZONE_SOURCE,
        )
        return [zone, await self._length_check()]

    async def _length_check(self) -> SettingCheck:
        await self.list_services()
        zone = await self._zone()
        today = dt.datetime.now(zone).date()
        window = [
            ("date_from", (today - dt.timedelta(days=28)).isoformat()),
            ("date_to", (today + dt.timedelta(days=7)).isoformat()),
        ]
        total = matched = 0
        for a in await self._appointments(window):
            minutes = self._durations.get(mapping.ident(a.appointmentTypeID))
            if minutes is None or mapping.status_of(a) is AppointmentStatus.CANCELLED:
                continue
            start, end = mapping.times_of(a, zone)
            total += 1
            matched += end - start == dt.timedelta(minutes=minutes)
        return SettingCheck(
            setting="appointment type Duration unit",
            configured="minutes",
            observed=f"{matched} of {total} appointment(s) last their type's Duration in minutes",
            agrees=None if total == 0 else matched > 0,
            source=LENGTH_SOURCE,
        )

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
        if cursor is None:  # no EMR request: the cursor is an instant, and the zone is needed only from here on
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            return ChangeSet(patients=[], appointments=[], cursor=now.isoformat().replace("+00:00", "Z"))
        zone = await self._zone()
        try:
            since = dt.datetime.fromisoformat(cursor.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected("the change cursor is not an RFC 3339 time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        stamp = mapping.since_stamp(since, zone)
        started = dt.datetime.now(dt.UTC)
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
        latest = settled_cursor(max([since, *stamps]), since, started)
        return ChangeSet(
            patients=changed_patients,
            appointments=changed_appointments,
            cursor=latest.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        )

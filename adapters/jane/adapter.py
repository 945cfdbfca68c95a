"""The Jane adapter: one gateway location is one location of one Jane clinic (`settings.clinic`, `location_id`).

Jane has no public write API (the partner API is read-only), so this adapter uses the clinic's own staff web endpoints
with an imported staff session, as integrators do: UNOFFICIAL, undocumented, and liable to change without notice.
Booking is Jane's two steps: a provisional hold (`POST /admin/api/v2/appointments`, `book: false`) and then
`PUT /admin/api/v3/appointments/{id}/book`; when the second step fails the hold is released
(`DELETE /admin/api/v2/appointments/{id}`) so no orphan hold blocks the calendar.

UNCONFIRMED facts from the research notes (reference/notes/emr-jane-sp-pb-ghl.md §2, §6) and the side taken:
- Staff reschedule: `PUT /admin/api/v2/appointments/{id}` with `{"appointment": {start_at, end_at, staff_member_id},
  "browser_tab_id"}` — an in-place move keeping the id (ClinicSync's `rescheduleAppt` "updates an existing Jane
  appointment"), rather than book-new-then-cancel-old, which would change the id callers hold.
- Staff cancel: `PUT /admin/api/v2/appointments/{id}/cancel` with `{"cancelled_reason", "with_notifications",
  "send_wlns", "browser_tab_id"}` — the flag names are the ones ClinicSync's `cancelAppt` forwards; the `/cancel` suffix
  is the staff endpoint the notes name. Notifications are off: the gateway's caller tells the patient.
  `cancelled_reason` is free text in Jane; the gateway writes "<Reason>" or "<Reason>: <note>" and parses it back.
- Patient create body: `{"patient": {first_name, last_name, email, mobile_phone, dob}, "browser_tab_id"}` (only the
  form's field names were captured), answered 201 with the patient (bare or under `patient`).
- Reads with no captured request: `GET /admin/api/v2/patients/{id}` (the patient record, as in ClinicSync's Jane
  payload), `GET /admin/api/v2/patients/{id}/appointments`, and the calendar list
  `GET /admin/api/v2/appointments?location_id=&start_date=&end_date=[&staff_member_id=][&updated_since=]` (bare array).
- Catalog from the public booking endpoints (`/api/v2/staff_members`, `/api/v2/treatments`, `/api/v2/locations`):
  `treatment_duration` is seconds; staff carry `location_ids`, `treatment_ids` and (when Jane sends it) `email`, which
  ClinicSync's Jane booking body uses to name the practitioner; only what the clinic offers online is listed.
- Openings: `start_date` + `num_days` (1..7) is the variant used; `end_at` of an opening is taken as the slot's end.
- The staff calendar accepts overlapping appointments (Jane lets staff double-book): the adapter checks the calendar
  before the hold and, after it, yields to an earlier rival hold (lower id), so a taken slot is SlotUnavailable.
- A timed-out hold is found again as the reserved, patient-less appointment at the same staff member and times.
- CSRF: Jane (Rails) refuses a stale token with an HTML 422 before applying anything; the token is re-read once.
- A signed-out session: 401 from the admin API, a redirect to /login from the admin page.
- Phone lookups use the staff typeahead (`patient_lookup/lookup`) with the number as `q`; the results are then
  filtered exactly here, so a typeahead that misses a formatting variant finds nothing rather than the wrong patient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

import httpx
import msgspec

from adapters.base import AdapterContext, Capability, EMRAdapter
from adapters.errors import (
    AdapterError,
    InvalidReference,
    NotFound,
    OutcomeUnknown,
    Rejected,
    SlotUnavailable,
    Timeout,
    Unavailable,
)
from adapters.http import DEFAULT_RETRY, RetryPolicy
from adapters.jane import mapping, wire
from adapters.jane.client import JaneClient, Params
from adapters.jane.settings import JaneCredentials, JaneSettings, browser_tab_id_of
from adapters.pacing import RateLimit
from adapters.reconcile import AmbiguousWrite, unknown
from schemas.appointments import Appointment
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

APPOINTMENTS_V2 = "/admin/api/v2/appointments"
APPOINTMENTS_V3 = "/admin/api/v3/appointments"
PATIENTS = "/admin/api/v2/patients"
LOOKUP = "/admin/api/v2/patient_lookup/lookup"
OPENINGS_DAYS = 7  # `num_days` above 7 is a 422
LOOKUP_LIMIT = 25
LIST_AHEAD_DAYS = 90
INACTIVE = frozenset({"cancelled", "archived"})


def _id(value: str, field: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise InvalidReference(f"Jane {field} ids are numeric", field=field)
    return int(value)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


EMR_NAME = "Jane"


class JaneAdapter(EMRAdapter[JaneSettings, JaneCredentials]):
    """Jane through the staff web app's JSON endpoints (unofficial) and the public booking endpoints."""

    slug: ClassVar[str] = "jane"
    display_name: ClassVar[str] = "Jane"
    verified_against: ClassVar[str] = (
        "unofficial staff web endpoints (session cookie + CSRF), unverified: shapes from integrators' captures "
        "(reference/notes/emr-jane-sp-pb-ghl.md §2.2), not from Jane"
    )
    settings_type: ClassVar[type[JaneSettings]] = JaneSettings
    credentials_type: ClassVar[type[JaneCredentials]] = JaneCredentials
    # An idle poll is one calendar request. The staff endpoints share the clinic's own front-desk traffic and Jane
    # throttles per endpoint per clinic (about 100 requests a minute on its partner API); every 2 minutes keeps the
    # gateway's polling far below that while patient-update webhooks still leave within a few minutes.
    default_poll_seconds: ClassVar[int] = 120
    # "100 requests per minute per endpoint per clinic", kept as 100 a minute for all endpoints together (10 + 1.5/s).
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=1.5, burst=10),)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.CUSTOM_DURATION,
            Capability.BOOK,
            Capability.GET_APPOINTMENT,
            Capability.RESCHEDULE,
            Capability.CANCEL,
            Capability.LIST_APPOINTMENTS,
            Capability.AVAILABILITY,
            Capability.NEXT_AVAILABILITY,
            Capability.FIND_PATIENT_BY_EMAIL,
            Capability.FIND_PATIENT_BY_PHONE,
            Capability.FIND_PATIENT_BY_NAME,
            Capability.CREATE_PATIENT,
            Capability.CATALOG,
            Capability.CHANGES_SINCE,
            Capability.RECONCILES_TIMED_OUT_CREATE,
            # Jane's staff calendar accepts overlaps; the adapter refuses them (calendar check before and after).
            Capability.REJECTS_DOUBLE_BOOKING,
        }
    )

    def __init__(
        self, settings: JaneSettings, credentials: JaneCredentials, http: httpx.AsyncClient, context: AdapterContext
    ) -> None:
        super().__init__(settings, credentials, http, context)
        self.client = JaneClient(http, settings, credentials, DEFAULT_RETRY)
        self.tab = browser_tab_id_of(settings)
        self.location = int(settings.location_id)
        self.zone = ZoneInfo(context.time_zone)
        self._treatments: dict[int, wire.Treatment] | None = None

    @property
    def retry(self) -> RetryPolicy:
        return self.client.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.client.retry = policy

    # ------------------------------------------------------------------------------------------------ helpers

    def _appointment(self, appointment: wire.Appointment) -> Appointment:
        return mapping.appointment_of(appointment, self.context)

    def _local(self, moment: datetime) -> datetime:
        return mapping.local(moment, self.context.time_zone)

    def _day(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    async def _fetch(self, appointment_id: str, *, holds: bool = False) -> wire.Appointment:
        """The appointment if it is in this location (another location's, or a bare hold, reads as not found)."""
        if not appointment_id.isdigit() or len(appointment_id) > 12:
            raise NotFound("Jane appointment ids are numeric")
        appointment = await self.client.get(
            f"{APPOINTMENTS_V3}/{appointment_id}", wire.Appointment, [("booking_type", "one_on_one_booking")]
        )
        if appointment.location_id != self.location or (appointment.state == "reserved" and not holds):
            raise NotFound("Jane has no such appointment in this location")
        return appointment

    async def _calendar(
        self, first: date, last: date, staff_member_id: int | None = None, updated_since: str | None = None
    ) -> list[wire.Appointment]:
        params: list[tuple[str, str]] = [
            ("location_id", str(self.location)),
            ("start_date", first.isoformat()),
            ("end_date", last.isoformat()),
        ]
        if staff_member_id is not None:
            params.append(("staff_member_id", str(staff_member_id)))
        if updated_since is not None:
            params.append(("updated_since", updated_since))
        found = await self.client.get_list(APPOINTMENTS_V2, "appointments", wire.Appointment, params)
        return [a for a in found if a.location_id == self.location]

    async def _overlapping(
        self, staff_member_id: int, start: datetime, end: datetime, exclude_id: int | None = None
    ) -> list[wire.Appointment]:
        found = await self._calendar(self._day(start), self._day(end), staff_member_id)
        return [
            a
            for a in found
            if a.id != exclude_id
            and a.staff_member_id == staff_member_id
            and a.state not in INACTIVE
            and a.start_at < end
            and a.end_at > start
        ]

    async def _treatment(self, treatment_id: int) -> wire.Treatment:
        if self._treatments is None or treatment_id not in self._treatments:
            treatments = await self.client.get_list("/api/v2/treatments", "treatments", wire.Treatment)
            self._treatments = {t.id: t for t in treatments}
        try:
            return self._treatments[treatment_id]
        except KeyError:
            raise InvalidReference("Jane has no such treatment", field="service_id") from None

    async def _release(self, hold_id: int) -> None:
        """Give a hold back to the calendar; if even that fails, Jane lets an unbooked hold lapse on its own."""
        with contextlib.suppress(AdapterError, AmbiguousWrite):
            await self.client.write("DELETE", f"{APPOINTMENTS_V2}/{hold_id}")

    @staticmethod
    def _unknown(what: str, cause: str) -> OutcomeUnknown:
        return unknown(EMR_NAME, what, cause)

    # ------------------------------------------------------------------------------------------------ booking

    async def book(self, command: BookCommand) -> Appointment:
        staff = _id(command.practitioner_id, "practitioner_id")
        treatment_id = _id(command.service_id, "service_id")
        patient = _id(command.patient_id, "patient_id")
        start = mapping.utc(command.start, self.context.time_zone)
        if command.end is not None:
            end = mapping.utc(command.end, self.context.time_zone)
        else:
            end = start + timedelta(seconds=(await self._treatment(treatment_id)).treatment_duration)
        if end <= start:
            raise Rejected("the appointment must end after it starts")
        if await self._overlapping(staff, start, end):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        hold = await self._hold(staff, start, end)
        try:
            rivals = await self._overlapping(staff, start, end, exclude_id=hold.id)
        except AdapterError:
            rivals = []  # the calendar was free a moment ago; do not give up a good hold over a failed check
        if any(r.id < hold.id for r in rivals):
            await self._release(hold.id)
            raise SlotUnavailable("the slot was taken at the same moment; the hold was released")
        return self._appointment(await self._confirm(hold, treatment_id, patient, command.notes))

    async def _hold(self, staff: int, start: datetime, end: datetime) -> wire.Appointment:
        """Step one. A hold whose answer was lost is looked for before anything else happens."""
        body = wire.ProvisionalCreate(
            appointment=wire.Provisional(
                location_id=self.location,
                start_at=self._local(start),
                end_at=self._local(end),
                staff_member_id=staff,
            ),
            browser_tab_id=self.tab,
        )
        try:
            return await self.client.write_json("POST", APPOINTMENTS_V2, body, wire.Appointment)
        except AmbiguousWrite as exc:
            try:
                found = await self._find_hold(staff, start, end)
            except AdapterError:
                raise self._unknown("hold", exc.cause) from None
            if found is None:
                raise Unavailable(f"Jane did not answer the hold ({exc.cause}); checked, nothing was written") from None
            return found
        except Unavailable as exc:
            if exc.emr_status is None or exc.emr_status < 500:
                raise
            try:  # a 5xx may still have applied the write: adopt the hold if it is there
                found = await self._find_hold(staff, start, end)
            except AdapterError:
                raise exc from None
            if found is None:
                raise
            return found

    async def _find_hold(self, staff: int, start: datetime, end: datetime) -> wire.Appointment | None:
        found = await self._calendar(self._day(start), self._day(end), staff)
        holds = [
            a
            for a in found
            if a.state == "reserved"
            and a.patient_id is None
            and a.staff_member_id == staff
            and a.start_at == start
            and a.end_at == end
        ]
        return max(holds, key=lambda a: a.id) if holds else None

    async def _confirm(
        self, hold: wire.Appointment, treatment_id: int, patient_id: int, notes: str | None
    ) -> wire.Appointment:
        """Step two; on any failure that leaves the hold unbooked, the hold is released."""
        body = wire.BookRequest(
            appointment=wire.Booking(
                id=hold.id,
                location_id=hold.location_id,
                staff_member_id=hold.staff_member_id,
                start_at=hold.start_at,
                end_at=hold.end_at,
                treatment_id=treatment_id,
                patient_id=patient_id,
                notes_text=notes,
            ),
            browser_tab_id=self.tab,
        )
        try:
            return await self.client.write_json("PUT", f"{APPOINTMENTS_V3}/{hold.id}/book", body, wire.Appointment)
        except AmbiguousWrite as exc:
            try:
                seen = await self._fetch(str(hold.id), holds=True)
            except AdapterError:
                raise self._unknown("booking", exc.cause) from None
            if seen.state != "reserved" and seen.patient_id == patient_id:
                return seen
            await self._release(hold.id)
            raise Unavailable(
                f"Jane did not answer the booking ({exc.cause}); checked, the hold was released"
            ) from None
        except NotFound:
            raise Unavailable("Jane let the hold lapse before it was booked; nothing was booked") from None
        except AdapterError:
            await self._release(hold.id)
            raise

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return self._appointment(await self._fetch(appointment_id))

    async def reschedule(self, command: RescheduleCommand) -> Appointment:
        current = await self._fetch(command.appointment_id)
        if current.state in INACTIVE:
            raise Rejected("a cancelled appointment cannot be rescheduled")
        staff = _id(command.practitioner_id, "practitioner_id") if command.practitioner_id else current.staff_member_id
        start, end = current.start_at.astimezone(UTC), current.end_at.astimezone(UTC)
        if command.start is not None:
            start = mapping.utc(command.start, self.context.time_zone)
            if command.end is not None:
                end = mapping.utc(command.end, self.context.time_zone)
            else:
                end = start + (current.end_at - current.start_at)
            if end <= start:
                raise Rejected("the appointment must end after it starts")
        moves = start != current.start_at or end != current.end_at or staff != current.staff_member_id
        if not moves and (command.notes is None or command.notes == current.notes_text):
            return self._appointment(current)
        if moves and await self._overlapping(staff, start, end, exclude_id=current.id):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        body = wire.MoveRequest(
            appointment=wire.Move(
                start_at=self._local(start), end_at=self._local(end), staff_member_id=staff, notes_text=command.notes
            ),
            browser_tab_id=self.tab,
        )

        def applied(seen: wire.Appointment) -> bool:
            return seen.start_at == start and seen.end_at == end and seen.staff_member_id == staff

        moved = await self._write_checked("PUT", f"{APPOINTMENTS_V2}/{current.id}", body, current.id, applied, "move")
        return self._appointment(moved)

    async def cancel(self, command: CancelCommand) -> Appointment:
        current = await self._fetch(command.appointment_id)
        if command.patient_id is not None and str(current.patient_id) != command.patient_id:
            raise NotFound("Jane has no such appointment for this patient")
        if current.state in INACTIVE:
            return self._appointment(current)  # cancelling twice is a no-op, not an error
        body = wire.CancelRequest(
            cancelled_reason=mapping.cancel_text(command.reason, command.note), browser_tab_id=self.tab
        )
        cancelled = await self._write_checked(
            "PUT", f"{APPOINTMENTS_V2}/{current.id}/cancel", body, current.id, lambda a: a.state in INACTIVE, "cancel"
        )
        return self._appointment(cancelled)

    async def _write_checked(
        self,
        method: str,
        path: str,
        body: msgspec.Struct,
        appointment_id: int,
        applied: Callable[[wire.Appointment], bool],
        what: str,
    ) -> wire.Appointment:
        """Send an update once; if its outcome is unclear, read the appointment back instead of sending it again."""
        try:
            return await self.client.write_json(method, path, body, wire.Appointment)
        except AmbiguousWrite as exc:
            cause = exc.cause
        except Unavailable as exc:
            if exc.emr_status is None or exc.emr_status < 500:
                raise
            cause = f"HTTP {exc.emr_status}"
        try:
            seen = await self._fetch(str(appointment_id))
        except AdapterError:
            raise self._unknown(what, cause) from None
        if applied(seen):
            return seen
        raise Unavailable(f"Jane did not apply the {what} ({cause}); checked, nothing was written")

    async def list_appointments(self, query: AppointmentQuery) -> list[Appointment]:
        if query.patient_id is not None:
            if not query.patient_id.isdigit():
                return []
            found = await self.client.get_list(
                f"{PATIENTS}/{query.patient_id}/appointments", "appointments", wire.Appointment
            )
        else:
            today = datetime.now(self.zone).date()
            first = self._day(query.start_from) if query.start_from else today
            last = self._day(query.start_to) if query.start_to else first + timedelta(days=LIST_AHEAD_DAYS)
            found = await self._calendar(first, last)
        start_from = mapping.utc(query.start_from, self.context.time_zone) if query.start_from else None
        start_to = mapping.utc(query.start_to, self.context.time_zone) if query.start_to else None
        mine = [
            a
            for a in found
            if a.location_id == self.location
            and a.state != "reserved"
            and (query.practitioner_id is None or str(a.staff_member_id) == query.practitioner_id)
            and (start_from is None or a.start_at >= start_from)
            and (start_to is None or a.start_at < start_to)
        ]
        return sorted((self._appointment(a) for a in mine), key=lambda a: (a.start, int(a.id)))

    # ------------------------------------------------------------------------------------------------ patients

    async def _lookup(self, text: str) -> list[wire.Patient]:
        """The staff typeahead. It writes nothing, so a lost answer is a plain read failure."""
        body = wire.PatientLookup(q=text, limit=LOOKUP_LIMIT, autocomplete=True, browser_tab_id=self.tab)
        try:
            response = await self.client.write("POST", LOOKUP, body)
        except AmbiguousWrite as exc:
            raise Timeout(f"Jane did not answer the patient lookup ({exc.cause})") from None
        return self.client.decode_list(response, "patients", wire.Patient)

    async def find_patients(self, query: PatientQuery) -> list[Patient]:
        if query.email:
            text = query.email
        elif query.phone:
            text = query.phone
        elif query.first_name or query.last_name:
            text = " ".join(n for n in (query.first_name, query.last_name) if n)
        else:
            raise Rejected("a patient search needs an email, a phone or a name")
        region = self.settings.phone_region
        patients = [mapping.patient_of(p, region) for p in await self._lookup(text)]

        def fits(p: Patient) -> bool:
            return (
                (not query.email or (p.email or "").lower() == query.email.lower())
                and (not query.phone or query.phone in p.phones)
                and (not query.first_name or p.first_name.lower() == query.first_name.lower())
                and (not query.last_name or p.last_name.lower() == query.last_name.lower())
                and (query.date_of_birth is None or p.date_of_birth == query.date_of_birth)
            )

        return [p for p in patients if fits(p)]

    async def get_patient(self, patient_id: str) -> Patient:
        if not patient_id.isdigit() or len(patient_id) > 12:
            raise NotFound("Jane patient ids are numeric")
        patient = await self.client.get(f"{PATIENTS}/{patient_id}", wire.Patient)
        return mapping.patient_of(patient, self.settings.phone_region)

    async def create_patient(self, patient: NewPatient) -> Patient:
        body = wire.PatientCreate(
            patient=wire.NewPatient(
                first_name=patient.first_name,
                last_name=patient.last_name,
                email=patient.email,
                mobile_phone=patient.phone,
                dob=patient.date_of_birth,
            ),
            browser_tab_id=self.tab,
        )
        try:
            created = await self.client.write_json("POST", PATIENTS, body, wire.Patient, key="patient")
        except AmbiguousWrite as exc:
            try:
                found = await self.find_patients(
                    PatientQuery(
                        email=patient.email,
                        first_name=patient.first_name,
                        last_name=patient.last_name,
                        date_of_birth=patient.date_of_birth,
                    )
                )
            except AdapterError:
                raise self._unknown("patient creation", exc.cause) from None
            if not found:
                raise Unavailable(
                    f"Jane did not answer the patient creation ({exc.cause}); checked, none was made"
                ) from None
            return max(found, key=lambda p: int(p.id))
        return mapping.patient_of(created, self.settings.phone_region)

    # ------------------------------------------------------------------------------------------------ catalog

    async def _staff(self) -> list[wire.StaffMember]:
        staff = await self.client.get_list("/api/v2/staff_members", "staff_members", wire.StaffMember)
        return [s for s in staff if not s.location_ids or self.location in s.location_ids]

    async def list_practitioners(self) -> list[Practitioner]:
        return [mapping.practitioner_of(s) for s in await self._staff()]

    async def list_services(self) -> list[Service]:
        treatments = await self.client.get_list("/api/v2/treatments", "treatments", wire.Treatment)
        self._treatments = {t.id: t for t in treatments}
        staff = await self._staff()
        return [mapping.service_of(t, staff) for t in treatments]

    async def list_locations(self) -> list[Location]:
        locations = await self.client.get_list("/api/v2/locations", "locations", wire.Location)
        return [mapping.location_of(loc) for loc in locations if loc.id == self.location]

    async def check(self) -> None:
        """Loads the admin page (the session and its CSRF token): one cheap request that fails when the session has."""
        await self.client.csrf_token(refresh=True)

    # ------------------------------------------------------------------------------------------------ availability

    async def availability(self, query: AvailabilityQuery) -> list[Slot]:
        staff = _id(query.practitioner_id, "practitioner_id")
        treatment_id = _id(query.service_id, "service_id")
        start = mapping.utc(query.start_from, self.context.time_zone)
        end = mapping.utc(query.start_to, self.context.time_zone)
        day = max(self._day(start), datetime.now(self.zone).date())
        last = self._day(end)
        starts: dict[datetime, datetime] = {}
        while day <= last and start < end:
            num_days = min(OPENINGS_DAYS, (last - day).days + 1)
            params: Params = [
                ("location_id", str(self.location)),
                ("staff_member_id", str(staff)),
                ("treatment_id", str(treatment_id)),
                ("start_date", day.isoformat()),
                ("num_days", str(num_days)),
            ]
            for entry in await self.client.get_list("/api/v2/openings", "openings", wire.StaffOpenings, params):
                for opening in entry.openings:
                    begins = opening.start_at.astimezone(UTC)
                    if (
                        opening.staff_member_id == staff
                        and opening.treatment_id == treatment_id
                        and start <= begins < end
                    ):
                        starts[begins] = opening.end_at.astimezone(UTC)
            day += timedelta(days=num_days)
        return [
            Slot(
                start=s,
                end=starts[s],
                practitioner_id=query.practitioner_id,
                service_id=query.service_id,
                time_zone=self.context.time_zone,
            )
            for s in sorted(starts)
        ]

    # ------------------------------------------------------------------------------------------------ change feed

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        """Appointments of this location updated at or after `cursor`, and their patients.

        Jane's staff endpoints offer no patient change feed, so a patient edit shows up with their next appointment
        change. With no cursor the feed starts now (a new location never downloads its whole history).
        """
        now = datetime.now(UTC)
        if cursor is None:
            return ChangeSet(patients=[], appointments=[], cursor=_stamp(now))
        try:
            since = datetime.fromisoformat(cursor)
        except ValueError:
            raise Rejected("the change cursor is not an ISO 8601 time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        found = await self._calendar(
            self._day(since) - timedelta(days=LIST_AHEAD_DAYS),
            self._day(now) + timedelta(days=LIST_AHEAD_DAYS * 4),
            updated_since=_stamp(since),
        )
        changed = sorted(
            (a for a in found if a.state != "reserved" and a.updated_at is not None and a.updated_at >= since),
            key=lambda a: (a.updated_at or since, a.id),
        )
        patients: dict[str, Patient] = {}
        for appointment in changed:
            key = str(appointment.patient_id)
            if appointment.patient_id is not None and key not in patients:
                try:
                    patients[key] = await self.get_patient(key)
                except NotFound:
                    continue
        stamps = [a.updated_at for a in changed if a.updated_at is not None]
        return ChangeSet(
            patients=list(patients.values()),
            appointments=[self._appointment(a) for a in changed],
            cursor=_stamp(max(stamps)) if stamps else _stamp(since),
        )

"""The SimplePractice adapter: one gateway location is one office (`settings.office_id`) of one practice.

SimplePractice has no public API and no webhooks. Like the commercial product it replaces, the adapter uses the
clinician web app's JSON:API with a signed-in session (cookie + CSRF token), and the practice's client-portal API for
open slots. Change detection polls. Writes are UNVERIFIED (see writes.py).

UNCONFIRMED facts this adapter (and its emulator) take a side on:
- Write endpoints and bodies: JSON:API POST/PATCH on `/frontend/appointments` and POST `/frontend/clients`
  (writes.py); a cancel is a PATCH setting `attendanceStatus: "Canceled"` and a free-text `cancelReason`
  ("<reason label>: <note>"), not a DELETE, so the appointment stays readable as cancelled.
- `attendanceStatus` spellings ("Show", "No Show", "Canceled", "Late Canceled", "Clinician Canceled"; no status =
  booked); "Show" reads as `arrived`.
- Client search is `GET /frontend/clients?filter[search]=<text>` (email, name or phone), then filtered exactly here;
  clients carry `emails[{email}]`, `phones[{number}]`, `birthDate`, `createdAt`, `updatedAt` as attributes, and
  `sort=-updatedAt` orders them by last change (the change feed relies on it).
- Clinicians come from `GET /frontend/team-members` (attributes `firstName`, `lastName`, `email`, `isClinician`,
  `active`), and a team member's id is the `clinicianId` appointments carry.
- CPT codes come from `GET /frontend/cpt-codes` with the 5-digit `code` among the attributes; a service's id IS its
  CPT code (appointments name codes, not ids), and the code's record id is the client portal's `cptCodeId`.
- `filter[timeRange]=<start>,<end>` selects appointments by start time; `filter[clinicianId]` and `filter[clientId]`
  narrow it (the adapter filters the answer again, so an ignored filter only costs bandwidth).
- Appointments carry `updatedAt` and `createdAt`; a list answers `links.next` while pages remain.
- SimplePractice accepts overlapping appointments: the adapter checks the clinician's calendar (client and
  non-client appointments, in every office) before a write and after it, and the earlier booking keeps a raced slot.
- An expired session answers `401` with a JSON:API error (a redirect to sign-in is treated the same); a stale CSRF
  token answers `403`; the rate limit answers `429` with `Retry-After`.
- Client-portal `slots` spots carry `start`/`end` with an offset; at most 31 days are asked per request.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar, TypeVar

import httpx

from adapters.base import AdapterContext, Capability, EMRAdapter
from adapters.errors import (
    AdapterError,
    InvalidReference,
    NotFound,
    OutcomeUnknown,
    Rejected,
    SlotUnavailable,
)
from adapters.http import DEFAULT_RETRY, RetryPolicy
from adapters.pacing import RateLimit
from adapters.reconcile import AmbiguousWrite, reconciled, unknown
from adapters.simplepractice import mapping, wire, writes
from adapters.simplepractice.client import SimplePracticeClient
from adapters.simplepractice.settings import SimplePracticeCredentials, SimplePracticeSettings
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
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

SLOT_WINDOW_DAYS = 31
# A patient's appointments with no bounds: ten years back to two years ahead (the calendar needs a time range;
# visit and cancellation counts in patient snapshots need the whole history).
LIST_BACK = timedelta(days=3653)
LIST_AHEAD = timedelta(days=731)
CHANGE_BACK = timedelta(days=14)  # the change feed watches appointments starting in this window around now
CHANGE_AHEAD = timedelta(days=180)
RACE_NOTE = "the slot was taken at the same moment (double booking, undone by the EMR Gateway)"


def _digits(value: str) -> bool:
    return value.isdigit() and len(value) <= 20


EMR_NAME = "SimplePractice"


class SimplePracticeAdapter(EMRAdapter[SimplePracticeSettings, SimplePracticeCredentials]):
    """SimplePractice clinician web app (JSON:API) + client portal (slots)."""

    slug: ClassVar[str] = "simplepractice"
    display_name: ClassVar[str] = "SimplePractice"
    verified_against: ClassVar[str] = (
        "unofficial clinician web-app and client-portal JSON:API endpoints seen in integrators' captures; "
        "write shapes unverified"
    )
    settings_type: ClassVar[type[SimplePracticeSettings]] = SimplePracticeSettings
    credentials_type: ClassVar[type[SimplePracticeCredentials]] = SimplePracticeCredentials
    # No published rate budget, and the session is a clinician's own: an idle poll costs 2 to 5 requests (clients by
    # last change, then ~6 months of the office's calendar), so every 5 minutes stays far below what the web app's
    # own calendar view sends while someone has it open.
    default_poll_seconds: ClassVar[int] = 300
    # Unpublished; no faster than a person clicking through the web app.
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=2.0, burst=10),)
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
            # SimplePractice accepts overlaps (UNCONFIRMED); the adapter refuses them (calendar check before and after).
            Capability.REJECTS_DOUBLE_BOOKING,
        }
    )

    def __init__(
        self,
        settings: SimplePracticeSettings,
        credentials: SimplePracticeCredentials,
        http: httpx.AsyncClient,
        context: AdapterContext,
    ) -> None:
        super().__init__(settings, credentials, http, context)
        self.client = SimplePracticeClient(http, settings, credentials, DEFAULT_RETRY)
        self._codes: dict[str, wire.CptCode] | None = None

    @property
    def retry(self) -> RetryPolicy:
        return self.client.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.client.retry = policy

    # ------------------------------------------------------------------------------------------------ helpers

    @property
    def office_id(self) -> str:
        return self.settings.office_id

    def _utc(self, moment: datetime) -> datetime:
        return mapping.utc(moment, self.context.time_zone)

    def _local(self, moment: datetime) -> datetime:
        return mapping.local(moment, self.context.time_zone)

    def _appointment(self, appointment: wire.Appointment) -> Appointment:
        return mapping.appointment_of(appointment, self.context)

    async def _cpt_codes(self) -> dict[str, wire.CptCode]:
        if self._codes is None:
            pages = await self.client.list("cpt-codes", wire.CptCodeListDocument)
            self._codes = {mapping.service_id_of(c): c for page in pages for c in page.data}
        return self._codes

    async def _cpt_code(self, service_id: str) -> wire.CptCode:
        code = (await self._cpt_codes()).get(service_id)
        if code is None:
            raise InvalidReference(f"SimplePractice has no CPT code {service_id} in this practice", field="service_id")
        return code

    async def _fetch(self, appointment_id: str) -> wire.Appointment:
        """A client appointment of this location's office (another office's reads as not found)."""
        if not _digits(appointment_id):
            raise NotFound("SimplePractice appointment ids are numeric")
        found = (await self.client.get(f"appointments/{appointment_id}", wire.AppointmentDocument)).data
        if found.type != mapping.CLIENT_APPOINTMENT or mapping.office_of(found) != self.office_id:
            raise NotFound("SimplePractice has no such appointment in this location")
        return found

    async def _calendar(
        self, start: datetime, end: datetime, *, clinician_id: str | None = None, client_id: str | None = None
    ) -> list[wire.Appointment]:
        """Every calendar entry (any type, any office) starting in [start, end)."""
        params = [("filter[timeRange]", f"{self._local(start).isoformat()},{self._local(end).isoformat()}")]
        if clinician_id is not None:
            params.append(("filter[clinicianId]", clinician_id))
        if client_id is not None:
            params.append(("filter[clientId]", client_id))
        pages = await self.client.list("appointments", wire.AppointmentListDocument, params)
        return [a for page in pages for a in page.data]

    async def _overlapping(
        self, clinician_id: str, start: datetime, end: datetime, exclude_id: str | None = None
    ) -> list[wire.Appointment]:
        """The clinician's live calendar entries overlapping [start, end) (a day back covers long blocks)."""
        found = await self._calendar(start - timedelta(days=1), end, clinician_id=clinician_id)
        busy: list[wire.Appointment] = []
        for entry in found:
            entry_start, entry_end = mapping.span_of(entry)
            if (
                entry.id != exclude_id
                and mapping.clinician_of(entry) == clinician_id
                and mapping.status_of(entry.attributes.attendanceStatus) is not AppointmentStatus.CANCELLED
                and entry_start < end
                and entry_end > start
            ):
                busy.append(entry)
        return busy

    async def _lost_race(self, mine: wire.Appointment, clinician_id: str) -> bool:
        """Two writes raced into one slot: the earlier-created (then lower id) keeps it; exactly one survives."""
        start, end = mapping.span_of(mine)
        rivals = await self._overlapping(clinician_id, start, end, exclude_id=mine.id)
        far = datetime.max.replace(tzinfo=UTC)
        key = (mine.attributes.createdAt or far, int(mine.id) if mine.id.isdigit() else 0)
        return any(
            r.type != mapping.CLIENT_APPOINTMENT
            or (r.attributes.createdAt or far, int(r.id) if r.id.isdigit() else 0) < key
            for r in rivals
        )

    async def _reconciled(
        self, write: Callable[[], Awaitable[T]], landed: Callable[[], Awaitable[T | None]], what: str
    ) -> T:
        return await reconciled(write, landed, what=what, emr=EMR_NAME)

    @staticmethod
    def _unknown(what: str, cause: str) -> OutcomeUnknown:
        return unknown(EMR_NAME, what, cause)

    async def _send(self, request: writes.WriteRequest) -> wire.Appointment:
        return (await self.client.write(request, wire.AppointmentDocument)).data

    # ------------------------------------------------------------------------------------------------ appointments

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return self._appointment(await self._fetch(appointment_id))

    async def book(self, command: BookCommand) -> Appointment:
        code = await self._cpt_code(command.service_id)
        start = self._utc(command.start)
        end = (
            self._utc(command.end) if command.end is not None else start + timedelta(minutes=mapping.duration_of(code))
        )
        if end <= start:
            raise Rejected("the appointment must end after it starts")
        if await self._overlapping(command.practitioner_id, start, end):
            raise SlotUnavailable("the clinician already has an appointment at that time")
        request = writes.book(
            client_id=command.patient_id,
            clinician_id=command.practitioner_id,
            office_id=self.office_id,
            cpt_code=command.service_id,
            start=self._local(start),
            end=self._local(end),
            memo=command.notes,
        )

        async def landed() -> wire.Appointment | None:
            near = await self._calendar(start, start + timedelta(minutes=1), clinician_id=command.practitioner_id)
            for entry in near:
                if (
                    entry.type == mapping.CLIENT_APPOINTMENT
                    and mapping.client_of(entry) == command.patient_id
                    and mapping.span_of(entry)[0] == start
                    and mapping.code_of(entry) == command.service_id
                    and mapping.status_of(entry.attributes.attendanceStatus) is not AppointmentStatus.CANCELLED
                ):
                    return entry
            return None

        created = await self._reconciled(lambda: self._send(request), landed, "booking")
        try:
            lost = await self._lost_race(created, command.practitioner_id)
        except AdapterError:
            lost = False  # the calendar was free a moment ago; do not undo a good booking over a failed check
        if lost:
            await self._undo(writes.cancel(created.id, reason=mapping.cancel_text(CancelReason.OTHER, RACE_NOTE)))
            raise SlotUnavailable("the slot was taken at the same moment; the new booking was cancelled")
        return self._appointment(created)

    async def _undo(self, request: writes.WriteRequest) -> None:
        try:
            await self._send(request)
        except (AdapterError, AmbiguousWrite):
            raise OutcomeUnknown(
                "a double booking was detected and undoing it failed; it needs a person to look at it",
                operation_id=str(uuid.uuid4()),
            ) from None

    async def reschedule(self, command: RescheduleCommand) -> Appointment:
        current = await self._fetch(command.appointment_id)
        if mapping.status_of(current.attributes.attendanceStatus) is AppointmentStatus.CANCELLED:
            raise Rejected("a cancelled appointment cannot be rescheduled")
        old_start, old_end = mapping.span_of(current)
        old_clinician = mapping.clinician_of(current) or ""
        clinician = command.practitioner_id or old_clinician
        start, end = old_start, old_end
        if command.start is not None:
            start = self._utc(command.start)
            if command.end is not None:
                end = self._utc(command.end)
            else:
                code = (await self._cpt_codes()).get(mapping.code_of(current) or "")
                minutes = mapping.duration_of(code) if code is not None else 0
                end = start + (timedelta(minutes=minutes) if minutes else old_end - old_start)
            if end <= start:
                raise Rejected("the appointment must end after it starts")
        moves = (start, end) != (old_start, old_end) or clinician != old_clinician
        if not moves and command.notes is None:
            return self._appointment(current)
        if moves and await self._overlapping(clinician, start, end, exclude_id=current.id):
            raise SlotUnavailable("the clinician already has an appointment at that time")
        request = writes.reschedule(
            current.id,
            start=self._local(start) if moves else None,
            end=self._local(end) if moves else None,
            clinician_id=clinician if clinician != old_clinician else None,
            memo=command.notes,
        )

        async def landed() -> wire.Appointment | None:
            seen = await self._fetch(current.id)
            applied = mapping.span_of(seen)[0] == start and mapping.clinician_of(seen) == clinician
            return seen if applied and (command.notes is None or seen.attributes.memo == command.notes) else None

        updated = await self._reconciled(lambda: self._send(request), landed, "reschedule")
        if moves:
            try:
                lost = await self._lost_race(updated, clinician)
            except AdapterError:
                lost = False
            if lost:
                back = writes.reschedule(
                    current.id,
                    start=self._local(old_start),
                    end=self._local(old_end),
                    clinician_id=old_clinician if clinician != old_clinician else None,
                    memo=None,
                )
                await self._undo(back)
                raise SlotUnavailable("the new slot was taken at the same moment; the appointment was left as it was")
        return self._appointment(updated)

    async def cancel(self, command: CancelCommand) -> Appointment:
        current = await self._fetch(command.appointment_id)
        if command.patient_id is not None and mapping.client_of(current) != command.patient_id:
            raise NotFound("SimplePractice has no such appointment for this client")
        if mapping.status_of(current.attributes.attendanceStatus) is AppointmentStatus.CANCELLED:
            return self._appointment(current)  # cancelling twice is a no-op, not an error
        request = writes.cancel(current.id, reason=mapping.cancel_text(command.reason, command.note))

        async def landed() -> wire.Appointment | None:
            seen = await self._fetch(current.id)
            cancelled = mapping.status_of(seen.attributes.attendanceStatus) is AppointmentStatus.CANCELLED
            return seen if cancelled else None

        return self._appointment(await self._reconciled(lambda: self._send(request), landed, "cancellation"))

    async def list_appointments(self, query: AppointmentQuery) -> list[Appointment]:
        now = datetime.now(UTC)
        start = self._utc(query.start_from) if query.start_from is not None else now - LIST_BACK
        end = self._utc(query.start_to) if query.start_to is not None else now + LIST_AHEAD
        for value in (query.patient_id, query.practitioner_id):
            if value is not None and not _digits(value):
                return []
        if end <= start:
            return []
        found = await self._calendar(start, end, clinician_id=query.practitioner_id, client_id=query.patient_id)
        mine = [
            self._appointment(a)
            for a in found
            if a.type == mapping.CLIENT_APPOINTMENT
            and mapping.office_of(a) == self.office_id
            and (query.patient_id is None or mapping.client_of(a) == query.patient_id)
            and (query.practitioner_id is None or mapping.clinician_of(a) == query.practitioner_id)
            and start <= mapping.span_of(a)[0] < end
        ]
        return sorted({a.id: a for a in mine}.values(), key=lambda a: (a.start, a.id))

    # ------------------------------------------------------------------------------------------------ clients

    async def _search(self, text: str) -> list[wire.Client]:
        pages = await self.client.list("clients", wire.ClientListDocument, [("filter[search]", text)])
        return [c for page in pages for c in page.data]

    async def find_patients(self, query: PatientQuery) -> list[Patient]:
        if query.email:
            text = query.email
        elif query.first_name or query.last_name:
            text = " ".join(part for part in (query.first_name, query.last_name) if part)
        elif query.phone:
            text = mapping.national_digits(query.phone)
        else:
            raise Rejected("a client search needs an email, a name or a phone")
        found = [mapping.patient_of(c) for c in await self._search(text)]

        def fits(p: Patient) -> bool:
            return (
                (not query.email or (p.email or "").lower() == query.email.lower())
                and (not query.first_name or p.first_name.lower() == query.first_name.lower())
                and (not query.last_name or p.last_name.lower() == query.last_name.lower())
                and (query.date_of_birth is None or p.date_of_birth == query.date_of_birth)
                and (not query.phone or query.phone in p.phones)
            )

        return [p for p in {p.id: p for p in found}.values() if fits(p)]

    async def get_patient(self, patient_id: str) -> Patient:
        if not _digits(patient_id):
            raise NotFound("SimplePractice client ids are numeric")
        return mapping.patient_of((await self.client.get(f"clients/{patient_id}", wire.ClientDocument)).data)

    async def create_patient(self, patient: NewPatient) -> Patient:
        request = writes.new_client(
            first_name=patient.first_name,
            last_name=patient.last_name,
            email=patient.email,
            phone=patient.phone,
            birth_date=patient.date_of_birth,
        )

        async def create() -> wire.Client:
            return (await self.client.write(request, wire.ClientDocument)).data

        async def landed() -> wire.Client | None:
            text = patient.email or f"{patient.first_name} {patient.last_name}"
            matches = [
                c
                for c in await self._search(text)
                if c.attributes.firstName == patient.first_name
                and c.attributes.lastName == patient.last_name
                and (patient.date_of_birth is None or c.attributes.birthDate == patient.date_of_birth)
            ]
            far = datetime.min.replace(tzinfo=UTC)
            return max(matches, key=lambda c: (c.attributes.createdAt or far, c.id)) if matches else None

        return mapping.patient_of(await self._reconciled(create, landed, "client creation"))

    # ------------------------------------------------------------------------------------------------ catalog

    async def list_practitioners(self) -> list[Practitioner]:
        pages = await self.client.list("team-members", wire.TeamMemberListDocument)
        members = [m for page in pages for m in page.data]
        return [
            mapping.practitioner_of(m)
            for m in members
            if m.attributes.isClinician is None or wire.as_bool(m.attributes.isClinician)
        ]

    async def list_services(self) -> list[Service]:
        self._codes = None  # the catalog route asks for fresh data
        codes = await self._cpt_codes()
        return [mapping.service_of(c) for c in codes.values() if not wire.as_bool(c.attributes.callToBook)]

    async def _office(self) -> wire.Office:
        pages = await self.client.list("offices", wire.OfficeListDocument)
        for office in (o for page in pages for o in page.data):
            if office.id == self.office_id:
                return office
        raise NotFound(
            f"SimplePractice has no office {self.office_id} in this practice: check the location's office_id"
        )

    async def list_locations(self) -> list[Location]:
        return [mapping.location_of(await self._office())]

    async def check(self) -> None:
        """Reads the offices: proves the session, the Api-Version and `office_id` together."""
        await self._office()

    # ------------------------------------------------------------------------------------------------ availability

    async def availability(self, query: AvailabilityQuery) -> list[Slot]:
        if not _digits(query.practitioner_id):
            raise NotFound("SimplePractice clinician ids are numeric")
        code = await self._cpt_code(query.service_id)
        minutes = mapping.duration_of(code)
        start, end = self._utc(query.start_from), self._utc(query.start_to)
        found: dict[datetime, Slot] = {}
        window = start
        while window < end:
            window_end = min(window + timedelta(days=SLOT_WINDOW_DAYS), end)
            params = [
                ("filter[clinicianId]", query.practitioner_id),
                ("filter[cptCodeId]", code.id),
                ("filter[officeId]", self.office_id),
                ("filter[startDate]", mapping.iso_z(window)),
                ("filter[endDate]", mapping.iso_z(window_end)),
                ("filter[timeZone]", self.context.time_zone),
            ]
            days = await self.client.portal_get("slots", wire.SlotListDocument, params)
            for day in days.data:
                for spot in day.attributes.spots:
                    spot_start = self._utc(spot.start)
                    if start <= spot_start < end:
                        spot_end = self._utc(spot.end) if spot.end is not None else spot_start
                        if spot_end <= spot_start:
                            spot_end = spot_start + timedelta(minutes=minutes)
                        found[spot_start] = Slot(
                            start=spot_start,
                            end=spot_end,
                            practitioner_id=query.practitioner_id,
                            service_id=query.service_id,
                            time_zone=self.context.time_zone,
                        )
            window = window_end
        return [found[s] for s in sorted(found)]

    # ------------------------------------------------------------------------------------------------ change feed

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        """Clients changed at or after `cursor` (newest first until older ones) and this office's appointments
        starting from two weeks ago to six months ahead that changed since. No webhooks exist, so this polls.

        With no cursor the feed starts now. `>=` re-reads records stamped at the cursor; the caller compares
        snapshots, so a repeat is harmless while a miss would not be.
        """
        now = datetime.now(UTC)
        if cursor is None:
            return ChangeSet(patients=[], appointments=[], cursor=mapping.iso_z(now))
        try:
            since = datetime.fromisoformat(cursor)
        except ValueError:
            raise Rejected("the change cursor is not an RFC 3339 time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        clients = await self._clients_since(since)
        appointments = [
            a
            for a in await self._calendar(now - CHANGE_BACK, now + CHANGE_AHEAD)
            if a.type == mapping.CLIENT_APPOINTMENT
            and mapping.office_of(a) == self.office_id
            and (a.attributes.updatedAt is None or a.attributes.updatedAt >= since)
        ]
        stamps = [c.attributes.updatedAt for c in clients if c.attributes.updatedAt] + [
            a.attributes.updatedAt for a in appointments if a.attributes.updatedAt
        ]
        far = datetime.min.replace(tzinfo=UTC)
        return ChangeSet(
            patients=[mapping.patient_of(c) for c in sorted(clients, key=lambda c: c.attributes.updatedAt or far)],
            appointments=[
                self._appointment(a)
                for a in sorted({a.id: a for a in appointments}.values(), key=lambda a: a.attributes.updatedAt or far)
            ],
            cursor=mapping.iso_z(max(stamps)) if stamps else mapping.iso_z(since),
        )

    async def _clients_since(self, since: datetime) -> list[wire.Client]:
        """Clients by last change, newest first, page by page until a page reaches back before `since`."""
        changed: dict[str, wire.Client] = {}
        for number in range(1, 201):
            params = [("sort", "-updatedAt"), ("page[number]", str(number)), ("page[size]", "50")]
            page = await self.client.get("clients", wire.ClientListDocument, params)
            older = False
            for c in page.data:
                stamp = c.attributes.updatedAt
                if stamp is not None and stamp < since:
                    older = True
                    continue
                changed[c.id] = c
            if older or not page.data or page.links is None or not page.links.next:
                break
        return list(changed.values())

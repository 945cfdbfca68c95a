"""The SimplePractice adapter: one gateway location is one office (`settings.office_id`) of one practice.

SimplePractice has no public API and no webhooks. Like the commercial product it replaces, the adapter uses the
clinician web app's JSON:API with a signed-in session (cookie + CSRF token), and the practice's client-portal API for
open slots. Change detection polls: clients newest-changed first, the calendar near now on every poll and the rest
of it in slices, one page a poll (`changes_since`). Every write is UNVERIFIED by any public capture (see
writes.py): none shows the clinician app creating, moving or cancelling an appointment or creating a client
(evidence-2026-11 §5.2).

Because the write shapes are guesses, every booking and reschedule is verified (adapters.verify): what
SimplePractice stored, read from its answer to the write when that answer is the whole record (`startTime`,
`endTime`, the clinician and the `client` relationship), else from a read-back `GET /appointments/{id}`, is compared
with what was asked. A booking costs 3 calls (`min_booking_calls`): the clinician's calendar before the write, the
create, and the calendar after it (the double-booking check). `cpt-codes` (the service's length) is read once per
pooled adapter; a read-back is a 4th, only when the create's answer is not the whole record.

A create is never sent twice (adapters.reconcile). When its answer is lost (a timeout, a dropped connection, a
500/502/504 from a proxy while SimplePractice may still finish), the clinician's calendar at that minute is read
again and again for `write_patience_seconds` and the booking adopted when it appears; otherwise `OutcomeUnknown`
with the operation id, and `find_booking` (the same calendar read) lets the gateway's reconciler adopt a late one.
The booking's `memo` ends with the gateway's marker `[egw:<operation id>]` (removed from the notes callers see, kept
when a reschedule changes notes), so the same client's other booking at that minute is not taken for this one. If
the calendar cannot be read after the write, the slot is not assumed free: the booking is cancelled (a reschedule
moved back) and the answer is `Unavailable`; if that undo fails too, `OutcomeUnknown`.

Lists page by `page[number]`/`page[size]=50` and continue while a page is full (or `links.next` names the next
page): no source shows `links.next` or a total on `/frontend`, and the portal's "A short page is the last page"
(evidence-2026-11 §5.2). So appointments, client search and the change feed never stop at 50 records.

UNCONFIRMED facts this adapter (and its emulator) take a side on:
- Write endpoints and bodies: JSON:API POST/PATCH on `/frontend/appointments` and POST `/frontend/clients`
  (writes.py); a cancel is a PATCH setting `attendanceStatus: "Canceled"` and a free-text `cancelReason`
  ("<reason label>: <note>"), not a DELETE, so the appointment stays readable as cancelled. No public capture of any
  clinician-app write exists (evidence-2026-11 §5.2; chrischall/simplepractice-mcp leaves writes out of scope).
- Notes, and with them the gateway's operation marker, go out as a `memo` attribute; the calendar's own
  `fields[appointments]` list names `appointmentMemo` (a related resource), not `memo` (the Playwright calendar
  fetcher, index id 53319860214; evidence-2026-11 §5.2 table). A `memo` SimplePractice ignores would be lost
  silently; notes are not part of write verification. Without the marker, a lost create is still recognised by
  client, clinician, office, CPT code and start — but then the same client's other booking at that minute could
  be taken for it — so an unmarked appointment counts only while none at that minute carries any marker.
- The client is the `client` relationship, on writes and reads. The calendar includes `appointmentClients`; one
  reader uses `relationships.client` (53319860214), another checks `clients`/`appointmentClients`/`clientCouples`
  (mcw-sp-gateway, 68374499997). If SimplePractice names the client only another way, write verification sees no
  client and undoes every booking; `locations verify` checks that listed appointments carry it.
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
- `/frontend` lists honour `page[number]`/`page[size]` (a list that ignores them arrives whole, which is read as
  such; one that repeats a full page is `ContractChanged`). Appointments carry `updatedAt` and `createdAt`.
- SimplePractice accepts overlapping appointments: the adapter checks the clinician's calendar (client and
  non-client appointments, in every office) before a write and after it, and the earlier booking keeps a raced slot.
- An expired session answers `401` with a JSON:API error (a redirect to sign-in is treated the same); a stale CSRF
  token answers a JSON:API `403`; the rate limit answers `429` with `Retry-After`. A `403` that is not JSON:API is
  the CDN/WAF's (CloudFront) refusal page, answered before SimplePractice saw the request: `Unavailable`, not a
  session problem (chrischall/simplepractice-mcp `src/client.ts`, evidence-2026-11 §5.2).
- The client portal's `Api-Version` is `2026-05-25` (live-confirmed, evidence-2026-11 §5.1); whether older values
  such as `2020-01-01` are still served is unknown. Client-portal `slots` spots carry `start`/`end` with an offset;
  at most 31 days are asked per request.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar, TypeVar
from zoneinfo import ZoneInfo

import httpx

from adapters import probes
from adapters.base import AdapterContext, Capability, EMRAdapter
from adapters.errors import (
    AdapterError,
    AlreadyCancelled,
    ContractChanged,
    InvalidReference,
    NotFound,
    OutcomeUnknown,
    Rejected,
    SlotUnavailable,
    Unavailable,
)
from adapters.http import DEFAULT_RETRY, RetryPolicy, decode
from adapters.markers import operation_of, with_marker, without_marker
from adapters.pacing import RateLimit
from adapters.reconcile import AmbiguousWrite
from adapters.simplepractice import feed, mapping, wire, writes
from adapters.simplepractice.client import PAGE_SIZE, SimplePracticeClient
from adapters.simplepractice.feed import CHANGE_AHEAD as CHANGE_AHEAD  # the bench sizes its floor with these
from adapters.simplepractice.feed import CHANGE_BACK as CHANGE_BACK
from adapters.simplepractice.settings import SimplePracticeCredentials, SimplePracticeSettings
from adapters.verify import Asked, Written
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
from schemas.verify import SettingCheck

T = TypeVar("T")

SLOT_WINDOW_DAYS = 31
# A patient's appointments with no bounds: ten years back to two years ahead (the calendar needs a time range;
# visit and cancellation counts in patient snapshots need the whole history).
LIST_BACK = timedelta(days=3653)
LIST_AHEAD = timedelta(days=731)
VERIFY_BACK = timedelta(days=28)  # `locations verify` looks at this office's appointments in this window
VERIFY_AHEAD = timedelta(days=7)
FIRST_PAGE = (("page[number]", "1"), ("page[size]", str(PAGE_SIZE)))
# Where the doubt about each setting `observed_settings()` checks comes from.
SOURCES = {
    "api_version": "evidence-2026-11 §5.1: 2026-05-25 seen live in 2026, 2025-03-21 earlier; the value moves",
    "portal_api_version": "evidence-2026-11 §5.2: the live portal sends 2026-05-25; 2020-01-01 may no longer be served",
    "time_zone": "evidence-2026-11 §5.1: appointment times carry an offset (taken as the practice's zone: UNCONFIRMED)",
}
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
    # No published rate budget, and the session is a clinician's own: an idle poll costs 3 requests (clients by last
    # change, the near window while it holds at most 50 entries, one far slice of the calendar: `changes_since`), so
    # every 5 minutes stays far below what the web app's own calendar view sends while someone has it open.
    default_poll_seconds: ClassVar[int] = 300
    # Unpublished; no faster than a person clicking through the web app.
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=2.0, burst=10),)
    min_booking_calls: ClassVar[int] = 3  # pre-check, create, post-check
    # The full listing covers what a client's own listing does (LIST_BACK to LIST_AHEAD): snapshots from facts
    # count exactly what they counted when each client's appointments were read.
    full_listing_complete: ClassVar[bool] = True
    # Times go out as the location's wall time with its offset; a practice in another zone that read the wall time
    # would store them hours off. Both ends are sent (`endTime`), so no unit setting is involved.
    write_settings: ClassVar[dict[str, str]] = {
        "start": "the location's time_zone (must be the practice's time zone in SimplePractice)",
        "end": "the location's time_zone (must be the practice's time zone in SimplePractice)",
    }
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

    async def _send(self, request: writes.WriteRequest) -> wire.Appointment:
        """Send an appointment write; what SimplePractice stored: its answer when that is the whole record, else a
        read-back. A record nobody can name or read back leaves the outcome unclear (the caller reconciles)."""
        content = await self.client.write(request)
        target = request.path.rpartition("/")[2] if request.method != "POST" else None
        if content is not None:
            try:
                answered: wire.Appointment | None = decode(content, wire.AppointmentDocument, emr=EMR_NAME).data
            except ContractChanged:
                answered = None
            if answered is not None and mapping.is_whole(answered):
                return answered
            with contextlib.suppress(ContractChanged):
                target = decode(content, wire.WrittenRefDocument, emr=EMR_NAME).data.id
        if target is None:
            raise AmbiguousWrite("the answer to the write names no appointment")
        try:
            return (await self.client.get(f"appointments/{target}", wire.AppointmentDocument)).data
        except AdapterError as exc:
            raise AmbiguousWrite(f"reading the write back failed ({type(exc).__name__})") from None

    # ------------------------------------------------------------------------------------------------ appointments

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return self._appointment(await self._fetch(appointment_id))

    async def _book(self, command: BookCommand) -> Written:
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
            memo=with_marker(command.notes, command.operation_id),
        )

        async def landed() -> wire.Appointment | None:
            found = await self._made_by(command, start)
            return found[0] if found else None

        created = await self._reconciled(
            lambda: self._send(request), landed, "booking", resend=False, operation_id=command.operation_id
        )
        withdraw = writes.cancel(created.id, reason=mapping.cancel_text(CancelReason.OTHER, RACE_NOTE))
        try:
            lost = await self._lost_race(created, command.practitioner_id)
        except AdapterError:
            # The calendar could not be read after the write: an unverifiable check is not "no conflict".
            await self._undo(withdraw, "the booking could not be checked and withdrawing it", command.operation_id)
            raise Unavailable("SimplePractice could not confirm the slot was free; the booking was withdrawn") from None
        if lost:
            await self._undo(withdraw, "a double booking was detected and withdrawing it", command.operation_id)
            raise SlotUnavailable("the slot was taken at the same moment; the new booking was cancelled")
        asked = Asked(start=start, end=end, practitioner_id=command.practitioner_id, patient_id=command.patient_id)
        return Written(stored=self._appointment(created), asked=asked)

    async def _made_by(self, command: BookCommand, start: datetime) -> list[wire.Appointment]:
        """The live appointments `command` may have created: this office's, for its client, clinician and service,
        starting at `start`, lowest id first. With an operation id, the one carrying its marker; one carrying
        another operation's marker never counts. Unmarked ones count only while no candidate carries any marker:
        whether SimplePractice keeps `memo` is UNCONFIRMED, and if it drops it, nothing is ever marked; if it keeps
        it, ours would be marked, so an unmarked one is someone else's."""
        near = await self._calendar(start, start + timedelta(minutes=1), clinician_id=command.practitioner_id)
        candidates = sorted(
            (
                entry
                for entry in near
                if entry.type == mapping.CLIENT_APPOINTMENT
                and mapping.office_of(entry) == self.office_id
                and mapping.client_of(entry) == command.patient_id
                and mapping.clinician_of(entry) == command.practitioner_id
                and mapping.code_of(entry) == command.service_id
                and mapping.span_of(entry)[0] == start
                and mapping.status_of(entry.attributes.attendanceStatus) is not AppointmentStatus.CANCELLED
            ),
            key=lambda entry: (len(entry.id), entry.id),
        )
        mine = [c for c in candidates if operation_of(c.attributes.memo) == command.operation_id]
        if mine or command.operation_id is None:
            return mine
        if any(operation_of(c.attributes.memo) is not None for c in candidates):
            return []
        return candidates

    async def find_booking(self, command: BookCommand) -> Appointment | None:
        """One calendar read of the clinician's minute at the command's start (`_made_by`): the same test the
        booking's own reconciliation uses, so the reconciler adopts exactly what a late answer would have."""
        if not (_digits(command.patient_id) and _digits(command.practitioner_id)):
            return None
        found = await self._made_by(command, self._utc(command.start))
        return self._appointment(found[0]) if found else None

    async def _undo(self, request: writes.WriteRequest, what: str, operation_id: str | None = None) -> None:
        """Withdraw a write (cancel a booking, move an appointment back). A 2xx is enough: the stored record is not
        needed, so no read-back can fail it. Failing, it is `OutcomeUnknown`: a person must look."""
        try:
            await self.client.write(request)
        except (AdapterError, AmbiguousWrite):
            raise OutcomeUnknown(
                f"{what} failed; appointment {request.path.rpartition('/')[2]} needs a person to look at it",
                operation_id=operation_id or str(uuid.uuid4()),
            ) from None

    async def _reschedule(self, command: RescheduleCommand) -> Written:
        current = await self._fetch(command.appointment_id)
        if mapping.status_of(current.attributes.attendanceStatus) is AppointmentStatus.CANCELLED:
            raise AlreadyCancelled("a cancelled appointment cannot be rescheduled")
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
        previous = self._appointment(current)
        asked = Asked(start=start, end=end, practitioner_id=clinician)
        if not moves and command.notes is None:
            return Written(stored=previous, asked=asked, previous=previous)
        if moves and await self._overlapping(clinician, start, end, exclude_id=current.id):
            raise SlotUnavailable("the clinician already has an appointment at that time")
        request = writes.reschedule(
            current.id,
            start=self._local(start) if moves else None,
            end=self._local(end) if moves else None,
            clinician_id=clinician if clinician != old_clinician else None,
            # New notes keep the gateway's marker: the booking stays recognisable as its operation's.
            memo=with_marker(command.notes, operation_of(current.attributes.memo))
            if command.notes is not None
            else None,
        )

        async def landed() -> wire.Appointment | None:
            seen = await self._fetch(current.id)
            applied = mapping.span_of(seen)[0] == start and mapping.clinician_of(seen) == clinician
            noted = command.notes is None or without_marker(seen.attributes.memo) == without_marker(command.notes)
            return seen if applied and noted else None

        updated = await self._reconciled(lambda: self._send(request), landed, "reschedule", resend=True)
        if moves:
            back = writes.reschedule(
                current.id,
                start=self._local(old_start),
                end=self._local(old_end),
                clinician_id=old_clinician if clinician != old_clinician else None,
                memo=(current.attributes.memo or "") if command.notes is not None else None,
            )
            try:
                lost = await self._lost_race(updated, clinician)
            except AdapterError:
                # An unverifiable check is not "no conflict": the appointment goes back where it was.
                await self._undo(back, "the new slot could not be checked and moving the appointment back")
                raise Unavailable(
                    "SimplePractice could not confirm the new slot was free; the appointment was moved back"
                ) from None
            if lost:
                await self._undo(back, "a double booking was detected and moving the appointment back")
                raise SlotUnavailable("the new slot was taken at the same moment; the appointment was left as it was")
        return Written(stored=self._appointment(updated), asked=asked, previous=previous)

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

        return self._appointment(
            await self._reconciled(lambda: self._send(request), landed, "cancellation", resend=True)
        )

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

    async def _client_written(self, content: bytes | None) -> wire.Client:
        """The created client from the answer, or read back by the id it names; unclear if it names none."""
        if content is None:
            raise AmbiguousWrite("the answer to the client creation names no client")
        try:
            return decode(content, wire.ClientDocument, emr=EMR_NAME).data
        except ContractChanged:
            pass
        try:
            target = decode(content, wire.WrittenRefDocument, emr=EMR_NAME).data.id
            return (await self.client.get(f"clients/{target}", wire.ClientDocument)).data
        except AdapterError as exc:
            raise AmbiguousWrite(f"the answer to the client creation was unreadable ({type(exc).__name__})") from None

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
            return await self._client_written(await self.client.write(request))

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

        return mapping.patient_of(await self._reconciled(create, landed, "client creation", resend=False))

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
        """Clients changed since the cursor, and this office's appointments changed since then. SimplePractice has
        no webhooks, and its calendar (`filter[timeRange]`) has no "changed since" filter and no sort by last change
        in any capture (evidence-2026-11 §5.1; notes §3.3), so a poll reads three things:

        - clients by last change, newest first (`sort=-updatedAt`), until a page reaches back before the cursor;
        - the near window, from a day ago to two days ahead (`NEAR_BACK`, `NEAR_AHEAD`), whole: a change there is
          reported at the next poll;
        - one far slice: the rest of the watched window (two weeks back to six months ahead, `CHANGE_BACK`,
          `CHANGE_AHEAD`) is walked in slices, one a poll, each fitted to hold about 40 calendar entries
          (`SLICE_TARGET`); a slice whose one page comes back full is read again shorter at the next poll. A pass
          ends at six months ahead and the next starts two weeks back. Slices report what changed since the
          previous pass began, so a change may come again a pass later (the gateway compares digests), never be
          skipped; an appointment reaching the near window before the walk reached it is checked the same way.

        One quiet poll costs 1 + ceil(N / 50) + 1 requests, N being the calendar entries in the near window (the
        practice's, every office and type: the calendar is read practice-wide, then filtered): 3 while N <= 50.

        A change anywhere else in the window is reported within one pass: about E / 40 polls, E being the calendar
        entries in the window outside the near window, when they are spread evenly; up to about E / 20 when busy
        weeks alternate with empty ones (a slice's length at most halves or doubles per poll), and ~7 polls more on
        the first pass over a sparse calendar. 1,000 entries: ~25 polls, about 2 h at the default 300 s.

        10,000 upcoming sessions (six months, ~55 a day) at one poll per 300 s (288 a day): clients 1 + near window
        ceil(3 days x 55 / 50) = 4 + far slice 1 = 6 a poll, 6 x 288 = 1,728 requests a day (the feed before the walk
        read the whole window every poll: ~10,800 entries / 50 = 216 pages, ~62,000 a day). A pass then takes
        ~10,600 / 40 = 265 polls (22 h), up to ~530 (44 h) on a lumpy calendar: the bound on a far change.

        The cursor is `<since>|<walk as JSON>` (adapters/simplepractice/feed.py); a bare RFC 3339 time, as the first
        poll returns and older versions stored, starts a pass that reports every change since that time. One more
        than a day old (the full listing's 2000-01-01, a location not polled for a day) is caught up at once: the
        whole window is read, ceil(E / 50) requests, once; a cursor from before `LIST_BACK` (the full listing's
        2000-01-01) reads the span a client's own listing covers instead, ten years back to two ahead, so that
        listing is complete in the same sense. With no cursor the feed starts now. `>=` re-reads
        records stamped at the cursor: a repeat is harmless, a miss not.
        """
        now = datetime.now(UTC)
        if cursor is None:
            return ChangeSet(patients=[], appointments=[], cursor=mapping.iso_z(now))
        state = feed.parse(cursor, now)
        since, walk = state.since, state.walk
        clients = await self._clients_since(since)
        if feed.catching_up(state, now):  # the whole window at once; a pass starts from now on
            # A full listing reads what a client's own listing covers (ten years back, two ahead), so the gateway
            # may build every snapshot from what it stored (`full_listing_complete`).
            span = (now - LIST_BACK, now + LIST_AHEAD) if since <= now - LIST_BACK else feed.window(now)
            changed = [a for a in await self._calendar(*span) if self._changed_here(a, since)]
            walk = feed.caught_up(now)
        else:
            changed, walk = await self._calendar_changed(since, walk, now)
        appointments = {a.id: a for a in changed}
        stamps = [since] + [c.attributes.updatedAt for c in clients if c.attributes.updatedAt]
        stamps += [a.attributes.updatedAt for a in appointments.values() if a.attributes.updatedAt]
        far_past = datetime.min.replace(tzinfo=UTC)
        return ChangeSet(
            patients=[mapping.patient_of(c) for c in sorted(clients, key=lambda c: c.attributes.updatedAt or far_past)],
            appointments=[
                self._appointment(a)
                for a in sorted(appointments.values(), key=lambda a: (a.attributes.updatedAt or far_past, a.id))
            ],
            cursor=feed.render(max(stamps), walk),
        )

    async def _calendar_changed(
        self, since: datetime, walk: feed.Walk, now: datetime
    ) -> tuple[list[wire.Appointment], feed.Walk]:
        """The appointments one poll reports (the near window's, one far slice's) and the walk after it."""
        near = [
            a
            for a in await self._calendar(*feed.near(now))
            if self._changed_here(a, walk.floor if feed.entered(a.attributes.startTime, walk) else since)
        ]
        start, end = feed.next_slice(walk, now)
        entries, complete = await self._far_slice(start, end)
        far = [a for a in entries if self._changed_here(a, walk.floor)]
        reach = None if complete else max(a.attributes.startTime for a in entries)
        return [*far, *near], feed.after_slice(walk, start, end, len(entries), complete, now, reach)

    def _changed_here(self, appointment: wire.Appointment, since: datetime) -> bool:
        """A client appointment of this office changed at or after `since` (or with no stamp to tell)."""
        stamp = appointment.attributes.updatedAt
        return (
            appointment.type == mapping.CLIENT_APPOINTMENT
            and mapping.office_of(appointment) == self.office_id
            and (stamp is None or stamp >= since)
        )

    async def _far_slice(self, start: datetime, end: datetime) -> tuple[list[wire.Appointment], bool]:
        """One page of the calendar in [start, end), and whether that was all of it: a full page is not, unless
        the slice is `MIN_SLICE` long or less, when its other pages are read too (a slice never shrinks to nothing).
        A page longer than asked is the whole calendar answered unpaged."""
        span = f"{self._local(start).isoformat()},{self._local(end).isoformat()}"
        page = await self.client.get(
            "appointments", wire.AppointmentListDocument, [("filter[timeRange]", span), *FIRST_PAGE]
        )
        if len(page.data) != PAGE_SIZE:
            return list(page.data), True
        if end - start > feed.MIN_SLICE:
            return list(page.data), False
        return await self._calendar(start, end), True

    async def _clients_since(self, since: datetime) -> list[wire.Client]:
        """Clients by last change, newest first, page by page until a page reaches back before `since`."""

        def reaches_back(page: wire.ClientListDocument) -> bool:
            return any(c.attributes.updatedAt is not None and c.attributes.updatedAt < since for c in page.data)

        pages = await self.client.list("clients", wire.ClientListDocument, [("sort", "-updatedAt")], until=reaches_back)
        changed = {
            c.id: c
            for page in pages
            for c in page.data
            if c.attributes.updatedAt is None or c.attributes.updatedAt >= since
        }
        return list(changed.values())

    # ------------------------------------------------------------------------------------------------ locations verify

    def verify_probes(self) -> list[tuple[str, probes.ProbeFn]]:
        """One page of clients by last change (the change feed's list), one client read, and whether this office's
        appointments carry what write verification reads (`endTime`, the clinician, the `client` relationship)."""
        first: list[wire.Client] = []

        async def clients() -> str:
            page = await self.client.get("clients", wire.ClientListDocument, [("sort", "-updatedAt"), *FIRST_PAGE])
            first[:] = page.data
            return f"{len(page.data)} client(s) on the first page"

        async def client_read() -> str | None:
            if not first:
                raise probes.Skip("no client to read")
            await self.get_patient(first[0].id)
            return None

        async def appointment_fields() -> str:
            mine = await self._recent_page()
            if not mine:
                raise probes.Skip("no appointment of this office in the last 4 or the next week")
            checks: list[tuple[str, Callable[[wire.Appointment], bool]]] = [
                ("$.data[].attributes.endTime", lambda a: a.attributes.endTime is None),
                ("$.data[].attributes.clinicianId", lambda a: mapping.clinician_of(a) is None),
                ("$.data[].relationships.client", lambda a: mapping.client_of(a) is None),
            ]
            for path, lacks in checks:
                missing = sum(1 for a in mine if lacks(a))
                if missing:
                    raise ContractChanged(
                        f"SimplePractice's appointments lack a member write verification reads ({path})",
                        path=path,
                        problem=f"missing on {missing} of {len(mine)} appointment(s)",
                    )
            return f"{len(mine)} appointment(s) name their end, clinician and client"

        return [("clients", clients), ("client read", client_read), ("appointment fields", appointment_fields)]

    async def _recent_page(self) -> list[wire.Appointment]:
        """This office's client appointments on the first calendar page from 4 weeks back to 1 week ahead."""
        now = datetime.now(UTC)
        span = f"{self._local(now - VERIFY_BACK).isoformat()},{self._local(now + VERIFY_AHEAD).isoformat()}"
        page = await self.client.get(
            "appointments", wire.AppointmentListDocument, [("filter[timeRange]", span), *FIRST_PAGE]
        )
        return [a for a in page.data if a.type == mapping.CLIENT_APPOINTMENT and mapping.office_of(a) == self.office_id]

    async def observed_settings(self) -> list[SettingCheck]:
        """The two `Api-Version` settings (does SimplePractice serve JSON:API with them?) and the location's zone
        (do the offsets SimplePractice writes on this office's appointments match it?)."""
        checks: list[SettingCheck] = []
        for setting, observe in (
            ("api_version", self._frontend_version),
            ("portal_api_version", self._portal_version),
            ("time_zone", self._zone),
        ):
            try:
                checks.append(await observe())
            except AdapterError as exc:  # one refused read must not hide what the others show
                configured = self.context.time_zone if setting == "time_zone" else getattr(self.settings, setting)
                observed = f"not observed: {type(exc).__name__}"
                checks.append(
                    SettingCheck(setting=setting, configured=configured, observed=observed, source=SOURCES[setting])
                )
        return checks

    async def _frontend_version(self) -> SettingCheck:
        status = await self.client.accepts("offices", FIRST_PAGE, portal=False)
        configured = self.settings.api_version
        source = SOURCES["api_version"]
        if status is None:
            return SettingCheck(
                setting="api_version", configured=configured, observed="answered JSON:API", agrees=True, source=source
            )
        if status in (401, 403) or 300 <= status < 400:
            observed = f"HTTP {status}: the session or the edge refused the request, so the version cannot be judged"
            return SettingCheck(setting="api_version", configured=configured, observed=observed, source=source)
        return SettingCheck(
            setting="api_version",
            configured=configured,
            observed=f"HTTP {status} instead of JSON:API",
            agrees=False,
            source=source,
        )

    async def _portal_version(self) -> SettingCheck:
        configured = self.settings.portal_api_version
        source = SOURCES["portal_api_version"]
        members = (await self.client.get("team-members", wire.TeamMemberListDocument, FIRST_PAGE)).data
        codes = list((await self._cpt_codes()).values())
        if not members or not codes:
            observed = "no clinician and service to ask the portal about"
            return SettingCheck(setting="portal_api_version", configured=configured, observed=observed, source=source)
        now = datetime.now(UTC)
        params = [
            ("filter[clinicianId]", members[0].id),
            ("filter[cptCodeId]", codes[0].id),
            ("filter[officeId]", self.office_id),
            ("filter[startDate]", mapping.iso_z(now)),
            ("filter[endDate]", mapping.iso_z(now + timedelta(days=1))),
            ("filter[timeZone]", self.context.time_zone),
        ]
        status = await self.client.accepts("slots", params, portal=True)
        observed = "answered JSON:API" if status is None else f"HTTP {status} instead of JSON:API"
        return SettingCheck(
            setting="portal_api_version", configured=configured, observed=observed, agrees=status is None, source=source
        )

    async def _zone(self) -> SettingCheck:
        zone = ZoneInfo(self.context.time_zone)
        source = SOURCES["time_zone"]
        seen: set[str] = set()
        agrees: bool | None = None
        for appointment in await self._recent_page():
            start = appointment.attributes.startTime
            offset = start.utcoffset()
            if offset is None:
                continue
            seen.add(_offset_text(offset))
            matches = offset == start.astimezone(zone).utcoffset()
            agrees = matches if agrees is None else agrees and matches
        observed = (
            "offsets " + ", ".join(sorted(seen)) if seen else "no appointment of this office in the last 4 or next week"
        )
        return SettingCheck(
            setting="time_zone", configured=self.context.time_zone, observed=observed, agrees=agrees, source=source
        )


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

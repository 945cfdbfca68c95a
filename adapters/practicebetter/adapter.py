"""The Practice Better adapter: one gateway location is one Practice Better practice (one client id/secret).

Facts from the notes and evidence-2026-11 §3 this adapter and its emulator take a side on:
- `sessionDate`: sent as naive wall time (`session_date_mode="wall_time"`) in `session_date_zone`, by default the
  location's time zone. The only integrator who books in production found Practice Better ignores a trailing `Z`
  and the `timeZone` field, reads the clock time in the account's zone (US Eastern for theirs) and answers 500 to an
  offset. No endpoint is evidenced that tells the account's zone (`GET /timezones` lists names; `profile.timeZone`
  is a client's), hence the location's. "utc" (an instant with `Z`, as swagger readers send) stays selectable.
  Responses carry `sessionDate`/`endDate` as UTC instants with `Z`; a naive one is read in the zone we send in.
- `duration` unit: `duration_unit="auto"` reads it off an existing session (its `duration` against its own start
  and end instants) before the first write; with no session to read, minutes (`settings.FALLBACK_UNIT`).
- Writes are verified (adapters.verify): the stored start and end are Practice Better's own `sessionDate` and
  `endDate`, so a wrong zone or unit is a `WriteMismatch` (undone), never a session silently hours or 60x off.
  A booking is 1 call: the create (`ignoreConflict: false`, so Practice Better itself refuses an overlap with 409),
  whose answer is the stored session verification reads; the first booking of an adapter instance may also read the
  services (the length, when the caller gives no end) and, in `auto`, one page of sessions (the unit); a create
  whose answer is lost adds one session list per look while it is watched for. A reschedule
  is 3: read, `PUT …/date`, and a read-back that verification reads (the `PUT`'s answer is not evidenced).
- A create is never sent twice (adapters.reconcile): one whose answer is lost (a timeout, a dropped connection, a
  500/502/504 from a proxy while Practice Better may still finish) is watched for `write_patience_seconds` and
  adopted when it appears, else `OutcomeUnknown` with the operation id. Sessions keep `notes` (optional on create,
  evidence §3.1), so a booking carries the gateway's marker there (`adapters.markers`; stripped from the notes
  callers see): the lookup (client, consultant, service, within 40 h of the start) takes the session with this
  operation's marker wherever it landed, never one with another operation's marker. Without a marker to go by, a
  session created since the write at the asked instant, or at our wall time read in some UTC offset. A session
  found hours away is then verified (and cancelled). `find_booking` runs the same lookup for the reconciler.
- No post-write race check: Practice Better refuses an overlapping session itself (`409` with `ignoreConflict:
  false`, on create and on `PUT …/date`), so two racers cannot both keep a slot and nothing is read after the write.
  Whether that refusal is atomic inside Practice Better is not evidenced.
- Client records: a create is never sent twice either; one whose answer is lost is looked for by e-mail, which
  Practice Better keeps unique per practice (a duplicate is refused).
- Token lifetime: `expires_in` is honoured; 3600 s when missing; re-minted 60 s early, and once on a 401.
- Rate limit: 5 requests/s with bursts of 20 (integrators citing the swagger); a 429's `Retry-After` pauses the
  practice's requests (they fail fast with `RateLimited`) until it passes.
- Members envelope key: `members` or `items`, both read. Member e-mails: `profile.emailAddress` when present.
- Availability: `day=YYYY-MM-DDT00:00:00` covers that one calendar day in the practice's zone; one call per day.
- Cancel reasons: Practice Better keeps cancellation notes only; the reason travels in the note and is reported on
  the cancel's answer, not on later reads.
- Change feed: sessions have no "modified since" filter and list newest created first, so a quiet poll reads
  records since the cursor, the newest-created page of sessions (new bookings anywhere), the near window (a day back
  to two days ahead) whole, and one page of a walk over every session from a day back: 4 requests, and a far change
  shows within one pass of the walk (ceil(sessions / 100) polls). See `changes_since` for the arithmetic. Practice
  Better's webhooks (gateway/routes/practicebetter_webhooks.py) make changes visible sooner where subscribed
  (`session_webhooks` then drops the scan and the near window); sessions that started go to the daily sweep.
- Client records: `profile.emailAddress` is required on create (the swagger), so a patient without one is refused
  before anything is sent. A duplicate e-mail may answer 409 (the swagger), 400 or 500 (the production integrator):
  each ends in the existing client being returned (filling a missing phone or birth date with a full-record `PUT`,
  since `PUT` erases what it is not sent).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msgspec

from adapters import probes
from adapters.base import AdapterContext, Capability, EMRAdapter
from adapters.errors import (
    AdapterError,
    AlreadyCancelled,
    ContractChanged,
    InvalidReference,
    NotFound,
    Rejected,
    SlotUnavailable,
    Unavailable,
    Unsupported,
)
from adapters.http import DEFAULT_RETRY, RetryPolicy
from adapters.markers import operation_of, with_marker, without_marker
from adapters.pacing import RateLimit
from adapters.practicebetter import feed, mapping, wire
from adapters.practicebetter.client import Conflict, Params, PracticeBetterClient
from adapters.practicebetter.feed import FEED_LOOKBACK as FEED_LOOKBACK  # the bench sizes its floor with it
from adapters.practicebetter.index import (
    ClientIndex,
    IndexEntry,
    IndexKey,
    InMemoryClientIndex,
    email_digest,
    name_digest,
    phone_digest,
)
from adapters.practicebetter.settings import (
    FALLBACK_UNIT,
    DurationUnit,
    PracticeBetterCredentials,
    PracticeBetterSettings,
)
from adapters.reconcile import AmbiguousWrite
from adapters.verify import Asked, Written
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
from schemas.verify import SettingCheck

T = TypeVar("T")

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SESSIONS = "consultant/sessions"
RECORDS = "consultant/records"
MEMBERS = "company/administration/members"
SERVICES = "consultant/services"
SLOTS = "consultant/availability/slots"
UNIT_SAMPLE = 20  # sessions read to learn the `duration` unit (one page, newest first)
# A timed-out create is looked for this far either side of the asked start: a wall time read in another zone lands
# at most 26 h away (UTC-12 to UTC+14), and the list's own date filters may be read as wall time too (14 h).
LANDED_SLACK = timedelta(hours=40)
CLOCK_SKEW = timedelta(seconds=60)  # between our clock and Practice Better's `dateCreated`
OFFSETS = (timedelta(hours=-12), timedelta(hours=14))  # the UTC offsets any zone has
QUARTER = timedelta(minutes=15)  # every UTC offset in use is a whole number of quarter hours
SAME_MINUTE = timedelta(seconds=59)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNIT_SOURCE = (
    "evidence-2026-11 §3.2: swagger readers say minutes, the one production booker (idx:56693308392) seconds; "
    "read off an existing session's duration against its start and end"
)
MODE_SOURCE = (
    "evidence-2026-11 §3.2: the one production booker (idx:56693308392) saw `Z` and `timeZone` ignored, the clock "
    "read as the account's wall time, and offsets answered 500; not readable from the account: book once and look"
)
ZONE_SOURCE = (
    "evidence-2026-11 §3.2: US Eastern for that integrator's account; no endpoint is evidenced that exposes an "
    "account's zone, so it defaults to the location's: book once and look"
)

SlotAnswer = list[wire.AvailableSlot] | wire.SlotsEnvelope


EMR_NAME = "Practice Better"


class PracticeBetterAdapter(EMRAdapter[PracticeBetterSettings, PracticeBetterCredentials]):
    """Practice Better REST v1 (beta).

    `/consultant/records` filters by no e-mail, name or phone: every lookup goes through the client index (digests
    of e-mail, full name and first phone, refreshed incrementally), then re-reads the candidates.
    """

    slug: ClassVar[str] = "practicebetter"
    display_name: ClassVar[str] = "Practice Better"
    verified_against: ClassVar[str] = (
        "Practice Better API v1 (beta) as integrators read the vendor swagger (api-docs.practicebetter.io) and "
        "as one production integrator observed it (evidence-2026-11 §3); "
        "not run against a live account"
    )
    settings_type: ClassVar[type[PracticeBetterSettings]] = PracticeBetterSettings
    credentials_type: ClassVar[type[PracticeBetterCredentials]] = PracticeBetterCredentials
    # An idle poll costs 4 requests whatever the practice's size (records, newest sessions, the near window while it
    # holds at most 100, one page of the walk): every 300 s, 1,152 + 24 token mints of the 10,000 requests a day
    # integrators cite (1,464 at 10,000 upcoming sessions: `changes_since`), leaving the rest for bookings.
    default_poll_seconds: ClassVar[int] = 300
    # 5 requests/s with bursts of 20 (kept at 4.5/s), and 10,000 a day (1,000 + 0.1/s is at most 9,640 in any day).
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (
        RateLimit(per_second=4.5, burst=20),
        RateLimit(per_second=0.1, burst=1000),
    )
    min_booking_calls: ClassVar[int] = 1  # create (its answer is the read-back; PB refuses overlaps itself)
    full_listing_complete: ClassVar[bool] = True  # a cursor from 2000 lists every record and every session
    write_settings: ClassVar[dict[str, str]] = {
        "start": "settings.session_date_mode / settings.session_date_zone (unset: the location's time_zone)",
        "end": "settings.duration_unit",
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
            # Sessions are created and moved with `ignoreConflict: false`: Practice Better answers 409 on overlap.
            Capability.REJECTS_DOUBLE_BOOKING,
        }
    )

    def __init__(
        self,
        settings: PracticeBetterSettings,
        credentials: PracticeBetterCredentials,
        http: httpx.AsyncClient,
        context: AdapterContext,
    ) -> None:
        super().__init__(settings, credentials, http, context)
        self.client = PracticeBetterClient(http, settings, credentials, DEFAULT_RETRY)
        self.client_index: ClientIndex = InMemoryClientIndex()
        self._durations: dict[str, int] = {}
        self._unit_learned: DurationUnit | None = None

    @property
    def retry(self) -> RetryPolicy:
        return self.client.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.client.retry = policy

    # ------------------------------------------------------------------------------------------------ helpers

    def _utc(self, moment: datetime) -> datetime:
        return mapping.utc(moment, self.context.time_zone)

    def _wall_zone(self) -> ZoneInfo:
        """The zone Practice Better reads a naive `sessionDate` in: `session_date_zone`, else the location's."""
        name = self.settings.session_date_zone or self.context.time_zone
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise Rejected("the location's session_date_zone is not a known time zone") from None

    def _naive_zone(self) -> ZoneInfo:
        """How a naive time in an answer is read: the way this location sends them."""
        return self._wall_zone() if self.settings.session_date_mode == "wall_time" else ZoneInfo("UTC")

    def _session_date(self, start: datetime) -> str:
        return mapping.session_date(start, self.settings.session_date_mode, self._wall_zone())

    def _start_of(self, session: wire.Session) -> datetime:
        return mapping.instant(session.sessionDate, self._naive_zone())

    def _appointment(self, session: wire.Session, practitioner_id: str = "") -> Appointment:
        return mapping.appointment_of(session, self.context, self._naive_zone(), practitioner_id)

    async def _unit_shown(self) -> DurationUnit | None:
        """The `duration` unit the account's newest sessions show (read-only: one page)."""
        sessions = await self.client.page(SESSIONS, wire.Session, limit=UNIT_SAMPLE)
        return mapping.unit_shown(sessions, self._naive_zone())

    async def _unit(self, hint: wire.Session | None = None) -> DurationUnit:
        """`duration_unit`, or in `auto` the unit a session shows (`hint`, else the newest ones), learned once per
        adapter instance; with none to read, `FALLBACK_UNIT` (asked again at the next write)."""
        configured = self.settings.duration_unit
        if configured != "auto":
            return configured
        if self._unit_learned is None:
            shown = mapping.unit_of(hint, self._naive_zone()) if hint is not None else None
            self._unit_learned = shown or await self._unit_shown()
        return self._unit_learned or FALLBACK_UNIT

    async def _session(self, session_id: str) -> wire.Session:
        if not ID_RE.match(session_id):
            raise NotFound("not a Practice Better session id")
        return await self.client.get(f"{SESSIONS}/{session_id}", wire.Session)

    async def _read_back(self, session_id: str) -> wire.Session:
        """The session after a write Practice Better accepted (whose answer carries no session): a read that fails
        here leaves the write's effect unseen, not undone, so it is watched for like an unanswered write."""
        try:
            return await self._session(session_id)
        except ContractChanged:
            raise  # an answer it can no longer read: name that, it will not pass by waiting
        except AdapterError:
            raise AmbiguousWrite("the write was accepted but the session could not be read back") from None

    async def _duration(self, service_id: str) -> int:
        if service_id not in self._durations:
            await self.list_services()
        if service_id not in self._durations:
            raise Rejected(f"Practice Better has no active service {service_id}")
        return self._durations[service_id]

    def _consultant(self, practitioner_id: str | None) -> str:
        consultant = practitioner_id or self.settings.consultant_id
        if not consultant:
            raise Rejected("no practitioner given and the location has no default consultant_id")
        return consultant

    async def _sessions(self, params: Params) -> list[wire.Session]:
        return await self.client.list(SESSIONS, wire.Session, params)

    # ------------------------------------------------------------------------------------------------ sessions

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return self._appointment(await self._session(appointment_id))

    async def _book(self, command: BookCommand) -> Written:
        consultant = self._consultant(command.practitioner_id)
        start = self._utc(command.start)
        for name, value in (("patient", command.patient_id), ("service", command.service_id)):
            if not ID_RE.match(value):
                raise Rejected(f"not a Practice Better {name} id")
        if command.end is not None:
            minutes = int((self._utc(command.end) - start).total_seconds() // 60)
        else:
            minutes = await self._duration(command.service_id)
        if minutes <= 0:
            raise Rejected("the appointment must end after it starts")
        asked = Asked(
            start=start,
            end=start + timedelta(minutes=minutes),
            practitioner_id=consultant,
            patient_id=command.patient_id,
        )
        body = wire.SessionCreate(
            clientRecordId=command.patient_id,
            serviceId=command.service_id,
            serviceType=self.settings.service_type,
            sessionDate=self._session_date(start),
            duration=mapping.wire_duration(minutes, await self._unit()),
            asConsultantId=consultant,
            ignoreConflict=False,
            notify=self.settings.notify,
            notes=with_marker(command.notes, command.operation_id),
        )
        sent_at = datetime.now(UTC)

        async def create() -> wire.Session:
            try:
                return await self.client.write_decoded("POST", SESSIONS, body, wire.Session)
            except Conflict as exc:
                raise SlotUnavailable(
                    "the practitioner already has a session at that time",
                    emr_status=exc.emr_status,
                    emr_message=exc.emr_message,
                ) from None

        async def landed() -> wire.Session | None:
            return self._pick(await self._candidates(command, consultant, start), command, start, sent_at)

        session = await self._reconciled(create, landed, "booking", resend=False, operation_id=command.operation_id)
        return Written(stored=self._appointment(session, consultant), asked=asked)

    async def _candidates(self, command: BookCommand, consultant: str, start: datetime) -> list[wire.Session]:
        """The client's sessions (cancelled ones too) of that service with that consultant within `LANDED_SLACK` of
        `start`: wherever a create of `command` can have landed, even with its wall time read in another zone."""
        window = [
            ("records", command.patient_id),
            ("consultants", consultant),
            ("date_gte", mapping.rfc3339(start - LANDED_SLACK)),
            ("date_lte", mapping.rfc3339(start + LANDED_SLACK)),
        ]
        return [s for s in await self._sessions(window) if s.serviceId == command.service_id]

    def _pick(
        self, candidates: list[wire.Session], command: BookCommand, start: datetime, sent_at: datetime | None
    ) -> wire.Session | None:
        """The session `command`'s create made, among `candidates`.

        The operation's marker in `notes` settles it wherever the session landed (verification then judges its time).
        A session carrying another operation's marker is never it; once any candidate shows a marker, Practice Better
        evidently keeps notes, so an unmarked one is not it either. Without a marker to go by: a session at the asked
        instant, or (`sent_at` known: the create's own lookup) our wall time read in some other zone; only a session
        created since the write counts, and only one may (two make the outcome unknown rather than a guess)."""
        operation = command.operation_id
        if operation is not None:
            marked = [s for s in candidates if operation_of(s.notes) == operation]
            if marked:  # cancelled since (e.g. undone by verification): there is no booking to adopt
                live = [s for s in marked if not s.cancelled]
                return min(live, key=lambda s: (_aware(s.dateCreated or _EPOCH), s.id)) if live else None
            if any(operation_of(s.notes) is not None for s in candidates):
                return None
        unmarked = [s for s in candidates if not s.cancelled and operation_of(s.notes) is None]
        if sent_at is not None:
            unmarked = [s for s in unmarked if s.dateCreated is None or _aware(s.dateCreated) >= sent_at - CLOCK_SKEW]
        exact = [s for s in unmarked if abs(self._start_of(s) - start) <= SAME_MINUTE]
        if exact:
            return min(exact, key=lambda s: (_aware(s.dateCreated or _EPOCH), s.id))
        if sent_at is None:
            return None
        clock = datetime.fromisoformat(self._session_date(start).removesuffix("Z")).replace(tzinfo=None)
        misread = [s for s in unmarked if s.dateCreated is not None and _read_in_some_zone(clock, self._start_of(s))]
        if len(misread) > 1:
            raise Unavailable("more than one new session could be the booking that timed out")
        return misread[0] if misread else None

    async def find_booking(self, command: BookCommand) -> Appointment | None:
        """The session `command` made, for the gateway's reconciler and a retry after a crash (read-only): one
        session list of the client with that consultant around the start. With the operation's marker it is found
        wherever Practice Better stored it, also hours away when the wall time was read in another zone (its start
        then differs from the command's: compare before adopting it, as verification does); without one, only a
        session at the asked start."""
        consultant = self._consultant(command.practitioner_id)
        for value in (command.patient_id, consultant, command.service_id):
            if not ID_RE.match(value):
                return None
        start = self._utc(command.start)
        found = self._pick(await self._candidates(command, consultant, start), command, start, None)
        return self._appointment(found, consultant) if found is not None else None

    async def _reschedule(self, command: RescheduleCommand) -> Written:
        current = await self._session(command.appointment_id)
        before = self._appointment(current)
        if current.cancelled:
            raise AlreadyCancelled("a cancelled session cannot be rescheduled")
        if command.practitioner_id is not None and command.practitioner_id != before.practitioner_id:
            raise Unsupported("Practice Better moves a session's date only; it cannot change its practitioner")
        if command.notes is not None and command.notes != without_marker(current.notes):
            raise Unsupported("Practice Better cannot change a session's notes through its API")
        unchanged = Asked(start=before.start, end=before.end, practitioner_id=before.practitioner_id)
        if command.start is None:
            return Written(stored=before, asked=unchanged, previous=before)
        start = self._utc(command.start)
        length = (self._utc(command.end) - start) if command.end is not None else before.end - before.start
        minutes = int(length.total_seconds() // 60)
        if minutes <= 0:
            raise Rejected("the appointment must end after it starts")
        asked = Asked(start=start, end=start + timedelta(minutes=minutes), practitioner_id=before.practitioner_id)
        if start == before.start and length == before.end - before.start:
            return Written(stored=before, asked=asked, previous=before)
        body = wire.SessionDateUpdate(
            sessionDate=self._session_date(start),
            duration=mapping.wire_duration(minutes, await self._unit(current)),
            ignoreConflict=False,
        )

        async def move() -> wire.Session:
            try:
                await self.client.write("PUT", f"{SESSIONS}/{current.id}/date", body)
            except Conflict as exc:
                raise SlotUnavailable(
                    "the practitioner already has a session at that time; the session was left where it was",
                    emr_status=exc.emr_status,
                    emr_message=exc.emr_message,
                ) from None
            return await self._read_back(current.id)

        async def landed() -> wire.Session | None:
            """Moved (wherever Practice Better put it: verification judges where) or not moved at all."""
            seen = await self._session(current.id)
            if seen.dateModified is not None and current.dateModified is not None:
                return seen if seen.dateModified != current.dateModified else None
            return seen if (seen.sessionDate, seen.endDate) != (current.sessionDate, current.endDate) else None

        moved = await self._reconciled(
            move, landed, "reschedule", resend=True
        )  # the notes, and the marker in them, stay
        return Written(stored=self._appointment(moved), asked=asked, previous=before)

    async def cancel(self, command: CancelCommand) -> Appointment:
        current = await self._session(command.appointment_id)
        owner = current.clientRecord.id if current.clientRecord else None
        if command.patient_id is not None and owner != command.patient_id:
            raise NotFound("Practice Better has no such session for this client")
        if current.cancelled:
            return self._appointment(current)  # cancelling twice is a no-op, not an error
        note = f"Cancelled via EMR Gateway (reason: {command.reason.value})"
        if command.note:
            note = f"{note}: {command.note}"
        body = wire.SessionCancel(notify=self.settings.notify, notes=note)

        async def cancel() -> wire.Session:
            await self.client.write("POST", f"{SESSIONS}/{current.id}/cancel", body)
            return await self._read_back(current.id)

        async def landed() -> wire.Session | None:
            seen = await self._session(current.id)
            return seen if seen.cancelled else None

        cancelled = self._appointment(await self._reconciled(cancel, landed, "cancellation", resend=True))
        return msgspec.structs.replace(cancelled, cancel_reason=command.reason, cancel_note=command.note)

    async def list_appointments(self, query: AppointmentQuery) -> list[Appointment]:
        params: list[tuple[str, str]] = []
        for name, value in (("records", query.patient_id), ("consultants", query.practitioner_id)):
            if value is not None:
                if not ID_RE.match(value):
                    return []
                params.append((name, value))
        start_from = self._utc(query.start_from) if query.start_from is not None else None
        start_to = self._utc(query.start_to) if query.start_to is not None else None
        if start_from is not None:
            params.append(("date_gte", mapping.rfc3339(start_from)))
        if start_to is not None:
            params.append(("date_lte", mapping.rfc3339(start_to)))
        found = [self._appointment(s) for s in await self._sessions(params)]
        kept = [
            a
            for a in found
            if (start_from is None or a.start >= start_from) and (start_to is None or a.start < start_to)
        ]
        return sorted(kept, key=lambda a: (a.start, a.id))

    # ------------------------------------------------------------------------------------------------ clients

    def _entry(self, record: wire.ClientRecord) -> IndexEntry:
        email = mapping.email_of(record)
        patient = mapping.patient_of(record, self.context.time_zone)
        named = patient.first_name and patient.last_name
        return IndexEntry(
            record_id=record.id,
            email_sha256=email_digest(email) if email else None,
            name_sha256=name_digest(patient.first_name, patient.last_name) if named else None,
            phone_sha256=phone_digest(patient.phones[0]) if patient.phones else None,
            modified_at=record.dateModified,
        )

    async def _index(self, records: list[wire.ClientRecord], *, complete_since_watermark: bool = False) -> None:
        """Index `records`; the watermark moves only after a full listing since it (never for single records, or
        a record modified in between would never be paged in)."""
        if records:
            await self.client_index.upsert([self._entry(r) for r in records])
        stamps = [r.dateModified for r in records if r.dateModified is not None]
        if complete_since_watermark and stamps:
            await self.client_index.advance(max(stamps))

    async def refresh_index(self) -> int:
        """Pages the records modified since the index's watermark into it (all of them the first time)."""
        since = await self.client_index.watermark()
        params: Params = [("modified_gte", mapping.rfc3339(since))] if since is not None else []
        records = await self.client.list(RECORDS, wire.ClientRecord, params)
        await self._index(records, complete_since_watermark=True)
        return len(records)

    async def _record(self, record_id: str) -> wire.ClientRecord:
        if not ID_RE.match(record_id):
            raise NotFound("not a Practice Better client record id")
        try:
            record = await self.client.get(f"{RECORDS}/{record_id}", wire.ClientRecord)
        except NotFound:
            await self.client_index.remove(record_id)
            raise
        await self._index([record])
        return record

    async def find_patients(self, query: PatientQuery) -> list[Patient]:
        """Through the client index (digests of e-mail, full name, first phone), then each candidate re-read, so
        a stale index entry never answers; every given field must match."""
        key = IndexKey(
            email_sha256=email_digest(query.email) if query.email else None,
            name_sha256=name_digest(query.first_name, query.last_name)
            if query.first_name and query.last_name
            else None,
            phone_sha256=phone_digest(query.phone) if query.phone else None,
        )
        if key == IndexKey():
            raise Rejected("a client search needs an e-mail, a phone, or a first and last name")
        await self.refresh_index()
        wanted = query.email.strip().lower() if query.email else None

        def fits(p: Patient) -> bool:
            return (
                (wanted is None or (p.email or "").strip().lower() == wanted)
                and (not query.first_name or p.first_name.strip().lower() == query.first_name.strip().lower())
                and (not query.last_name or p.last_name.strip().lower() == query.last_name.strip().lower())
                and (query.date_of_birth is None or p.date_of_birth == query.date_of_birth)
                and (not query.phone or query.phone in p.phones)
            )

        matches: list[Patient] = []
        for record_id in await self.client_index.lookup(key):
            try:
                record = await self._record(record_id)  # re-indexes it if it changed
            except NotFound:
                continue
            patient = mapping.patient_of(record, self.context.time_zone)
            if fits(patient):
                matches.append(patient)
        return matches

    async def get_patient(self, patient_id: str) -> Patient:
        return mapping.patient_of(await self._record(patient_id), self.context.time_zone)

    async def create_patient(self, patient: NewPatient) -> Patient:
        """Lookup-or-create. A duplicate e-mail is answered 409 (the swagger), 400 or 500 (the production
        integrator): all three end in the existing client, looked up by e-mail and returned."""
        email = (patient.email or "").strip()
        if not email:
            raise InvalidReference(
                "Practice Better requires an e-mail address to create a client", field="patient.email"
            )
        profile = wire.ProfileCreate(
            firstName=patient.first_name,
            lastName=patient.last_name,
            emailAddress=email,
            mobilePhone=patient.phone,
            dateOfBirth=patient.date_of_birth.isoformat() if patient.date_of_birth else None,
        )
        body = wire.ClientRecordCreate(profile=profile)
        looked_up = False

        async def create() -> wire.ClientRecord:
            return await self.client.write_decoded("POST", RECORDS, body, wire.ClientRecord)

        async def landed() -> wire.ClientRecord | None:
            nonlocal looked_up
            found = await self._existing(email)
            looked_up = found is not None
            return found

        try:
            record = await self._reconciled(create, landed, "client creation", resend=False)
        except Rejected as exc:  # 409 or 400: a client with this e-mail may exist already
            existing = await self._existing(email)
            if existing is None:
                if isinstance(exc, Conflict):
                    raise Rejected(
                        "Practice Better reported a duplicate client but none could be found",
                        emr_status=exc.emr_status,
                        emr_message=exc.emr_message,
                    ) from None
                raise
            record, looked_up = existing, True
        if looked_up:
            record = await self._fill_gaps(record, patient)
        await self._index([record])
        return mapping.patient_of(record, self.context.time_zone)

    async def _existing(self, email: str) -> wire.ClientRecord | None:
        await self.refresh_index()
        wanted = email.strip().lower()
        for record_id in await self.client_index.lookup(IndexKey(email_sha256=email_digest(wanted))):
            try:
                record = await self._record(record_id)
            except NotFound:
                continue
            if (mapping.email_of(record) or "").strip().lower() == wanted:
                return record
        return None

    async def _fill_gaps(self, record: wire.ClientRecord, patient: NewPatient) -> wire.ClientRecord:
        """Add a phone or birth date the existing client lacks. `PUT` replaces the whole record ("any missing fields
        will be erased"), so the record is read as sent, changed, and sent back entire."""
        gaps: dict[str, str] = {}
        if patient.phone and not (record.profile.mobilePhone or record.profile.homePhone):
            gaps["mobilePhone"] = patient.phone
        if patient.date_of_birth is not None and not record.profile.dateOfBirth:
            gaps["dateOfBirth"] = patient.date_of_birth.isoformat()
        if not gaps:
            return record
        raw = await self.client.get_raw(f"{RECORDS}/{record.id}")
        profile = raw.get("profile")
        merged_profile: dict[str, Any] = dict(profile) if isinstance(profile, dict) else {}
        merged_profile.update(gaps)
        merged = {**raw, "profile": merged_profile}
        try:
            return await self.client.write_decoded(
                "PUT", f"{RECORDS}/{record.id}", msgspec.json.encode(merged), wire.ClientRecord
            )
        except (AdapterError, AmbiguousWrite):
            return record  # the client exists; a missing phone is not worth failing the caller's booking

    # ------------------------------------------------------------------------------------------------ catalog

    async def list_practitioners(self) -> list[Practitioner]:
        answer = await self.client.get(MEMBERS, wire.Members)
        members = answer.members if answer.members is not None else (answer.items or [])
        return [
            mapping.practitioner_of(m)
            for m in members
            if m.isPractitioner and (m.activationStatus or "activated") == "activated"
        ]

    async def list_services(self) -> list[Service]:
        services = [s for s in await self.client.list(SERVICES, wire.Service) if s.isActive]
        for service in services:
            self._durations[service.id] = service.duration or 0
        return [mapping.service_of(s) for s in services]

    async def list_locations(self) -> list[Location]:
        """Practice Better has no clinic sites in its API: the practice is the one location."""
        return [Location(id="practice", name="Practice Better practice", time_zone=self.context.time_zone)]

    async def check(self) -> None:
        """Mints a token and reads the team: proves the client id/secret and their read scope."""
        await self.list_practitioners()

    # ------------------------------------------------------------------------------------------------ verify

    def verify_probes(self) -> list[tuple[str, probes.ProbeFn]]:
        async def client_records() -> str:
            records = await self.client.page(RECORDS, wire.ClientRecord)
            return f"{len(records)} client record(s) on the first page"

        async def session_stamps() -> str:
            """The change feed's stamps on the newest sessions (UNCONFIRMED: the integrators' session types name
            neither): without `dateModified` every poll re-reports what it reads, and the new-session scan cannot
            tell new from old."""
            sessions = await self.client.page(SESSIONS, wire.Session, limit=UNIT_SAMPLE)
            if not sessions:
                raise probes.Skip("no session to read")
            stamps = {
                "dateModified": [s.dateModified for s in sessions],
                "dateCreated": [s.dateCreated for s in sessions],
            }
            for field, values in stamps.items():
                missing = sum(1 for value in values if value is None)
                if missing:
                    raise ContractChanged(
                        f"Practice Better's sessions lack `{field}`, which the change feed reads",
                        path=f"$.items[].{field}",
                        problem=f"missing on {missing} of {len(sessions)} session(s)",
                    )
            return f"{len(sessions)} session(s) carry dateCreated and dateModified"

        return [("client records", client_records), ("session change stamps", session_stamps)]

    async def observed_settings(self) -> list[SettingCheck]:
        """The `duration` unit is read off the newest sessions; how `sessionDate` is read cannot be seen without
        writing, so those checks only say what is configured and where the doubt comes from."""
        shown = await self._unit_shown()
        configured = self.settings.duration_unit
        agrees = None if shown is None else (configured in ("auto", shown))
        checks = [
            SettingCheck(
                setting="duration_unit",
                configured=configured if configured != "auto" else f"auto ({FALLBACK_UNIT} until a session shows it)",
                observed=shown,
                agrees=agrees,
                source=UNIT_SOURCE,
            ),
            SettingCheck(setting="session_date_mode", configured=self.settings.session_date_mode, source=MODE_SOURCE),
        ]
        if self.settings.session_date_mode == "wall_time":
            zone = self.settings.session_date_zone or f"{self.context.time_zone} (the location's time zone)"
            checks.append(SettingCheck(setting="session_date_zone", configured=zone, source=ZONE_SOURCE))
        return checks

    # ------------------------------------------------------------------------------------------------ availability

    def _days(self, query: AvailabilityQuery) -> tuple[datetime, datetime, list[date]]:
        start, end = self._utc(query.start_from), self._utc(query.start_to)
        zone = ZoneInfo(self.context.time_zone)
        day = max(start.astimezone(zone).date(), datetime.now(zone).date())
        last = end.astimezone(zone).date()
        days: list[date] = []
        while day <= last and start < end:
            days.append(day)
            day += timedelta(days=1)
        return start, end, days

    async def _day_slots(self, query: AvailabilityQuery, day: date, minutes: int) -> list[Slot]:
        consultant = self._consultant(query.practitioner_id)
        for value in (consultant, query.service_id):
            if not ID_RE.match(value):
                raise NotFound("not a Practice Better id")
        params: Params = [
            ("as_consultant", consultant),
            ("day", f"{day.isoformat()}T00:00:00"),
            ("serviceId", query.service_id),
            ("type", self.settings.service_type),
        ]
        answer = cast(SlotAnswer | None, await self.client.get_optional(SLOTS, cast(Any, SlotAnswer), params))
        if answer is None:  # 204: no slots that day
            return []
        raw = answer if isinstance(answer, list) else (answer.items or answer.slots or [])
        slots: list[Slot] = []
        for item in raw:
            begin = mapping.instant(item.startDate, self._naive_zone(), "startDate")
            slots.append(
                Slot(
                    start=begin,
                    end=begin + timedelta(minutes=minutes),
                    practitioner_id=consultant,
                    service_id=query.service_id,
                    time_zone=self.context.time_zone,
                )
            )
        return slots

    async def availability(self, query: AvailabilityQuery) -> list[Slot]:
        start, end, days = self._days(query)
        minutes = await self._duration(query.service_id)
        found: dict[datetime, Slot] = {}
        for day in days:
            for slot in await self._day_slots(query, day, minutes):
                if start <= slot.start < end:
                    found[slot.start] = slot
        return [found[s] for s in sorted(found)]

    async def next_available(self, query: AvailabilityQuery) -> Slot | None:
        start, end, days = self._days(query)
        minutes = await self._duration(query.service_id)
        for day in days:
            slots = [s for s in await self._day_slots(query, day, minutes) if start <= s.start < end]
            if slots:
                return min(slots, key=lambda s: s.start)
        return None

    # ------------------------------------------------------------------------------------------------ change feed

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        """Client records modified since the cursor, and sessions changed since then, read in parts because
        sessions have no "modified since" filter and list newest *created* first (evidence: the swagger's filters
        are `consultants`, `records`, `services`, `group`, `date_eq/gte/lte`; "sorts by dateCreated DESC",
        idx:55687388298; notes §1.3, §1.6):

        - records with `modified_gte` (1 request when none changed);
        - the new-session scan: the newest-created page of sessions dated from a day back on, and older pages only
          while a whole page was created since the cursor. A new booking, however far ahead, shows at the next poll;
        - the near window, sessions dated from a day back (`FEED_LOOKBACK`) to two days ahead (`NEAR_AHEAD`), read
          whole: a change there shows at the next poll;
        - one page of the walk: every session dated from a day before the pass began, 100 a poll (`before_id`
          resumes it), reporting what changed since the previous pass began (so a change may come again a pass
          later, never be skipped), except those the near window reports. At a pass's start the new-session scan's
          page is the walk's page (one request less). A session reaching the near window before the walk reached
          it is checked the way the walk would have.

        With `session_webhooks` (Practice Better's session events subscribed to the gateway, which re-reads the
        session's client at once), the scan and the near window are left to the webhooks: records and one walk page.

        One quiet poll costs 1 + 1 + ceil(near / 100) + 1 requests: 4 while the near window holds at most 100
        sessions (3 at a pass's start); 2 with `session_webhooks`. The token is re-minted about hourly (24 a day).

        A change to any other session shows within one pass: ceil(S / 100) polls, S being the sessions dated from
        a day back on when the pass began: 1,000 sessions take 10 polls (50 min at the default 300 s), 10,000 take
        100 polls (8 h 20 min).

        10,000 upcoming sessions (over six months: ~55 a day) cost per day, at one poll per 300 s (288 polls):
        records 1 + scan 1 + near window ceil(3 days x 55 / 100) = 2 + walk 1 = 5 a poll, 5 x 288 = 1,440 + 24
        token mints = 1,464 of the 10,000 a day (15 %). All 10,000 within 30 days (333 a day): near 10 pages, 13 a
        poll, 3,768 a day. With `session_webhooks`: 2 x 288 + 24 = 600. (The feed before the walk listed every
        session from a day back, 101 pages a poll: ~29,400 a day.)

        The cursor is `<since>|<walk as JSON>` (adapters/practicebetter/feed.py); a bare RFC 3339 time, as the first
        poll returns and older versions stored, starts a pass that reports every change since then. One more than
        a day old (the full listing's 2000-01-01, a location not polled for a day) is caught up at once: every
        session from a day before it is listed, once. With no cursor the feed starts now. `>=` re-reads records
        stamped exactly at the cursor: a repeat is harmless, a miss not.
        """
        now = datetime.now(UTC)
        if cursor is None:
            return ChangeSet(patients=[], appointments=[], cursor=mapping.rfc3339(now))
        state = feed.parse(cursor, now)
        since, walk = state.since, state.walk
        records = await self.client.list(RECORDS, wire.ClientRecord, [("modified_gte", mapping.rfc3339(since))])
        await self._index(records)
        if feed.catching_up(state, now):  # every session from a day before the cursor; a pass starts from now on
            passed = [("date_gte", mapping.rfc3339(walk.start))]
            changed = {s.id: s for s in await self._sessions(passed) if _changed(s, since)}
            walk = feed.new_pass(now, now)
        else:
            changed, walk = await self._sessions_changed(since, walk, now)
        stamps = [since] + [r.dateModified for r in records if r.dateModified]
        stamps += [s.dateModified for s in changed.values() if s.dateModified]
        patients = [mapping.patient_of(r, self.context.time_zone) for r in records]
        appointments = [self._appointment(s) for s in changed.values()]
        return ChangeSet(
            patients=sorted(patients, key=lambda p: (p.updated_at or now, p.id)),
            appointments=sorted(appointments, key=lambda a: (a.updated_at or now, a.id)),
            cursor=feed.render(max(stamps), walk),
        )

    async def _sessions_changed(
        self, since: datetime, walk: feed.Walk, now: datetime
    ) -> tuple[dict[str, wire.Session], feed.Walk]:
        """The sessions one poll reports (new ones, the near window's, one walk page's) and the walk after it."""
        hooked = self.settings.session_webhooks
        passed: Params = [("date_gte", mapping.rfc3339(walk.start))]
        near_low, near_high = feed.near(now)
        changed: dict[str, wire.Session] = {}

        def report(sessions: list[wire.Session], after: datetime) -> None:
            changed.update((s.id, s) for s in sessions if _changed(s, after))

        def report_walked(sessions: list[wire.Session]) -> None:
            """Walk pages against `floor`, but for what the near window reads this poll (when it is read)."""
            far = [s for s in sessions if hooked or not near_low <= self._start_of(s) <= near_high]
            report(far, walk.floor)

        walked: wire.Page[wire.Session] | None
        if walk.before is None:  # the pass's first page is the new-session scan's
            pages = await self._newest(passed, since, scan=not hooked)
            report_walked([s for page in pages for s in page.items])
            report([s for page in pages for s in page.items], since)
            walked = pages[-1]
        else:
            if not hooked:
                report([s for page in await self._newest(passed, since, scan=True) for s in page.items], since)
            try:
                walked = await self.client.one_page(SESSIONS, wire.Session, passed, walk.before)
            except (NotFound, Rejected):  # the id it resumes from is refused: the pass starts over, same floor
                walked = None
            if walked is not None:
                report_walked(walked.items)
        if not hooked:
            window = [("date_gte", mapping.rfc3339(near_low)), ("date_lte", mapping.rfc3339(near_high))]
            for session in await self._sessions(window):
                report([session], walk.floor if feed.entered(self._start_of(session), walk) else since)
        if walked is None:
            return changed, msgspec.structs.replace(walk, before=None, polled=now)
        if walked.hasMore and walked.items:
            return changed, msgspec.structs.replace(walk, before=walked.items[-1].id, polled=now)
        return changed, feed.new_pass(walk.cycle, now)

    async def _newest(self, params: Params, since: datetime, *, scan: bool) -> list[wire.Page[wire.Session]]:
        """The newest-created page of sessions, and (`scan`) older pages while every session on the last one was
        created at or after `since`: the first session created before it ends the scan."""
        pages = [await self.client.one_page(SESSIONS, wire.Session, params)]
        while scan and pages[-1].hasMore and pages[-1].items and all(_created_since(s, since) for s in pages[-1].items):
            pages.append(await self.client.one_page(SESSIONS, wire.Session, params, pages[-1].items[-1].id))
        return pages


def _created_since(session: wire.Session, since: datetime) -> bool:
    return session.dateCreated is not None and session.dateCreated >= since


def _changed(session: wire.Session, since: datetime) -> bool:
    """Modified (or created) at or after `since`; with neither stamp to tell, changed (a repeat is harmless, a miss
    is not): the integrators' session types name neither `dateModified` nor `dateCreated` (idx:55687388298)."""
    stamps = [stamp for stamp in (session.dateModified, session.dateCreated) if stamp is not None]
    return not stamps or any(stamp >= since for stamp in stamps)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _read_in_some_zone(clock: datetime, stored: datetime) -> bool:
    """Whether `stored` (an instant) is the naive `clock` we sent read in some UTC offset."""
    offset = clock - stored.astimezone(UTC).replace(tzinfo=None)
    return OFFSETS[0] <= offset <= OFFSETS[1] and offset % QUARTER == timedelta(0)

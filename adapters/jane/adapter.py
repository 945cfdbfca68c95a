"""The Jane adapter: one gateway location is one location of one Jane clinic (`settings.clinic`, `location_id`).

Jane has no public write API (the partner API is read-only), so this adapter uses the clinic's own staff web endpoints
with an imported staff session, as integrators do: UNOFFICIAL, undocumented, and liable to change without notice.

Booking, as captured live (evidence-2026-11 §4.1): a provisional hold (`POST /admin/api/v2/appointments`,
`book: false`), then `PUT /admin/api/v3/appointments/{id}/book` with the whole reserved record as the hold returned
it, `treatment_id`, `patient_id`, the patient's own record (`patient`) and `notes_text` set, then the read-back
`GET /admin/api/v3/appointments/{id}?booking_type=one_on_one_booking`. A booking makes 6 calls: the patient's record,
the calendar pre-check, the hold, the calendar check for a rival hold, the book step, the read-back (plus the treatment
list when the end is derived, and the admin page for the CSRF token once per adapter). Verification compares the
read-back (the book step's answer only if the read-back fails) with what was asked: the start, and the end as the
caller gave it or as the treatment's `scheduled_duration` minutes make it. A reschedule reads the appointment, checks
the calendar, moves it and reads it back (4 calls). A catalog (practitioners, services, locations) is 3 calls: the
staff list is read once for both practitioners and services (issue 17), the treatments and the locations once.

No hold outlives its booking (`DELETE /admin/api/v2/appointments/{id}` releases one), and nothing is sent twice to
create one:
- A hold whose answer was lost (timeout, dropped connection, 500/502/504) is watched for during the location's write
  patience and, when it appears, adopted and booked. If it has not appeared by then it may still land and block the
  slot, so the answer is `OutcomeUnknown` (with the operation id) and `find_booking`, which the gateway's reconciler
  and a retry call, releases the stray hold it finds. A hold carries no notes: it is recognised as reserved, without
  a patient, with the booking's staff member and exactly its start and end.
- The rival-hold check after the hold is the race lock (the earliest hold wins). When it cannot run the hold is
  released and the booking withdrawn (`Unavailable`); when the release cannot be confirmed either, `OutcomeUnknown`.
- A book step whose answer was lost is watched for; if the hold is not booked within the patience it is released, so
  a book step landing later finds no hold (404). One that was refused releases the hold, unless it is booked after all.
- The book step writes the gateway's operation marker (`adapters.markers`) into `notes_text`, Jane's appointment notes,
  which the book step carries with the rest of the record; it is kept when a reschedule changes the notes and removed
  from the notes callers see (`Appointment.operation_id` carries it).

UNCONFIRMED facts and the side taken (evidence-2026-11 §4.2 and §7; notes emr-jane-sp-pb-ghl.md §2, §6):
- Staff reschedule: `PUT /admin/api/v2/appointments/{id}` with `{"appointment": {start_at, end_at, staff_member_id},
  "browser_tab_id"}` — "no public capture or code anywhere" (§4.2). An in-place move keeping the id (ClinicSync's
  `rescheduleAppt` "updates an existing Jane appointment"), rather than book-new-then-cancel-old, which would change
  the id callers hold.
- Staff cancel: `PUT /admin/api/v2/appointments/{id}/cancel` with `{"cancelled_reason", "with_notifications",
  "send_wlns", "browser_tab_id"}` — "no public capture or code anywhere"; "`send_wlns` has zero hits" (§4.2). The flag
  names are the ones ClinicSync's `cancelAppt` forwards. Notifications are off: the gateway's caller tells the patient.
  `cancelled_reason` is free text in Jane; the gateway writes "<Reason>" or "<Reason>: <note>" and parses it back.
- The calendar list `GET /admin/api/v2/appointments?location_id=&start_date=&end_date=[&staff_member_id=]
  [&updated_since=]` (bare array) — "not evidenced either" (§4.2); the booking pre-check and the change feed rest on
  it. `locations verify` reports whether it answers, decodes and keeps to the asked dates.
- Reads with no captured request: `GET /admin/api/v2/patients/{id}` (the patient record, as in ClinicSync's Jane
  payload; the book step sends it as `patient`) and `GET /admin/api/v2/patients/{id}/appointments`.
- Patient create body: `{"patient": {first_name, last_name, email, mobile_phone, dob}, "browser_tab_id"}` — "the exact
  request body wasn't intercepted" (§4.2); `dob` may be ignored. Answered 201 with the patient (bare or under
  `patient`).
- Catalog from the public endpoints: treatments carry `scheduled_duration` (minutes), staff `all_treatment_ids` and
  maybe no `full_name` (§4.2, confirmed by live probes); the booking page's `treatment_duration` (seconds) and
  `treatment_ids` are accepted as fallbacks. A treatment's `staff_member_id` links it to that practitioner too.
- Openings: `start_date` + `num_days` (1..7) is the variant used; `end_at` of an opening is taken as the slot's end.
- The staff calendar accepts overlapping appointments (Jane lets staff double-book): the adapter checks the calendar
  before the hold and, after it, yields to an earlier rival hold (lower id), so a taken slot is SlotUnavailable.
- A hold found at exactly a booking's staff member and times, reserved and without a patient, is taken as that
  booking's: two holds for one slot at the same instant (a front-desk click) cannot be told apart.
- Whether the book step stores `notes_text` is not captured (the capture's record is "the whole record"); the emulator
  stores it. Without it, the marker is lost and a lost booking is recognised by patient, staff member and start.
- CSRF: Jane (Rails) refuses a stale token with an HTML 422 before applying anything; the token is re-read once.
- A signed-out session: 401 from the admin API, a redirect to /login from the admin page.
- Phone lookups use the staff typeahead (`patient_lookup/lookup`) with the number as `q`; the results are then
  filtered exactly here, so a typeahead that misses a formatting variant finds nothing rather than the wrong patient.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

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
    OutcomeUnknown,
    Rejected,
    SlotUnavailable,
    Timeout,
    Unavailable,
)
from adapters.http import DEFAULT_RETRY, RetryPolicy, decode
from adapters.jane import mapping, wire
from adapters.jane.client import JaneClient, Params
from adapters.jane.settings import JaneCredentials, JaneSettings, browser_tab_id_of
from adapters.markers import operation_of, with_marker, without_marker
from adapters.pacing import RateLimit
from adapters.reconcile import AMBIGUOUS_STATUSES, AmbiguousWrite, reconciled, unknown, watch
from adapters.stamps import settled_cursor
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

APPOINTMENTS_V2 = "/admin/api/v2/appointments"
APPOINTMENTS_V3 = "/admin/api/v3/appointments"
PATIENTS = "/admin/api/v2/patients"
TREATMENTS = "/api/v2/treatments"
STAFF = "/api/v2/staff_members"
LOOKUP = "/admin/api/v2/patient_lookup/lookup"
OPENINGS_DAYS = 7  # `num_days` above 7 is a 422
LOOKUP_LIMIT = 25
LIST_AHEAD_DAYS = 90
INACTIVE = frozenset({"cancelled", "archived"})
FIND_WINDOW = timedelta(minutes=1)
# How long one read of the staff list serves this instance: long enough for one catalog (practitioners, services),
# well under the gateway's catalog cache (60 s by default), so a re-read catalog is a fresh one.
STAFF_SECONDS = 30.0


def _id(value: str, field: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise InvalidReference(f"Jane {field} ids are numeric", field=field)
    return int(value)


def _is_hold_at(
    appointment: wire.Appointment, staff: int, start: datetime, end: datetime, patient_id: int | None = None
) -> bool:
    """A hold (reserved, no patient yet, or `patient_id`'s) at exactly these times with this staff member."""
    return (
        appointment.state == "reserved"
        and appointment.patient_id in (None, patient_id)
        and appointment.staff_member_id == staff
        and appointment.start_at == start
        and appointment.end_at == end
    )


class _HoldGone(Exception):
    """The hold a book step was sent for no longer exists: that book step cannot land any more."""


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
    # patient record (the book step sends it), pre-check, hold, post-check, book, read-back
    min_booking_calls: ClassVar[int] = 6
    # The full listing reads the calendar from 2000 to 360 days ahead, the horizon the change feed itself watches:
    # an appointment booked further ahead is in no snapshot until it comes within it (documented in the README).
    full_listing_complete: ClassVar[bool] = True
    write_settings: ClassVar[dict[str, str]] = {
        "start": "the location's time_zone (Jane takes ISO-8601 times with the clinic's UTC offset)",
        "end": "the treatment's scheduled_duration in Jane (minutes), unless the caller gave the end",
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
        self._staff_read: tuple[float, list[wire.StaffMember]] | None = None  # (monotonic time, staff): see _staff
        self._staff_lock = asyncio.Lock()

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

    async def _load_treatments(self) -> list[wire.Treatment]:
        treatments = await self.client.get_list(TREATMENTS, "treatments", wire.Treatment)
        self._treatments = {t.id: t for t in treatments}
        return treatments

    async def _treatment(self, treatment_id: int) -> wire.Treatment:
        if self._treatments is None or treatment_id not in self._treatments:
            await self._load_treatments()
        assert self._treatments is not None
        try:
            return self._treatments[treatment_id]
        except KeyError:
            raise InvalidReference("Jane has no such treatment", field="service_id") from None

    @property
    def _patience(self) -> float:
        return self.context.write_patience_seconds

    async def _release(self, hold_id: int) -> None:
        """Give a hold back to the calendar (`DELETE`). An unclear answer is checked and, the hold still there, sent
        once more (a delete lands the same way twice); raises when Jane cannot confirm the hold is gone."""
        path = f"{APPOINTMENTS_V2}/{hold_id}"

        async def send() -> bool:
            with contextlib.suppress(NotFound):  # already gone: lapsed, or released by an earlier attempt
                await self.client.write("DELETE", path)
            return True

        async def gone() -> bool | None:
            try:
                await self._fetch(str(hold_id), holds=True)
            except NotFound:
                return True
            return None

        await reconciled(
            send, gone, what="release of a provisional hold", emr=EMR_NAME, patience=self._patience, resend=True
        )

    async def _give_back(self, hold_id: int, operation_id: str | None) -> None:
        """Release a hold this booking made and will not book. If Jane cannot confirm it, the hold may block the slot:
        that is an unknown outcome the gateway's reconciler settles (`find_booking` releases it)."""
        try:
            await self._release(hold_id)
        except AdapterError:
            raise OutcomeUnknown(
                "nothing was booked in Jane, but releasing the booking's provisional hold failed; the gateway keeps "
                "trying to release it",
                operation_id=operation_id or str(uuid.uuid4()),
            ) from None

    async def _release_if_held(self, hold_id: int) -> wire.Appointment | None:
        """Release the hold only if it is still provisional, read just before (never delete a booking). Returns the
        appointment when it has been booked meanwhile."""
        try:
            seen = await self._fetch(str(hold_id), holds=True)
        except NotFound:
            return None
        if seen.state != "reserved":
            return seen
        await self._release(hold_id)
        return None

    async def _give_back_unbooked(self, hold_id: int, operation_id: str | None) -> wire.Appointment | None:
        """`_release_if_held` after a book step was sent; failing, an unknown outcome (the hold may block the slot,
        or the book step may have landed)."""
        try:
            return await self._release_if_held(hold_id)
        except AdapterError:
            raise OutcomeUnknown(
                "whether Jane booked the appointment is unknown, and its provisional hold could not be released; the "
                "gateway keeps checking",
                operation_id=operation_id or str(uuid.uuid4()),
            ) from None

    @staticmethod
    def _unknown(what: str, cause: str) -> OutcomeUnknown:
        return unknown(EMR_NAME, what, cause)

    @staticmethod
    def _booked_for(seen: wire.Appointment, patient_id: int, operation_id: str | None) -> bool:
        """Our book step landed on this hold: booked for our patient, carrying no other operation's marker."""
        marker = operation_of(seen.notes_text)
        return (
            seen.state != "reserved"
            and seen.state not in INACTIVE
            and seen.patient_id == patient_id
            and (operation_id is None or marker in (None, operation_id))
        )

    # ------------------------------------------------------------------------------------------------ booking

    async def _asked_end(self, command: BookCommand, start: datetime, treatment_id: int) -> datetime:
        if command.end is not None:
            return mapping.utc(command.end, self.context.time_zone).replace(microsecond=0)
        return start + timedelta(minutes=(await self._treatment(treatment_id)).minutes)

    async def _book(self, command: BookCommand) -> Written:
        staff = _id(command.practitioner_id, "practitioner_id")
        treatment_id = _id(command.service_id, "service_id")
        patient_id = _id(command.patient_id, "patient_id")
        operation_id = command.operation_id
        # Jane keeps times to the second: the hold is found again (and verified) at exactly what was sent.
        start = mapping.utc(command.start, self.context.time_zone).replace(microsecond=0)
        end = await self._asked_end(command, start, treatment_id)
        if end <= start:
            raise Rejected("the appointment must end after it starts")
        patient = await self._patient_record(patient_id)
        if await self._overlapping(staff, start, end):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        hold = await self._hold(staff, start, end, operation_id)
        await self._claim(hold.record.id, staff, start, end, operation_id)
        notes = with_marker(command.notes, operation_id)
        booked = await self._confirm(hold, treatment_id, patient_id, patient, notes, operation_id)
        asked = Asked(start=start, end=end, practitioner_id=str(staff), patient_id=str(patient_id))
        return Written(stored=self._appointment(booked), asked=asked)

    async def _claim(self, hold_id: int, staff: int, start: datetime, end: datetime, operation_id: str | None) -> None:
        """After the hold: the earliest hold (lowest id) on an overlapping time wins the slot. A check that cannot run
        is not "no rival": the hold is released and the booking withdrawn."""
        try:
            rivals = await self._overlapping(staff, start, end, exclude_id=hold_id)
        except AdapterError as exc:
            await self._give_back(hold_id, operation_id)
            if isinstance(exc, ContractChanged):
                raise
            raise Unavailable(
                "Jane could not confirm the slot was free after the hold; the booking was withdrawn (the hold was "
                "released, nothing was booked)"
            ) from None
        if any(r.id < hold_id for r in rivals):
            await self._give_back(hold_id, operation_id)
            raise SlotUnavailable("the slot was taken at the same moment; the hold was released")

    async def _patient_record(self, patient_id: int) -> msgspec.Raw:
        """The patient's record as Jane holds it: the book step sends it as `patient` (live capture)."""
        try:
            raw = await self.client.get_record(f"{PATIENTS}/{patient_id}", "patient")
        except NotFound:
            raise InvalidReference("Jane has no such patient", field="patient_id") from None
        if decode(raw, wire.Patient, emr=EMR_NAME).id != patient_id:
            raise InvalidReference("Jane answered with another patient's record", field="patient_id")
        return raw

    @staticmethod
    def _held(raw: msgspec.Raw) -> wire.Held:
        try:
            return wire.Held(record=decode(raw, wire.Appointment, emr=EMR_NAME), raw=raw)
        except ContractChanged:
            raise AmbiguousWrite("unreadable answer to a write") from None

    async def _read_held(self, hold_id: int) -> wire.Held:
        """A hold found on the calendar, re-read as the record the book step hands back."""
        raw = await self.client.get_record(
            f"{APPOINTMENTS_V3}/{hold_id}", "appointment", [("booking_type", "one_on_one_booking")]
        )
        return wire.Held(record=decode(raw, wire.Appointment, emr=EMR_NAME), raw=raw)

    async def _hold(self, staff: int, start: datetime, end: datetime, operation_id: str | None = None) -> wire.Held:
        """Step one, sent once. A hold whose answer was lost is watched for (`write_patience_seconds`) and, when it
        appears, adopted and booked; if it has not appeared by then it may still land and block the slot, so the
        outcome is unknown and the gateway's reconciler owns it (`find_booking` releases it)."""
        body = wire.ProvisionalCreate(
            appointment=wire.Provisional(
                location_id=self.location,
                start_at=self._local(start),
                end_at=self._local(end),
                staff_member_id=staff,
            ),
            browser_tab_id=self.tab,
        )

        async def send() -> wire.Held:
            return self._held(await self.client.write_record("POST", APPOINTMENTS_V2, body, "appointment"))

        async def landed() -> wire.Held | None:
            found = await self._find_hold(staff, start, end)
            return await self._read_held(found.id) if found is not None else None

        return await reconciled(
            send,
            landed,
            what="booking's provisional hold",
            emr=EMR_NAME,
            patience=self._patience,
            resend=False,
            operation_id=operation_id,
        )

    async def _find_hold(self, staff: int, start: datetime, end: datetime) -> wire.Appointment | None:
        """The reserved, patient-less appointment at exactly these times (what a hold is before its book step)."""
        holds = [
            a
            for a in await self._calendar(self._day(start), self._day(end), staff)
            if _is_hold_at(a, staff, start, end)
        ]
        return max(holds, key=lambda a: a.id) if holds else None

    async def _confirm(
        self,
        hold: wire.Held,
        treatment_id: int,
        patient_id: int,
        patient: msgspec.Raw,
        notes: str | None,
        operation_id: str | None,
    ) -> wire.Appointment:
        """Step two, then the read-back. A book step whose answer was lost is watched for; one that did not land, or
        was refused, gives the hold back, so no hold outlives its booking."""
        hold_id = hold.record.id
        record = wire.booking(hold.raw, treatment_id=treatment_id, patient_id=patient_id, patient=patient, notes=notes)
        body = wire.BookRequest(appointment=record, browser_tab_id=self.tab)
        try:
            response = await self.client.write("PUT", f"{APPOINTMENTS_V3}/{hold_id}/book", body)
        except AmbiguousWrite as exc:
            return await self._settle_book_step(hold_id, patient_id, operation_id, exc.cause)
        except NotFound:
            raise Unavailable("Jane let the hold lapse before it was booked; nothing was booked") from None
        except Unavailable as exc:
            if exc.emr_status in AMBIGUOUS_STATUSES:  # a proxy's answer: Jane may still finish the book step
                cause = f"Jane answered {exc.emr_status}"
                return await self._settle_book_step(hold_id, patient_id, operation_id, cause)
            await self._give_back_unbooked(hold_id, operation_id)
            raise
        except AdapterError:
            await self._give_back_unbooked(hold_id, operation_id)
            raise
        answer: wire.Appointment | None = None
        with contextlib.suppress(ContractChanged, Unavailable):
            answer = self.client.decode_record(response, "appointment", wire.Appointment)
        stored = await self._read_back(hold_id, answer, "booking", operation_id)
        if stored.state == "reserved":
            await self._give_back(hold_id, operation_id)
            raise Unavailable("Jane answered the book step but kept the appointment provisional; the hold was released")
        return stored

    async def _settle_book_step(
        self, hold_id: int, patient_id: int, operation_id: str | None, cause: str
    ) -> wire.Appointment:
        """The book step's answer was lost: watch the hold until it is booked for our patient; if it is not within the
        patience, release it, so a book step landing later finds no hold to book (Jane answers it 404)."""

        async def booked() -> wire.Appointment | None:
            try:
                seen = await self._fetch(str(hold_id), holds=True)
            except NotFound:
                raise _HoldGone from None
            return seen if self._booked_for(seen, patient_id, operation_id) else None

        try:
            seen = await watch(booked, self._patience)
        except _HoldGone:
            raise Unavailable(
                f"Jane did not answer the booking ({cause}); checked, its hold is gone and nothing was booked"
            ) from None
        except AdapterError:
            raise unknown(EMR_NAME, "booking", cause, operation_id) from None
        if seen is not None:
            return seen
        kept = await self._give_back_unbooked(hold_id, operation_id)
        if kept is not None and self._booked_for(kept, patient_id, operation_id):
            return kept  # it landed just now
        if kept is not None:  # booked, but not by this request: its own book step can no longer land
            raise SlotUnavailable("the slot was taken at the same moment; nothing was booked for this request")
        raise Unavailable(
            f"Jane did not answer the booking ({cause}); checked, it did not land and its hold was released: nothing "
            "was booked"
        )

    async def _read_back(
        self, appointment_id: int, answer: wire.Appointment | None, what: str, operation_id: str | None = None
    ) -> wire.Appointment:
        """The appointment as Jane stored it after a write; the write's own answer only if the read-back fails."""
        try:
            return await self._fetch(str(appointment_id), holds=True)
        except AdapterError as exc:
            if answer is not None:
                return answer
            raise OutcomeUnknown(
                f"Jane accepted the {what} but reading it back failed ({type(exc).__name__}); whether it is stored "
                "as asked is unknown",
                operation_id=operation_id or str(uuid.uuid4()),
            ) from None

    async def find_booking(self, command: BookCommand) -> Appointment | None:
        """The appointment `command` booked, from one calendar read of that practitioner's day; a stray hold it left
        (reserved, patient-less, at exactly its times, or carrying its marker) is released first, so a hold that
        landed after the gateway gave up never blocks the slot. The operation's marker (`notes_text`) tells its
        booking apart from the same patient's other appointment at that time."""
        staff = _id(command.practitioner_id, "practitioner_id")
        patient_id = _id(command.patient_id, "patient_id")
        start = mapping.utc(command.start, self.context.time_zone).replace(microsecond=0)
        near = [
            a
            for a in await self._calendar(self._day(start - FIND_WINDOW), self._day(start + FIND_WINDOW), staff)
            if a.staff_member_id == staff and abs(a.start_at - start) < FIND_WINDOW
        ]
        reserved = [a for a in near if a.state == "reserved"]
        if reserved:
            end = await self._asked_end(command, start, _id(command.service_id, "service_id"))
            for hold in reserved:
                marker = operation_of(hold.notes_text)
                mine = marker is not None and marker == command.operation_id
                if mine or (marker is None and _is_hold_at(hold, staff, start, end, patient_id)):
                    booked = await self._release_if_held(hold.id)
                    if booked is not None:  # booked since the calendar was read: judged below like the others
                        near = [booked if a.id == booked.id else a for a in near]
        found = [a for a in near if a.state != "reserved" and a.state not in INACTIVE and a.patient_id == patient_id]
        if command.operation_id is not None:
            marked = [a for a in found if operation_of(a.notes_text) == command.operation_id]
            if marked or any(operation_of(a.notes_text) is not None for a in found):
                found = marked  # another operation's booking at the same time is not this one
        return self._appointment(min(found, key=lambda a: a.id)) if found else None

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return self._appointment(await self._fetch(appointment_id))

    async def _reschedule(self, command: RescheduleCommand) -> Written:
        current = await self._fetch(command.appointment_id)
        if current.state in INACTIVE:
            raise AlreadyCancelled("a cancelled appointment cannot be rescheduled")
        staff = _id(command.practitioner_id, "practitioner_id") if command.practitioner_id else current.staff_member_id
        start, end = current.start_at.astimezone(UTC), current.end_at.astimezone(UTC)
        if command.start is not None:
            start = mapping.utc(command.start, self.context.time_zone).replace(microsecond=0)
            if command.end is not None:
                end = mapping.utc(command.end, self.context.time_zone).replace(microsecond=0)
            else:
                end = start + (current.end_at - current.start_at)
            if end <= start:
                raise Rejected("the appointment must end after it starts")
        previous = self._appointment(current)
        asked = Asked(start=start, end=end, practitioner_id=str(staff))
        moves = start != current.start_at or end != current.end_at or staff != current.staff_member_id
        renotes = command.notes is not None and without_marker(command.notes) != without_marker(current.notes_text)
        if not moves and not renotes:
            return Written(stored=previous, asked=asked, previous=previous)
        if moves and await self._overlapping(staff, start, end, exclude_id=current.id):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        # New notes keep the gateway's marker of the operation that booked it.
        notes = with_marker(command.notes, operation_of(current.notes_text)) if renotes else None
        body = wire.MoveRequest(
            appointment=wire.Move(
                start_at=self._local(start), end_at=self._local(end), staff_member_id=staff, notes_text=notes
            ),
            browser_tab_id=self.tab,
        )
        before = (current.start_at, current.end_at, current.staff_member_id, current.notes_text, current.updated_at)

        def applied(seen: wire.Appointment) -> bool:
            # Any change counts: a move stored at another time than asked is still a move, for verification to judge.
            return (seen.start_at, seen.end_at, seen.staff_member_id, seen.notes_text, seen.updated_at) != before

        moved = await self._write_checked("PUT", f"{APPOINTMENTS_V2}/{current.id}", body, current.id, applied, "move")
        stored = await self._read_back(current.id, moved, "move")
        return Written(stored=self._appointment(stored), asked=asked, previous=previous)

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
        """An update (the same absolute values land the same way twice): if its outcome is unclear it is watched for,
        and sent once more only after Jane showed it had not landed (`adapters.reconcile`)."""

        attempts = 0

        async def send() -> wire.Appointment:
            nonlocal attempts
            attempts += 1
            try:
                return await self.client.write_json(method, path, body, wire.Appointment)
            except Rejected:
                seen = await landed() if attempts > 1 else None  # a resend refused: the first landed meanwhile?
                if seen is None:
                    raise
                return seen

        async def landed() -> wire.Appointment | None:
            seen = await self._fetch(str(appointment_id))
            return seen if applied(seen) else None

        return await reconciled(send, landed, what=what, emr=EMR_NAME, patience=self._patience, resend=True)

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
        query = PatientQuery(
            email=patient.email,
            first_name=patient.first_name,
            last_name=patient.last_name,
            date_of_birth=patient.date_of_birth,
        )

        async def create() -> Patient:
            created = await self.client.write_json("POST", PATIENTS, body, wire.Patient, key="patient")
            return mapping.patient_of(created, self.settings.phone_region)

        async def landed() -> Patient | None:
            found = await self.find_patients(query)
            return max(found, key=lambda p: int(p.id)) if found else None

        # A create whose answer was lost is watched for, never sent again: Jane may apply it late (a second chart).
        return await self._reconciled(create, landed, "patient creation", resend=False)

    # ------------------------------------------------------------------------------------------------ catalog

    async def _staff(self, *, fresh: bool = False) -> list[wire.StaffMember]:
        """This location's staff, read once per catalog: practitioners and services both need the list (services
        link their practitioners through it), and the gateway asks for them together, even at once. Kept on the
        instance for `STAFF_SECONDS` only, so a catalog the gateway re-reads later sees staff changes; `fresh` (what
        `locations verify` observes) reads it now."""
        async with self._staff_lock:
            memo = self._staff_read
            if not fresh and memo is not None and time.monotonic() - memo[0] < STAFF_SECONDS:
                return memo[1]
            staff = await self.client.get_list(STAFF, "staff_members", wire.StaffMember)
            here = [s for s in staff if not s.location_ids or self.location in s.location_ids]
            self._staff_read = (time.monotonic(), here)
            return here

    async def list_practitioners(self) -> list[Practitioner]:
        return [mapping.practitioner_of(s) for s in await self._staff()]

    async def list_services(self) -> list[Service]:
        treatments = await self._load_treatments()
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
            cursor=_stamp(settled_cursor(max(stamps), since, now)) if stamps else _stamp(since),
        )

    # ------------------------------------------------------------------------------------------------ verify

    def verify_probes(self) -> list[tuple[str, probes.ProbeFn]]:
        """The lists the generic probes do not touch: the change feed's calendar query, the typeahead, a patient."""
        now = datetime.now(UTC)

        async def updated() -> str:
            today = datetime.now(self.zone).date()
            found = await self._calendar(
                today - timedelta(days=7), today + timedelta(days=7), updated_since=_stamp(now - timedelta(days=1))
            )
            return f"{len(found)} appointment(s) within a week updated in the last day"

        async def lookup() -> str:
            return f"{len(await self._lookup('a'))} patient(s) for a one-letter typeahead"

        async def patient() -> str | None:
            today = datetime.now(self.zone).date()
            found = await self._calendar(today - timedelta(days=28), today + timedelta(days=7))
            ids = [a.patient_id for a in found if a.patient_id is not None]
            if not ids:
                raise probes.Skip("no appointment with a patient in the last 4 or the next week")
            await self._patient_record(ids[0])
            await self.client.get_list(f"{PATIENTS}/{ids[0]}/appointments", "appointments", wire.Appointment)
            return None

        return [("calendar changes", updated), ("patient lookup", lookup), ("patient record", patient)]

    async def observed_settings(self) -> list[SettingCheck]:
        """What the account shows about the catalog fields and the calendar list; staff cancel, reschedule and patient
        create cannot be observed without writing, so they are listed with no observation."""
        unobserved = "no public capture or code anywhere (evidence-2026-11 §4.2)"
        return [
            await self._treatment_lengths(),
            *await self._staff_fields(),
            await self._calendar_list(),
            SettingCheck(
                setting="staff reschedule",
                configured="PUT /admin/api/v2/appointments/{id} (start_at, end_at, staff_member_id)",
                source=unobserved,
            ),
            SettingCheck(
                setting="staff cancel",
                configured="PUT /admin/api/v2/appointments/{id}/cancel "
                "(cancelled_reason, with_notifications, send_wlns)",
                source=unobserved,
            ),
            SettingCheck(
                setting="patient create body",
                configured="first_name, last_name, email, mobile_phone, dob",
                source="the exact request body wasn't intercepted (evidence-2026-11 §4.2)",
            ),
        ]

    async def _treatment_lengths(self) -> SettingCheck:
        check = SettingCheck(
            setting="treatment length",
            configured="scheduled_duration (minutes); treatment_duration (seconds) as fallback",
            source="evidence-2026-11 §4.2 (live probe of two clinics, types.ts from a live clinic)",
        )
        try:
            treatments = await self._load_treatments()
        except ContractChanged as exc:
            return msgspec.structs.replace(check, observed=f"{exc.problem} at {exc.path}", agrees=False)
        if not treatments:
            return msgspec.structs.replace(check, observed="no treatments listed")
        minutes = sum(1 for t in treatments if t.scheduled_duration is not None)
        observed = f"scheduled_duration on {minutes} of {len(treatments)} treatment(s)"
        if minutes < len(treatments):
            observed += f", treatment_duration on {len(treatments) - minutes}"
        return msgspec.structs.replace(check, observed=observed, agrees=True)

    async def _staff_fields(self) -> list[SettingCheck]:
        source = "evidence-2026-11 §4.2 (live probe of two clinics, types.ts from a live clinic)"
        link = SettingCheck(
            setting="practitioner-service link",
            configured="all_treatment_ids; treatment_ids as fallback",
            source=source,
        )
        name = SettingCheck(
            setting="practitioner name",
            configured="full_name; professional_name, then first_name and last_name as fallbacks",
            source=source,
        )
        try:
            staff = await self._staff(fresh=True)
        except ContractChanged as exc:
            broken = f"{exc.problem} at {exc.path}"
            return [msgspec.structs.replace(c, observed=broken, agrees=False) for c in (link, name)]
        if not staff:
            return [msgspec.structs.replace(c, observed="no staff members listed") for c in (link, name)]
        total = len(staff)
        current = sum(1 for s in staff if s.all_treatment_ids is not None)
        older = sum(1 for s in staff if s.all_treatment_ids is None and s.treatment_ids is not None)
        linked = current + older
        link_seen = f"all_treatment_ids on {current} of {total} staff member(s), treatment_ids on {older}"
        full = sum(1 for s in staff if s.full_name)
        unnamed = sum(1 for s in staff if mapping.staff_name(s) == f"Staff member {s.id}")
        name_seen = f"full_name on {full} of {total} staff member(s), {unnamed} with no name field"
        return [
            msgspec.structs.replace(
                link, observed=link_seen, agrees=True if linked == total else (False if linked == 0 else None)
            ),
            msgspec.structs.replace(name, observed=name_seen, agrees=unnamed == 0),
        ]

    async def _calendar_list(self) -> SettingCheck:
        """Whether the unconfirmed calendar list answers, decodes and keeps to the asked location and dates."""
        check = SettingCheck(
            setting="staff calendar list",
            configured="GET /admin/api/v2/appointments (location_id, start_date, end_date)",
            source="not evidenced either (evidence-2026-11 §4.2); the booking pre-check and the change feed use it",
        )
        first = datetime.now(self.zone).date()
        last = first + timedelta(days=7)
        params = [
            ("location_id", str(self.location)),
            ("start_date", first.isoformat()),
            ("end_date", last.isoformat()),
        ]
        try:
            found = await self.client.get_list(APPOINTMENTS_V2, "appointments", wire.Appointment, params)
        except AdapterError as exc:
            return msgspec.structs.replace(check, observed=f"fails: {type(exc).__name__}", agrees=False)
        if not found:
            return msgspec.structs.replace(check, observed="answers and decodes; no appointment in the next 7 days")
        outside = sum(1 for a in found if a.location_id != self.location or not first <= self._day(a.start_at) <= last)
        observed = f"answers and decodes; {outside} of {len(found)} appointment(s) outside the asked location or dates"
        return msgspec.structs.replace(check, observed=observed, agrees=outside == 0)

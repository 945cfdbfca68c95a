"""The Cliniko adapter: one gateway location is one Cliniko business (`settings.business_id`).

Cliniko's API accepts double bookings and has no idempotency keys, so this adapter checks the practitioner's
calendar before every write that takes a slot, checks `…/conflicts` after it, and never sends a write twice without
first asking Cliniko whether the first one landed. A booking is 3 calls (`min_booking_calls`): the calendar
pre-check, the create and the `…/conflicts` post-check; the service's length comes from the gateway's catalog.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import ClassVar, TypeVar
from zoneinfo import ZoneInfo

import httpx

from adapters.base import FULL_LISTING, AdapterContext, Capability, EMRAdapter
from adapters.cliniko import mapping, wire
from adapters.cliniko.client import PER_PAGE, ClinikoClient, Params
from adapters.cliniko.settings import ClinikoCredentials, ClinikoSettings, shard_of
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
from adapters.pacing import RateLimit
from adapters.probes import ProbeFn
from adapters.reconcile import AmbiguousWrite, race_key, settle_race, unknown
from adapters.stamps import settled_cursor
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

ID_RE = re.compile(r"^\d{1,20}$")
WINDOW_DAYS = 7  # available_times: `to` at most 7 days after `from`; a window of 7 dates stays inside either reading
RACE_NOTE = "Cancelled automatically by the EMR Gateway: the slot was taken at the same moment (double booking)."

APPOINTMENTS = "individual_appointments"


def _q(field: str, op: str, value: str) -> tuple[str, str]:
    return ("q[]", f"{field}:{op}{value}")


EMR_NAME = "Cliniko"


class ClinikoAdapter(EMRAdapter[ClinikoSettings, ClinikoCredentials]):
    """Cliniko REST v1.

    FIND_PATIENT_BY_PHONE is absent: Cliniko has no phone filter on `/patients` ("There is currently no way to
    filter patients by a phone number", cliniko-api issue #343), and scanning every patient of an account per lookup
    would burn the shared 200 requests/minute budget. A phone is honoured only next to a name (name search, then the
    phones are compared). Patients are account-wide in Cliniko, so patient lookups are not confined to the business.
    """

    slug: ClassVar[str] = "cliniko"
    display_name: ClassVar[str] = "Cliniko"
    verified_against: ClassVar[str] = "Cliniko OpenAPI v1 (2025-08 copy, reference/cliniko-openapi.yaml)"
    settings_type: ClassVar[type[ClinikoSettings]] = ClinikoSettings
    credentials_type: ClassVar[type[ClinikoCredentials]] = ClinikoCredentials
    # An idle poll costs 2 requests: every 60 s is 1 % of Cliniko's 200 requests/minute per user, leaving the rest for
    # bookings; a busy location (10 changed patients a minute) uses about 26 requests a minute.
    default_poll_seconds: ClassVar[int] = 60
    # "200 per minute per user": a burst of 20 plus 3/s is at most 200 in any minute, however the window is aligned.
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=3.0, burst=20),)
    min_booking_calls: ClassVar[int] = 3  # pre-check (calendar), create, post-check (`/conflicts`)
    patient_batch_size: ClassVar[int] = 100  # `q[]=id:=1,2,3`, one page of 100
    full_listing_complete: ClassVar[bool] = True  # every patient and this business's appointments
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
            Capability.FIND_PATIENT_BY_NAME,
            Capability.CREATE_PATIENT,
            Capability.CATALOG,
            Capability.CHANGES_SINCE,
            Capability.RECONCILES_TIMED_OUT_CREATE,
            # Cliniko itself accepts overlaps; the adapter refuses them (calendar check before, conflicts after).
            Capability.REJECTS_DOUBLE_BOOKING,
        }
    )

    def __init__(
        self,
        settings: ClinikoSettings,
        credentials: ClinikoCredentials,
        http: httpx.AsyncClient,
        context: AdapterContext,
    ) -> None:
        super().__init__(settings, credentials, http, context)
        self.client = ClinikoClient(http, settings, credentials, DEFAULT_RETRY)
        self._durations: dict[str, int] = {}
        self._business: wire.Business | None = None
        self._business_lock = asyncio.Lock()

    @property
    def retry(self) -> RetryPolicy:
        """How reads are retried; the gateway and tests may replace it per instance."""
        return self.client.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.client.retry = policy

    # ------------------------------------------------------------------------------------------------ helpers

    @property
    def business_id(self) -> str:
        return self.settings.business_id

    def _utc(self, moment: datetime) -> datetime:
        return mapping.utc(moment, self.context.time_zone)

    def _appointment(self, appointment: wire.IndividualAppointment) -> Appointment:
        return mapping.appointment_of(appointment, self.context)

    async def _fetch(self, appointment_id: str) -> wire.IndividualAppointment:
        """The appointment if it exists in this location's business (another business's reads as not found)."""
        if not ID_RE.match(appointment_id):
            raise NotFound("Cliniko appointment ids are numeric")
        appointment = await self.client.get(
            f"{APPOINTMENTS}/{appointment_id}",
            wire.IndividualAppointment,
            [_q("cancelled_at", "", "*")],
        )
        if appointment.business.id != self.business_id:
            raise NotFound("Cliniko has no such appointment in this location")
        return appointment

    async def _duration(self, service_id: str) -> int:
        if service_id not in self._durations:
            if not ID_RE.match(service_id):
                raise NotFound("Cliniko appointment type ids are numeric")
            appointment_type = await self.client.get(f"appointment_types/{service_id}", wire.AppointmentType)
            self._durations[service_id] = appointment_type.duration_in_minutes
        return self._durations[service_id]

    async def _get_business(self) -> wire.Business:
        """One read even when a catalog asks for services and locations at once (both need it)."""
        async with self._business_lock:
            if self._business is None:
                self._business = await self.client.get(f"businesses/{self.business_id}", wire.Business)
            return self._business

    def _region(self) -> str | None:
        if self._business is not None and self._business.country_code:
            return self._business.country_code.upper()
        return mapping.region_of_shard(shard_of(self.settings, self.credentials))

    async def _overlapping(
        self, practitioner_id: str, start: datetime, end: datetime, exclude_id: str | None = None
    ) -> list[wire.IndividualAppointment]:
        """The practitioner's live appointments overlapping [start, end), in any business."""
        found = await self.client.list(
            APPOINTMENTS,
            wire.IndividualAppointmentList,
            lambda page: page.individual_appointments,
            [
                _q("practitioner_id", "=", practitioner_id),
                _q("starts_at", "<", mapping.rfc3339(end)),
                _q("ends_at", ">", mapping.rfc3339(start)),
            ],
        )
        return [
            a
            for a in found
            if a.id != exclude_id
            and mapping.status_of(a) is not AppointmentStatus.CANCELLED
            and a.starts_at < end
            and a.ends_at > start
        ]

    async def _overlaps(
        self, practitioner_id: str, start: datetime, end: datetime, exclude_id: str | None = None
    ) -> bool:
        return bool(await self._overlapping(practitioner_id, start, end, exclude_id))

    async def _lost_race(self, created: wire.IndividualAppointment, practitioner_id: str) -> bool:
        """Two bookings that raced into one slot: the earlier one (created_at, then id) keeps it, so exactly one
        survives instead of both undoing themselves. A conflict with no rival appointment (e.g. an unavailable
        block) also means the slot was not free."""
        if not await self._has_conflicts(created.id):
            return False
        rivals = await self._overlapping(practitioner_id, created.starts_at, created.ends_at, exclude_id=created.id)
        if not rivals:
            return True
        mine = race_key(created.created_at, created.id)
        return any(race_key(r.created_at, r.id) < mine for r in rivals)

    async def _has_conflicts(self, appointment_id: str) -> bool:
        conflicts = await self.client.get(f"{APPOINTMENTS}/{appointment_id}/conflicts", wire.Conflicts)
        return conflicts.conflicts.exist

    @staticmethod
    def _unknown(what: str, cause: str) -> OutcomeUnknown:
        return unknown(EMR_NAME, what, cause)

    # ------------------------------------------------------------------------------------------------ appointments

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return self._appointment(await self._fetch(appointment_id))

    async def _book(self, command: BookCommand) -> Written:
        start = self._utc(command.start)
        if command.end is not None:
            end = self._utc(command.end)
        else:
            end = start + timedelta(minutes=await self._duration(command.service_id))
        if end <= start:
            raise Rejected("the appointment must end after it starts")
        if await self._overlaps(command.practitioner_id, start, end):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        body = mapping.book_body(command, self.business_id, self.context.time_zone)

        async def create() -> wire.IndividualAppointment:
            return await self.client.create(APPOINTMENTS, body, wire.IndividualAppointment)

        async def landed() -> wire.IndividualAppointment | None:
            found = await self.client.list(
                APPOINTMENTS,
                wire.IndividualAppointmentList,
                lambda page: page.individual_appointments,
                [
                    _q("patient_id", "=", command.patient_id),
                    _q("practitioner_id", "=", command.practitioner_id),
                    _q("business_id", "=", self.business_id),
                    _q("starts_at", ">=", mapping.rfc3339(start)),
                    _q("starts_at", "<=", mapping.rfc3339(start)),
                ],
            )
            mine = [
                c
                for c in found
                if c.starts_at == start
                and c.appointment_type.id == command.service_id
                and mapping.status_of(c) is not AppointmentStatus.CANCELLED
            ]
            if command.operation_id is not None:
                # The marker settles it: the same patient's other booking at that time is not this one.
                marked = [c for c in mine if operation_of(c.notes) == command.operation_id]
                mine = marked or [c for c in mine if operation_of(c.notes) is None]
            return mine[0] if mine else None

        created = await self._reconciled(create, landed, "booking", resend=False, operation_id=command.operation_id)
        await settle_race(
            lost=lambda: self._lost_race(created, command.practitioner_id),
            withdraw=lambda: self._undo_race(created.id),
            emr=EMR_NAME,
            appointment_id=created.id,
        )
        asked = Asked(start=start, end=end, practitioner_id=command.practitioner_id, patient_id=command.patient_id)
        return Written(stored=self._appointment(created), asked=asked)

    async def _undo_race(self, appointment_id: str) -> None:
        """The losing duplicate is archived, not cancelled: the caller was never told it existed, so it must not
        linger as a cancelled "ghost" in the clinic's calendar (Cliniko hides archived appointments). If archiving
        fails it is cancelled with a note instead; if that fails too, it raises (`settle_race`: a person must look)."""
        try:
            await self.client.post_no_content(f"{APPOINTMENTS}/{appointment_id}/archive")
            return
        except (AdapterError, AmbiguousWrite):
            pass
        body = wire.IndividualAppointmentCancel(
            cancellation_reason=mapping.cancel_code(CancelReason.OTHER), cancellation_note=RACE_NOTE
        )
        await self.client.patch_no_content(f"{APPOINTMENTS}/{appointment_id}/cancel", body)

    async def _reschedule(self, command: RescheduleCommand) -> Written:
        current = await self._fetch(command.appointment_id)
        if mapping.status_of(current) is AppointmentStatus.CANCELLED:
            raise AlreadyCancelled("a cancelled appointment cannot be rescheduled")
        body = wire.IndividualAppointmentUpdate()
        practitioner_id = command.practitioner_id or current.practitioner.id
        start, end = current.starts_at, current.ends_at
        moves = command.start is not None or practitioner_id != current.practitioner.id
        if command.start is not None:
            start = self._utc(command.start)
            body.starts_at = start
            if command.end is not None:
                end = self._utc(command.end)
                body.ends_at = end
            else:
                end = start + timedelta(minutes=await self._duration(current.appointment_type.id))
                body.ends_at = None  # Cliniko recomputes the end from the appointment type
            if end <= start:
                raise Rejected("the appointment must end after it starts")
        if practitioner_id != current.practitioner.id:
            body.practitioner_id = practitioner_id
        if command.notes is not None:
            body.notes = with_marker(command.notes, operation_of(current.notes))  # the gateway's marker stays
        previous = self._appointment(current)
        asked = Asked(start=start, end=end, practitioner_id=practitioner_id)
        if body == wire.IndividualAppointmentUpdate():
            return Written(stored=previous, asked=asked, previous=previous)
        if moves and await self._overlaps(practitioner_id, start, end, exclude_id=current.id):
            raise SlotUnavailable("the practitioner already has an appointment at that time")

        async def patch() -> wire.IndividualAppointment:
            return await self.client.patch(f"{APPOINTMENTS}/{current.id}", body, wire.IndividualAppointment)

        async def landed() -> wire.IndividualAppointment | None:
            seen = await self._fetch(current.id)
            applied = (
                seen.starts_at == start
                and seen.practitioner.id == practitioner_id
                and (command.notes is None or without_marker(seen.notes) == without_marker(command.notes))
            )
            return seen if applied else None

        updated = await self._reconciled(patch, landed, "reschedule", resend=True)
        if moves:
            try:
                conflicted = await self._has_conflicts(updated.id)
            except AdapterError:
                await self._undo_move(current)
                raise Unavailable(
                    "Cliniko could not confirm the new slot was free; the appointment was moved back"
                ) from None
            if conflicted:
                await self._undo_move(current)
                raise SlotUnavailable(
                    "the new slot was taken at the same moment; the appointment was left where it was"
                )
        return Written(stored=self._appointment(updated), asked=asked, previous=previous)

    async def _undo_move(self, previous: wire.IndividualAppointment) -> None:
        body = wire.IndividualAppointmentUpdate(
            starts_at=previous.starts_at, ends_at=previous.ends_at, practitioner_id=previous.practitioner.id
        )
        try:
            await self.client.patch(f"{APPOINTMENTS}/{previous.id}", body, wire.IndividualAppointment)
        except (AdapterError, AmbiguousWrite):
            raise OutcomeUnknown(
                f"a double booking was detected and moving appointment {previous.id} back failed; "
                "it needs a person to look at it",
                operation_id=str(uuid.uuid4()),
            ) from None

    async def cancel(self, command: CancelCommand) -> Appointment:
        current = await self._fetch(command.appointment_id)
        if command.patient_id is not None and current.patient.id != command.patient_id:
            raise NotFound("Cliniko has no such appointment for this patient")
        if current.cancelled_at is not None:
            return self._appointment(current)  # cancelling twice is a no-op, not an error
        body = wire.IndividualAppointmentCancel(cancellation_reason=mapping.cancel_code(command.reason))
        if command.note is not None:
            body.cancellation_note = command.note

        async def cancel() -> wire.IndividualAppointment:
            await self.client.patch_no_content(f"{APPOINTMENTS}/{current.id}/cancel", body)
            return await self._fetch(current.id)

        async def landed() -> wire.IndividualAppointment | None:
            seen = await self._fetch(current.id)
            return seen if seen.cancelled_at is not None else None

        return self._appointment(await self._reconciled(cancel, landed, "cancellation", resend=True))

    async def list_appointments(self, query: AppointmentQuery) -> list[Appointment]:
        params: list[tuple[str, str]] = [_q("business_id", "=", self.business_id), _q("cancelled_at", "", "*")]
        for field, value in (("patient_id", query.patient_id), ("practitioner_id", query.practitioner_id)):
            if value is not None:
                if not ID_RE.match(value):
                    return []
                params.append(_q(field, "=", value))
        if query.start_from is not None:
            params.append(_q("starts_at", ">=", mapping.rfc3339(self._utc(query.start_from))))
        if query.start_to is not None:
            params.append(_q("starts_at", "<", mapping.rfc3339(self._utc(query.start_to))))
        params.append(("sort", "starts_at"))
        found = await self.client.list(
            APPOINTMENTS, wire.IndividualAppointmentList, lambda page: page.individual_appointments, params
        )
        mine = [a for a in found if a.business.id == self.business_id]
        return sorted((self._appointment(a) for a in mine), key=lambda a: (a.start, a.id))

    # ------------------------------------------------------------------------------------------------ patients

    async def find_patients(self, query: PatientQuery) -> list[Patient]:
        params: list[tuple[str, str]] = []
        if query.email:
            params.append(_q("email", "=", query.email))
        if query.first_name:
            params.append(_q("first_name", "=", query.first_name))
        if query.last_name:
            params.append(_q("last_name", "=", query.last_name))
        if query.date_of_birth is not None:
            params.append(_q("date_of_birth", "=", query.date_of_birth.isoformat()))
        if not params:
            if query.phone:
                raise Unsupported("Cliniko cannot search patients by phone alone; add a name or an email")
            raise Rejected("a patient search needs an email, a name or a date of birth")
        found = await self.client.list("patients", wire.PatientList, lambda page: page.patients, params)
        region = self._region()
        patients = [mapping.patient_of(p, region) for p in found]
        if query.phone:
            patients = [p for p in patients if query.phone in p.phones]
        return patients

    async def get_patient(self, patient_id: str) -> Patient:
        if not ID_RE.match(patient_id):
            raise NotFound("Cliniko patient ids are numeric")
        patient = await self.client.get(f"patients/{patient_id}", wire.Patient)
        return mapping.patient_of(patient, self._region())

    async def get_patients(self, patient_ids: list[str]) -> list[Patient]:
        """`q[]=id:=1,2,3` (a maintainer's advice, cliniko-api#333): 100 patients per request, archived included."""
        ids = sorted({i for i in patient_ids if ID_RE.match(i)}, key=lambda i: (len(i), i))
        found: list[Patient] = []
        region = self._region()
        for at in range(0, len(ids), self.patient_batch_size):
            batch = ",".join(ids[at : at + self.patient_batch_size])
            page = await self.client.list(
                "patients", wire.PatientList, lambda p: p.patients, [_q("id", "=", batch), _q("archived_at", "", "*")]
            )
            found.extend(mapping.patient_of(p, region) for p in page)
        return found

    async def create_patient(self, patient: NewPatient) -> Patient:
        body = mapping.new_patient_body(patient)

        async def create() -> wire.Patient:
            return await self.client.create("patients", body, wire.Patient)

        async def landed() -> wire.Patient | None:
            params = [_q("first_name", "=", patient.first_name), _q("last_name", "=", patient.last_name)]
            if patient.email:
                params.append(_q("email", "=", patient.email))
            if patient.date_of_birth is not None:
                params.append(_q("date_of_birth", "=", patient.date_of_birth.isoformat()))
            found = await self.client.list("patients", wire.PatientList, lambda page: page.patients, params)
            return max(found, key=lambda p: p.created_at) if found else None

        created = await self._reconciled(create, landed, "patient creation", resend=False)
        return mapping.patient_of(created, self._region())

    # ------------------------------------------------------------------------------------------------ catalog

    async def list_practitioners(self) -> list[Practitioner]:
        practitioners = await self.client.list(
            f"businesses/{self.business_id}/practitioners",
            wire.PractitionerList,
            lambda page: page.practitioners,
        )
        emails = await self._user_emails()
        result: list[Practitioner] = []
        for practitioner in practitioners:
            user = practitioner.user
            email = emails.get(user.id) if isinstance(user, wire.Linked) else None
            result.append(mapping.practitioner_of(practitioner, email))
        return result

    async def _user_emails(self) -> dict[str, str]:
        """Practitioners' e-mails live on their users; a key without the right to list users just gets none."""
        try:
            users = await self.client.list("users", wire.UserList, lambda page: page.users)
        except (AuthFailed, NotFound):
            return {}
        return {user.id: user.email for user in users if user.email}

    async def list_services(self) -> list[Service]:
        types = await self.client.list("appointment_types", wire.AppointmentTypeList, lambda p: p.appointment_types)
        business = await self._get_business()
        offered = set(business.appointment_type_ids or ())
        live = [t for t in types if t.archived_at is None and (not offered or t.id in offered)]
        for appointment_type in live:
            self._durations[appointment_type.id] = appointment_type.duration_in_minutes
        return [mapping.service_of(t) for t in live]

    async def list_locations(self) -> list[Location]:
        return [mapping.location_of(await self._get_business())]

    async def check(self) -> None:
        """Reads this location's business afresh (never the cached copy): proves the key, shard and `business_id`."""
        try:
            self._business = await self.client.get(f"businesses/{self.business_id}", wire.Business)
        except NotFound:
            raise NotFound(
                f"Cliniko has no business {self.business_id} in this account: check the location's business_id"
            ) from None

    def verify_probes(self) -> list[tuple[str, ProbeFn]]:
        async def patients() -> str:
            page = await self.client.get("patients", wire.PatientList, [("per_page", "10")])
            return f"a page of {len(page.patients)} patient(s)"

        async def appointment_types() -> str:
            page = await self.client.get("appointment_types", wire.AppointmentTypeList, [("per_page", "10")])
            return f"a page of {len(page.appointment_types)} appointment type(s)"

        return [("patients (one page)", patients), ("appointment types (one page)", appointment_types)]

    async def observed_settings(self) -> list[SettingCheck]:
        """Cliniko reads `available_times` dates in the business's zone (the account's, without advanced time-zone
        support; evidence 2026-11 §1.2): the location's zone should be the business's, or a window's first or last
        day shifts by a date."""
        business = await self.client.get(f"businesses/{self.business_id}", wire.Business)
        observed = business.time_zone_identifier
        return [
            SettingCheck(
                setting="time_zone",
                configured=self.context.time_zone,
                observed=observed,
                agrees=None if observed is None else observed == self.context.time_zone,
                source="Cliniko business time_zone_identifier; evidence 2026-11 §1.2",
            )
        ]

    # ------------------------------------------------------------------------------------------------ availability

    def _windows(self, query: AvailabilityQuery) -> tuple[datetime, datetime, list[tuple[date, date]]]:
        """The UTC range and the ≤7-day date windows (business-local dates, none before today) that cover it."""
        start, end = self._utc(query.start_from), self._utc(query.start_to)
        zone = ZoneInfo(self.context.time_zone)
        first = max(start.astimezone(zone).date(), datetime.now(zone).date())
        last = end.astimezone(zone).date()
        windows: list[tuple[date, date]] = []
        day = first
        while day <= last and start < end:
            window_end = min(day + timedelta(days=WINDOW_DAYS - 1), last)
            windows.append((day, window_end))
            day = window_end + timedelta(days=1)
        return start, end, windows

    def _times_path(self, query: AvailabilityQuery, leaf: str) -> str:
        for value in (query.practitioner_id, query.service_id):
            if not ID_RE.match(value):
                raise NotFound("Cliniko ids are numeric")
        return (
            f"businesses/{self.business_id}/practitioners/{query.practitioner_id}"
            f"/appointment_types/{query.service_id}/{leaf}"
        )

    def _slot(self, query: AvailabilityQuery, start: datetime, minutes: int) -> Slot:
        start = start.astimezone(UTC)
        return Slot(
            start=start,
            end=start + timedelta(minutes=minutes),
            practitioner_id=query.practitioner_id,
            service_id=query.service_id,
            time_zone=self.context.time_zone,
        )

    async def _window_times(self, query: AvailabilityQuery, window: tuple[date, date]) -> list[datetime]:
        params: Params = [("from", window[0].isoformat()), ("to", window[1].isoformat())]
        times = await self.client.list(
            self._times_path(query, "available_times"),
            wire.AvailableTimeList,
            lambda page: page.available_times,
            params,
        )
        return [t.appointment_start.astimezone(UTC) for t in times]

    async def availability(self, query: AvailabilityQuery) -> list[Slot]:
        start, end, windows = self._windows(query)
        minutes = await self._duration(query.service_id)
        starts: set[datetime] = set()
        for window in windows:
            starts.update(s for s in await self._window_times(query, window) if start <= s < end)
        return [self._slot(query, s, minutes) for s in sorted(starts)]

    async def next_available(self, query: AvailabilityQuery) -> Slot | None:
        start, end, windows = self._windows(query)
        minutes = await self._duration(query.service_id)
        for window in windows:
            params: Params = [("from", window[0].isoformat()), ("to", window[1].isoformat())]
            answer = await self.client.get(
                self._times_path(query, "next_available_time"), wire.NextAvailableTime, params
            )
            first = answer.appointment_start
            if not isinstance(first, datetime):
                continue
            first = first.astimezone(UTC)
            if first >= end:
                return None
            if first < start:  # earlier the same day than asked: look at the window's full list
                later = [s for s in await self._window_times(query, window) if start <= s < end]
                if later:
                    return self._slot(query, min(later), minutes)
                continue
            return self._slot(query, first, minutes)
        return None

    # ------------------------------------------------------------------------------------------------ change feed

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        """Patients and this business's appointments updated at or after `cursor` (cancelled and archived included).

        With no cursor the feed starts now: the first call returns nothing and a cursor, so a new location never
        downloads the account's whole history. `>=` re-reads records stamped exactly at the cursor; the caller
        compares snapshots, so a repeat is harmless while a miss would not be.
        """
        if cursor is None:
            return ChangeSet(patients=[], appointments=[], cursor=mapping.rfc3339(datetime.now(UTC)))
        try:
            since = datetime.fromisoformat(cursor)
        except ValueError:
            raise Rejected("the change cursor is not an RFC 3339 time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        stamp = mapping.rfc3339(since)
        started = datetime.now(UTC)
        patients = await self.client.list(
            "patients",
            wire.PatientList,
            lambda page: page.patients,
            [_q("updated_at", ">=", stamp), _q("archived_at", "", "*"), ("sort", "updated_at")],
        )
        appointments = await self.client.list(
            APPOINTMENTS,
            wire.IndividualAppointmentList,
            lambda page: page.individual_appointments,
            [
                _q("updated_at", ">=", stamp),
                _q("business_id", "=", self.business_id),
                _q("cancelled_at", "", "*"),
                _q("archived_at", "", "*"),
                ("sort", "updated_at"),
            ],
        )
        latest_patients = {p.id: p for p in sorted(patients, key=lambda p: p.updated_at)}
        latest_appointments = {
            a.id: a for a in sorted(appointments, key=lambda a: a.updated_at) if a.business.id == self.business_id
        }
        stamps = [p.updated_at for p in latest_patients.values()] + [a.updated_at for a in latest_appointments.values()]
        region = self._region()
        return ChangeSet(
            patients=[
                mapping.patient_of(p, region) for p in sorted(latest_patients.values(), key=lambda p: p.updated_at)
            ],
            appointments=[
                self._appointment(a) for a in sorted(latest_appointments.values(), key=lambda a: a.updated_at)
            ],
            cursor=mapping.rfc3339(settled_cursor(max(stamps), since, started)) if stamps else stamp,
        )

    async def full_listing_requests(self) -> int | None:
        """Two `per_page=1` reads with the feed's filters: their `total_entries` give the pages
        `changes_since(FULL_LISTING)` will read (100 a page, one even for none), plus these two requests."""
        stamp = mapping.rfc3339(datetime.fromisoformat(FULL_LISTING))
        patients = await self.client.get(
            "patients",
            wire.PatientList,
            [_q("updated_at", ">=", stamp), _q("archived_at", "", "*"), ("per_page", "1")],
        )
        appointments = await self.client.get(
            APPOINTMENTS,
            wire.IndividualAppointmentList,
            [
                _q("updated_at", ">=", stamp),
                _q("business_id", "=", self.business_id),
                _q("cancelled_at", "", "*"),
                _q("archived_at", "", "*"),
                ("per_page", "1"),
            ],
        )
        totals = (patients.total_entries, appointments.total_entries)
        return sum(max(1, math.ceil(total / int(PER_PAGE))) for total in totals) + 2

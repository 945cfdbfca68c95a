"""The Halaxy adapter: one gateway location is one Halaxy clinic (`settings.organization_id`, a `CL-…`).

Halaxy's API is FHIR R4B (developers.halaxy.com; the laravel-halaxy SDK). Ids: a practitioner is the `PR-…`
PractitionerRole (the practitioner at this clinic; their name and e-mail come from the Practitioner it points to), a
service is a HealthcareService (an "appointment type", its length in a duration extension), the location is the
clinic's Organization. Patients belong to the practice group, so patient lookups are not confined to the clinic;
appointments are, through their PractitionerRole.

What the evidence settles, and what this adapter does about what it does not:
- Token: `POST [base]/oauth/token` with a JSON body; the answer says `expires_in: 3600` and the same page "valid for
  15 minutes": re-minted a minute before `token_lifetime_seconds` (900), and once on a 401.
- Every request says `User-Agent: <vendor> (<contact e-mail>)` and `Accept: application/fhir+json`; `PATCH` is
  `application/merge-patch+json` (docs/request-structure). Searches follow `Bundle.link[next]` on the same host.
- 500 requests a minute per client, a sliding window (docs/authentication): the shared budget allows 50 at once and
  7 a second (at most 470 in any minute); a 429's `retry-after` pauses every holder of the credentials.
- Availability is `Appointment/$find` (start, end, duration, practitioner-role); `show=first-available` for the next
  slot. Booking is `Appointment/$book` with `appt-resource`, `patient-id`, `healthcare-service-id`, `location-type`
  and `status` (reference/createappointment; absolute references, as the docs and the SDK write them). The
  `appt-resource` also carries `status: booked` and the participant's `status: accepted`, which the docs' example
  leaves out but FHIR requires of an Appointment (UNCONFIRMED that Halaxy reads them; it reads the `status`
  parameter).
- Halaxy's appointments carry no top-level `status` (the SDK's live test; the docs list none): status is read from
  the patient's `appointment-participant-status` extension first ("booked", "confirmed", "attended", "cancelled"),
  then a FHIR `status` if a server sends one.
- Cancel (UNCONFIRMED: no Halaxy page shows the body): `settings.cancel_style`. `participant_status` (default)
  patches the patient's attendance extension with `settings.cancel_code` ("cancelled (no charge)"), the recipe the
  SDK's live test used and saw read back as "cancelled"; `status` sends FHIR's `{"status": "cancelled"}`. Either
  way the answer is checked: an appointment still not cancelled is an error naming the setting. Halaxy documents no
  cancellation reason, so the reason and note are reported on the cancel's answer only.
- Reschedule: `PATCH` of `start`, `end` and `minutesDuration`; moving an appointment to another practitioner is not
  documented and is refused (`Unsupported`).
- Double bookings: nothing says `$book` refuses a taken time (Halaxy's calendar lets staff double-book), so the
  adapter checks the practitioner's appointments before booking and again after (the earlier-created of two racers
  keeps the slot; the other is cancelled again, and if that cancel does not read back as cancelled the caller is
  told the booking stands: `OutcomeUnknown`, never "slot taken"). A `conflict` OperationOutcome from Halaxy is a
  taken slot too. Group sessions count as busy, with or without patients. Known limit: the check searches by
  `practitioner-role`, i.e. this clinic's calendar; a practitioner with roles at two clinics can be booked at both
  at once. No Halaxy page or SDK test shows an Appointment search by `practitioner` (only `$find` takes it, and
  Halaxy's appointments name the PractitionerRole, not the Practitioner), so it is not relied on.
  A booking is 3 calls (`min_booking_calls`): the check, `$book` (whose answer is the stored appointment that
  verification reads) and the check after. Notes the `$book` answer does not show (its request schema lists no
  `description`) are written with one `PATCH` of `description`.
- A create is never sent twice (adapters.reconcile): a booking whose answer is lost is looked for by patient,
  practitioner and start; a patient by e-mail (or name and birth date) changed since the write began. Halaxy keeps
  no e-mail unique, so a second chart is the failure this avoids.
- Patient search uses `email`, `phone` (UNCONFIRMED: FHIR's parameter; no Halaxy page lists its search
  parameters), `given`, `family` and `birthdate`, then compares exactly; an e-mail's `+` goes out as `%2B`
  (docs/request-structure). Phones are written `+{country code}{number}` without spaces (reference/patient).
- Changes: `_lastUpdated=gt…` on Patient and Appointment (docs/querying-resources), 2 requests per idle poll, and
  Halaxy's Subscription notifications where the practice created webhooks (gateway/routes/halaxy_webhooks.py). Pages
  are `page=N` offsets in no documented order: a walk whose results moved under it (a record read twice, `total`
  changed) is read again by `_lastUpdated` windows that each fit one answer (`_changed`).
- Deletions: a deleted appointment is gone (its read is 404) and no `_lastUpdated` search lists it again, so the
  change feed, and the daily sweep (it lists appointments that started since the last one), never see it go. Only
  Halaxy's "Appointment deleted" webhook says so: the webhook route re-snapshots the appointment's patient and
  announces it cancelled. `full_listing_complete` stays True: a full listing does list every appointment that
  exists, and False would not help (a patient's snapshot comes from stored facts once their appointments are
  known either way). Without that webhook a deletion is never seen.
- Records the gateway cannot show are skipped, not errors: a group session nobody has joined has no Patient
  participant (one such record would otherwise stop the feed, whose cursor would never move, and every listing).
- Another clinic's PractitionerRole (met in a notification or a search) is remembered per instance once a fresh
  read of this clinic's roles has not listed it, so naming it again costs no roles read.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar, TypeVar

import httpx
import msgspec

from adapters import probes
from adapters.base import AdapterContext, Capability, EMRAdapter
from adapters.errors import (
    AdapterError,
    AlreadyCancelled,
    InvalidReference,
    NotFound,
    Rejected,
    SlotUnavailable,
    Unavailable,
    Unsupported,
)
from adapters.fhir import mapping as fhir_mapping
from adapters.fhir import wire
from adapters.fhir.client import FHIR_JSON, MAX_PAGES, ClientCredentials, Conflict, FhirClient, Params, resources_of
from adapters.halaxy import mapping
from adapters.halaxy import wire as hx
from adapters.halaxy.settings import HalaxyCredentials, HalaxySettings, base_url_of, user_agent_of
from adapters.http import DEFAULT_RETRY, RetryPolicy
from adapters.markers import with_marker
from adapters.pacing import RateLimit
from adapters.phones import e164, region_for_zone
from adapters.reconcile import AmbiguousWrite, race_key, settle_race, withdrawal_failed
from adapters.stamps import settled_cursor, whole_second
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

EMR_NAME = "Halaxy"
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR's id
PAGE = "50"  # `_count` as the SDK fixture pages (`…?_count=50&page=2`)
NEIGHBOURS = timedelta(hours=24)  # how far before a window an overlapping appointment can start
FOREIGN_ROLES = 10_000  # other clinics' role ids remembered per instance, at most
FIND_WINDOW = timedelta(minutes=1)
CLOCK_SKEW = timedelta(seconds=60)
R = TypeVar("R", bound=wire.Resource)
RACE_NOTE = "Cancelled automatically by the EMR Gateway: the slot was taken at the same moment (double booking)."
CANCEL_SOURCE = (
    "no Halaxy page shows a cancel body; the laravel-halaxy SDK's live test patches the patient's "
    "appointment-participant-status extension with 'cancelled (no charge)' and reads back 'cancelled'"
)
LIFETIME_SOURCE = "developers.halaxy.com/docs/authentication: expires_in 3600, yet 'valid for 15 minutes'"
DURATION_SOURCE = "developers.halaxy.com/reference/healthcareservice names the duration by its value only"


class HalaxyAdapter(EMRAdapter[HalaxySettings, HalaxyCredentials]):
    """Halaxy FHIR API (R4B), per clinic."""

    slug: ClassVar[str] = "halaxy"
    display_name: ClassVar[str] = "Halaxy"
    verified_against: ClassVar[str] = (
        "Halaxy FHIR API (R4B) as developers.halaxy.com documents it and the laravel-halaxy SDK (its fixtures and "
        "live integration tests) shows it; not run against a live account"
    )
    settings_type: ClassVar[type[HalaxySettings]] = HalaxySettings
    credentials_type: ClassVar[type[HalaxyCredentials]] = HalaxyCredentials
    # An idle poll is 2 requests (patients and appointments changed since the cursor): every 60 s is 2 of the 500 a
    # minute, plus a token every 14 minutes.
    default_poll_seconds: ClassVar[int] = 60
    # "500 requests per minute", a sliding window: 50 at once plus 7 a second is at most 470 in any minute.
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=7.0, burst=50),)
    min_booking_calls: ClassVar[int] = 3  # the calendar check, `$book`, the check after
    patient_batch_size: ClassVar[int] = 50  # `Patient?_id=1,2,3` (docs/querying-resources)
    # `_lastUpdated` from 2000 lists every patient and every appointment that exists (a deleted one is gone: only
    # the "Appointment deleted" webhook reports it; see the module docstring).
    full_listing_complete: ClassVar[bool] = True
    write_settings: ClassVar[dict[str, str]] = {
        "start": "the location's time_zone (times are sent with its offset)",
        "end": "the appointment type's duration extension (settings.duration_extension_url)",
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
            # Halaxy is not known to refuse overlaps; the adapter does (a check before and after every booking).
            Capability.REJECTS_DOUBLE_BOOKING,
        }
    )

    def __init__(
        self,
        settings: HalaxySettings,
        credentials: HalaxyCredentials,
        http: httpx.AsyncClient,
        context: AdapterContext,
    ) -> None:
        super().__init__(settings, credentials, http, context)
        self.base_url = base_url_of(settings)
        self.client = FhirClient(
            http,
            emr=EMR_NAME,
            base_url=self.base_url,
            auth=ClientCredentials(
                token_url=f"{self.base_url}/oauth/token",
                client_id=credentials.client_id,
                client_secret=credentials.client_secret,
                body="json",
                lifetime_cap=settings.token_lifetime_seconds,
            ),
            user_agent=user_agent_of(settings),
            post_content_type=FHIR_JSON,
            retry=DEFAULT_RETRY,
        )
        self._roles: dict[str, wire.PractitionerRole] | None = None
        self._people: dict[str, wire.Practitioner] = {}
        self._roles_lock = asyncio.Lock()
        self._foreign: set[str] = set()  # role ids a fresh read showed are not this clinic's (another clinic's)
        self._durations: dict[str, int] = {}

    @property
    def retry(self) -> RetryPolicy:
        """How reads are retried; the gateway and tests may replace it per instance."""
        return self.client.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.client.retry = policy

    # ------------------------------------------------------------------------------------------------ helpers

    def _utc(self, moment: datetime) -> datetime:
        return fhir_mapping.utc(moment, self.context.time_zone)

    def _local(self, moment: datetime) -> str:
        return mapping.local(moment, self.context.time_zone)

    def _ref(self, kind: str, rid: str) -> wire.Reference:
        """An absolute reference with its type, as reference/createappointment writes them."""
        return wire.Reference(reference=f"{self.base_url}/{kind}/{rid}", type=kind)

    def _appointment(self, appointment: hx.Appointment) -> Appointment:
        return mapping.appointment_of(
            appointment,
            location_id=self.context.location_id,
            time_zone=self.context.time_zone,
            organization_id=self.settings.organization_id,
        )

    def _region(self) -> str | None:
        return region_for_zone(self.context.time_zone)

    async def _clinic_roles(self, *, refresh: bool = False) -> dict[str, wire.PractitionerRole]:
        """This clinic's practitioner roles (with their Practitioners), read once per instance unless `refresh`."""
        async with self._roles_lock:
            if self._roles is not None and not refresh:
                return self._roles
            params: Params = [
                ("organization", self.settings.organization_id),
                ("_include", "PractitionerRole:practitioner"),
                ("_count", PAGE),
            ]
            page: wire.Bundle | None = await self.client.bundle("PractitionerRole", params)
            roles: dict[str, wire.PractitionerRole] = {}
            people: dict[str, wire.Practitioner] = {}
            while page is not None:
                for role in resources_of(page, wire.PractitionerRole, emr=EMR_NAME):
                    if not role.id:
                        raise mapping.missing("$.entry[].resource.id")
                    if role.practitioner is None or role.practitioner.id is None:
                        raise mapping.missing("$.entry[].resource.practitioner")
                    if role.organization is None or role.organization.id in (None, self.settings.organization_id):
                        roles[role.id] = role
                people.update((p.id, p) for p in resources_of(page, wire.Practitioner, emr=EMR_NAME) if p.id)
                page = await self.client.next_page(page)
            wanted = {r.practitioner.id for r in roles.values() if r.practitioner and r.practitioner.id}
            absent = sorted(wanted - set(people))
            if absent:  # a server that ignored `_include`: read them by id
                found = await self.client.search(wire.Practitioner, [("_id", ",".join(absent)), ("_count", PAGE)])
                people.update((p.id, p) for p in found if p.id)
            self._roles, self._people = roles, people
            self._foreign -= roles.keys()
            return roles

    async def _own_role(self, role_id: str) -> wire.PractitionerRole | None:
        """The role if it is this clinic's. One not among those known is read again once per instance: a role a
        fresh read did not list is remembered as another clinic's, so a notification (or a caller) naming another
        clinic's appointments again and again costs no more reads of the roles."""
        roles = await self._clinic_roles()
        if role_id not in roles and role_id not in self._foreign and ID_RE.match(role_id):
            roles = await self._clinic_roles(refresh=True)
            if role_id not in roles:
                if len(self._foreign) >= FOREIGN_ROLES:
                    self._foreign.clear()
                self._foreign.add(role_id)
        return roles.get(role_id)

    async def _role_id(self, practitioner_id: str) -> str:
        if await self._own_role(practitioner_id) is None:
            raise InvalidReference(
                "the practitioner is not a practitioner role of this Halaxy clinic", field="practitioner_id"
            )
        return practitioner_id

    async def _duration(self, service_id: str) -> int:
        if service_id not in self._durations:
            if not ID_RE.match(service_id):
                raise NotFound("not a Halaxy appointment type id")
            service = await self.client.read(wire.HealthcareService, service_id)
            minutes = mapping.duration_of(service, self.settings.duration_extension_url)
            if minutes is None:
                raise mapping.missing("$.extension")
            self._durations[service_id] = minutes
        return self._durations[service_id]

    async def _fetch(self, appointment_id: str) -> hx.Appointment:
        """The appointment if it is this clinic's and a patient's (another clinic's, or a group session nobody has
        joined, reads as not found)."""
        if not ID_RE.match(appointment_id):
            raise NotFound("not a Halaxy appointment id")
        appointment = await self.client.read(hx.Appointment, appointment_id)
        role = appointment.actor("PractitionerRole")
        if role is None or role.id is None or await self._own_role(role.id) is None:
            raise NotFound("Halaxy has no such appointment at this clinic")
        if not mapping.has_patient(appointment):
            raise NotFound("the Halaxy appointment has no patient (a group session nobody has joined)")
        return appointment

    async def _search_appointments(self, params: Params) -> list[hx.Appointment]:
        return await self.client.search(hx.Appointment, [*params, ("_count", PAGE)])

    async def _mine(self, found: list[hx.Appointment]) -> list[hx.Appointment]:
        """This clinic's of `found` that have a patient; an empty search reads no roles (a quiet poll stays at 2
        requests). A group session nobody has joined is skipped, not an error: one such record must not stop the
        feed (its cursor would never move) or a patient's listing."""
        if not found:
            return []
        roles = await self._clinic_roles()
        out = []
        for appointment in found:
            role = appointment.actor("PractitionerRole")
            if role is not None and role.id in roles and mapping.has_patient(appointment):
                out.append(appointment)
        return out

    async def _overlapping(
        self, role_id: str, start: datetime, end: datetime, exclude_id: str | None = None
    ) -> list[mapping.Busy]:
        """The role's live appointments overlapping [start, end), group sessions included (with or without
        patients, they occupy the practitioner)."""
        found = await self._search_appointments(
            [
                ("practitioner-role", role_id),
                ("date", f"ge{mapping.instant(start - NEIGHBOURS)}"),
                ("date", f"lt{mapping.instant(end)}"),
            ]
        )
        spans = [mapping.busy_of(a, self.context.time_zone) for a in found]
        return [
            a
            for a in spans
            if a.id != exclude_id
            and a.practitioner_id == role_id
            and a.status not in (AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW)
            and a.start < end
            and a.end > start
        ]

    def _cancel_changes(self, patient_id: str) -> bytes:
        """The merge patch that cancels (settings.cancel_style; see the module docstring)."""
        if self.settings.cancel_style == "status":
            return msgspec.json.encode({"status": "cancelled"})
        code = self.settings.cancel_code
        root = self.base_url.removesuffix("/main")
        status = wire.Extension(
            url=hx.PARTICIPANT_STATUS_URL,
            valueCoding=wire.Coding(system=f"{root}{hx.PRESETS_STATUS_PATH}", code=code, display=code),
        )
        participant = hx.Participant(actor=self._ref("Patient", patient_id), modifierExtension=[status])
        return msgspec.json.encode({"participant": [participant]})

    # ------------------------------------------------------------------------------------------------ appointments

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return self._appointment(await self._fetch(appointment_id))

    def _book_parameters(
        self, command: BookCommand, role_id: str, start: datetime, end: datetime, minutes: int
    ) -> wire.Parameters:
        appointment = hx.BookedAppointment(
            status="booked",
            start=self._local(start),
            end=self._local(end),
            minutesDuration=minutes,
            description=with_marker(command.notes, command.operation_id),
            participant=[hx.Participant(actor=self._ref("PractitionerRole", role_id), status="accepted")],
        )
        return wire.Parameters(
            parameter=[
                wire.ParametersParameter(name="appt-resource", resource=msgspec.Raw(msgspec.json.encode(appointment))),
                wire.ParametersParameter(name="patient-id", valueReference=self._ref("Patient", command.patient_id)),
                wire.ParametersParameter(
                    name="healthcare-service-id", valueReference=self._ref("HealthcareService", command.service_id)
                ),
                wire.ParametersParameter(name="location-type", valueCode=self.settings.location_type),
                wire.ParametersParameter(name="status", valueCode="booked"),
            ]
        )

    async def _book(self, command: BookCommand) -> Written:
        for value in (command.patient_id, command.service_id):
            if not ID_RE.match(value):
                raise InvalidReference("not a Halaxy id")
        role_id = await self._role_id(command.practitioner_id)
        start = self._utc(command.start)
        if command.end is not None:
            end = self._utc(command.end)
        else:
            end = start + timedelta(minutes=await self._duration(command.service_id))
        if end <= start:
            raise Rejected("the appointment must end after it starts")
        seconds = (end - start).total_seconds()
        if seconds % 60:
            raise Rejected("Halaxy books whole minutes")
        minutes = int(seconds // 60)
        if await self._overlapping(role_id, start, end):
            raise SlotUnavailable("the practitioner already has an appointment at that time")
        parameters = self._book_parameters(command, role_id, start, end, minutes)

        async def create() -> hx.Appointment:
            try:
                response = await self.client.operation("Appointment/$book", parameters)
            except Conflict as exc:  # 409, or an OperationOutcome `conflict` issue (adapters.fhir.client.error_for)
                raise SlotUnavailable(
                    "Halaxy refused the time as taken", emr_status=exc.emr_status, emr_message=exc.emr_message
                ) from None
            return await self.client.written(response, hx.Appointment)

        async def landed() -> hx.Appointment | None:
            found = await self._search_appointments(
                [
                    ("patient", command.patient_id),
                    ("practitioner-role", role_id),
                    ("date", f"ge{mapping.instant(start - FIND_WINDOW)}"),
                    ("date", f"lt{mapping.instant(start + FIND_WINDOW)}"),
                ]
            )
            mine = [
                (a, m)
                for a, m in ((a, self._appointment(a)) for a in found if mapping.has_patient(a))
                if m.status is not AppointmentStatus.CANCELLED
                and m.practitioner_id == role_id
                and abs(m.start - start) < FIND_WINDOW
            ]
            if command.operation_id is not None:
                marked = [pair for pair in mine if pair[1].operation_id == command.operation_id]
                mine = marked or [pair for pair in mine if pair[1].operation_id is None]
            return min(mine, key=lambda pair: (len(pair[1].id), pair[1].id))[0] if mine else None

        created = await self._reconciled(create, landed, "booking", resend=False, operation_id=command.operation_id)
        stored = self._appointment(created)
        await settle_race(
            lost=lambda: self._lost_race(stored),
            withdraw=lambda: self._withdraw(stored),
            emr=EMR_NAME,
            appointment_id=stored.id,
        )
        if command.notes and stored.notes != command.notes:
            stored = await self._keep_notes(stored, command)
        asked = Asked(start=start, end=end, practitioner_id=role_id, patient_id=command.patient_id)
        return Written(stored=stored, asked=asked)

    async def _keep_notes(self, stored: Appointment, command: BookCommand) -> Appointment:
        """The caller's notes, when `$book` did not keep them (its request schema lists no `description`). The
        booking stands either way: notes that could not be written are not worth undoing it."""
        changes = msgspec.json.encode({"description": with_marker(command.notes, command.operation_id)})
        try:
            return self._appointment(await self.client.patch(hx.Appointment, stored.id, changes))
        except (AdapterError, AmbiguousWrite):
            return stored

    async def _lost_race(self, mine: Appointment) -> bool:
        """Two bookings that raced into one slot: the earlier-created one (then the lower id) keeps it."""
        rivals = await self._overlapping(mine.practitioner_id, mine.start, mine.end, exclude_id=mine.id)
        return any(race_key(r.created_at, r.id) < race_key(mine.created_at, mine.id) for r in rivals)

    async def _withdraw(self, appointment: Appointment) -> None:
        """Cancel a booking the caller was never told of (a lost race), with no read first. The patch's answer must
        read as cancelled, as `cancel()` checks: Halaxy ignores a body it does not honour (settings.cancel_style)
        and answers the appointment unchanged, and the caller must then hear that the booking stands, not that the
        slot was taken. A patch that fails raises (`settle_race` makes it OutcomeUnknown)."""
        answer = await self.client.patch(hx.Appointment, appointment.id, self._cancel_changes(appointment.patient_id))
        if mapping.status_of(answer) is not AppointmentStatus.CANCELLED:
            raise withdrawal_failed(
                appointment.id,
                f"Halaxy still shows the new appointment {appointment.id} as not cancelled after the withdrawal "
                f"(check settings.cancel_style ({self.settings.cancel_style}) and settings.cancel_code)",
            )

    async def _reschedule(self, command: RescheduleCommand) -> Written:
        current = self._appointment(await self._fetch(command.appointment_id))
        if current.status in (AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW):
            raise AlreadyCancelled("a cancelled appointment cannot be rescheduled")
        if command.practitioner_id is not None and command.practitioner_id != current.practitioner_id:
            raise Unsupported("Halaxy's API documents no way to move an appointment to another practitioner")
        start = self._utc(command.start) if command.start is not None else current.start
        end = self._utc(command.end) if command.end is not None else start + (current.end - current.start)
        if end <= start:
            raise Rejected("the appointment must end after it starts")
        if (end - start).total_seconds() % 60:
            raise Rejected("Halaxy books whole minutes")
        changes: dict[str, object] = {}
        if (start, end) != (current.start, current.end):
            if await self._overlapping(current.practitioner_id, start, end, exclude_id=current.id):
                raise SlotUnavailable("the practitioner already has an appointment at that time")
            minutes = int((end - start).total_seconds() // 60)
            changes.update(start=self._local(start), end=self._local(end), minutesDuration=minutes)
        if command.notes is not None:
            changes["description"] = with_marker(command.notes, current.operation_id)
        asked = Asked(start=start, end=end, practitioner_id=current.practitioner_id)
        if not changes:
            return Written(stored=current, asked=asked, previous=current)
        body = msgspec.json.encode(changes)

        async def move() -> hx.Appointment:
            return await self.client.patch(hx.Appointment, current.id, body)

        async def landed() -> hx.Appointment | None:
            found = await self._fetch(current.id)
            at = self._appointment(found)
            return found if abs(at.start - start) < FIND_WINDOW and abs(at.end - end) < FIND_WINDOW else None

        moved = await self._reconciled(move, landed, "reschedule", resend=True)
        return Written(stored=self._appointment(moved), asked=asked, previous=current)

    async def cancel(self, command: CancelCommand) -> Appointment:
        current = self._appointment(await self._fetch(command.appointment_id))
        if current.status is not AppointmentStatus.CANCELLED:
            body = self._cancel_changes(current.patient_id)

            async def write() -> hx.Appointment:
                return await self.client.patch(hx.Appointment, current.id, body)

            async def landed() -> hx.Appointment | None:
                found = await self._fetch(current.id)
                return found if mapping.status_of(found) is AppointmentStatus.CANCELLED else None

            current = self._appointment(await self._reconciled(write, landed, "cancellation", resend=True))
            if current.status is not AppointmentStatus.CANCELLED:
                raise Rejected(
                    "Halaxy accepted the cancellation but still shows the appointment as not cancelled; "
                    f"check settings.cancel_style ({self.settings.cancel_style}) and settings.cancel_code"
                )
        return msgspec.structs.replace(current, cancel_reason=command.reason, cancel_note=command.note)

    async def list_appointments(self, query: AppointmentQuery) -> list[Appointment]:
        params: list[tuple[str, str]] = []
        if query.patient_id is not None:
            if not ID_RE.match(query.patient_id):
                return []
            params.append(("patient", query.patient_id))
        if query.practitioner_id is not None:
            if await self._own_role(query.practitioner_id) is None:
                return []
            params.append(("practitioner-role", query.practitioner_id))
        start_from = self._utc(query.start_from) if query.start_from is not None else None
        start_to = self._utc(query.start_to) if query.start_to is not None else None
        if start_from is not None:
            params.append(("date", f"ge{mapping.instant(start_from)}"))
        if start_to is not None:
            params.append(("date", f"lt{mapping.instant(start_to)}"))
        found = [self._appointment(a) for a in await self._mine(await self._search_appointments(params))]
        chosen = [
            a
            for a in found
            if (start_from is None or a.start >= start_from)
            and (start_to is None or a.start < start_to)
            and (query.patient_id is None or a.patient_id == query.patient_id)
        ]
        return sorted(chosen, key=lambda a: (a.start, a.id))

    # ------------------------------------------------------------------------------------------------ patients

    async def find_patients(self, query: PatientQuery) -> list[Patient]:
        params: list[tuple[str, str]] = []
        phone = e164(query.phone, self._region()) if query.phone else None
        if query.phone and phone is None:
            return []
        if query.email:
            params.append(("email", query.email.strip()))
        if phone:
            params.append(("phone", phone))
        if query.first_name:
            params.append(("given", query.first_name.strip()))
        if query.last_name:
            params.append(("family", query.last_name.strip()))
        if query.date_of_birth is not None:
            params.append(("birthdate", query.date_of_birth.isoformat()))
        if not params:
            raise Rejected("a patient search needs an e-mail, a phone, a name or a date of birth")
        found = await self.client.search(wire.Patient, [*params, ("_count", PAGE)])
        patients = [mapping.patient_of(p, self._region()) for p in found]
        return [p for p in patients if _matches(p, query, phone)]

    async def get_patient(self, patient_id: str) -> Patient:
        if not ID_RE.match(patient_id):
            raise NotFound("not a Halaxy patient id")
        return mapping.patient_of(await self.client.read(wire.Patient, patient_id), self._region())

    async def get_patients(self, patient_ids: list[str]) -> list[Patient]:
        """`Patient?_id=1,2,3` (docs/querying-resources): `patient_batch_size` patients per request."""
        ids = sorted({i for i in patient_ids if ID_RE.match(i)})
        found: list[Patient] = []
        for at in range(0, len(ids), self.patient_batch_size):
            batch = ",".join(ids[at : at + self.patient_batch_size])
            page = await self.client.search(wire.Patient, [("_id", batch), ("_count", PAGE)])
            found.extend(mapping.patient_of(p, self._region()) for p in page)
        return found

    async def create_patient(self, patient: NewPatient) -> Patient:
        telecom: list[wire.ContactPoint] = []
        if patient.email:
            telecom.append(wire.ContactPoint(system="email", value=patient.email.strip(), use="home"))
        if patient.phone:
            number = e164(patient.phone, self._region())
            if number is None:
                raise InvalidReference("the phone number is not a possible number", field="phone")
            telecom.append(wire.ContactPoint(system="phone", value=number, use="mobile"))
        body = wire.Patient(
            name=[wire.HumanName(use="official", family=patient.last_name, given=[patient.first_name])],
            telecom=telecom,
            birthDate=patient.date_of_birth.isoformat() if patient.date_of_birth else None,
        )
        started = datetime.now(UTC)

        async def create() -> wire.Patient:
            return await self.client.create(body)

        async def landed() -> wire.Patient | None:
            params: list[tuple[str, str]] = [("family", patient.last_name), ("given", patient.first_name)]
            if patient.email:
                params.append(("email", patient.email.strip()))
            if patient.date_of_birth is not None:
                params.append(("birthdate", patient.date_of_birth.isoformat()))
            found = await self.client.search(wire.Patient, [*params, ("_lastUpdated", f"gt{_floor(started)}")])
            return max(found, key=lambda p: (len(p.id or ""), p.id or "")) if found else None

        created = await self._reconciled(create, landed, "patient creation", resend=False)
        return mapping.patient_of(created, self._region())

    # ------------------------------------------------------------------------------------------------ catalog

    async def list_practitioners(self) -> list[Practitioner]:
        roles = await self._clinic_roles(refresh=True)
        out: list[Practitioner] = []
        for role in roles.values():
            person = self._people.get(role.practitioner.id or "") if role.practitioner else None
            practitioner = mapping.practitioner_of(role, person)
            if practitioner.active:
                out.append(practitioner)
        return out

    async def list_services(self) -> list[Service]:
        services = await self.client.search(wire.HealthcareService, [("_count", PAGE)])
        out: list[Service] = []
        for service in services:
            if service.active is False:
                continue
            minutes = mapping.duration_of(service, self.settings.duration_extension_url)
            if minutes is None:
                raise mapping.missing("$.entry[].resource.extension")
            out.append(mapping.service_of(service, minutes))
            self._durations[out[-1].id] = minutes
        return out

    async def list_locations(self) -> list[Location]:
        return [mapping.location_of(await self._organization(), self.context.time_zone)]

    async def _organization(self) -> wire.Organization:
        if not ID_RE.match(self.settings.organization_id):
            raise NotFound("settings.organization_id is not a Halaxy id")
        try:
            return await self.client.read(wire.Organization, self.settings.organization_id)
        except NotFound:
            raise NotFound(
                "Halaxy has no organization with this location's organization_id: check the setting (a CL-… clinic)"
            ) from None

    async def check(self) -> None:
        """Mints a token and reads this location's clinic: proves the client id/secret and `organization_id`."""
        await self._organization()

    # ------------------------------------------------------------------------------------------------ verify

    def verify_probes(self) -> list[tuple[str, probes.ProbeFn]]:
        async def capability_statement() -> str:
            statement = await self.client.capabilities()
            missing = [op for op in ("find", "book") if not statement.operation("Appointment", op)]
            if missing:
                return "does not declare Appointment/$" + ", $".join(missing)
            return f"FHIR {statement.fhirVersion or '?'}; declares Appointment/$find and $book"

        async def patients() -> str:
            found, _ = await self.client.search_page(wire.Patient, [("_count", "10")])
            return f"a page of {len(found)} patient(s)"

        return [("capability statement", capability_statement), ("patients (one page)", patients)]

    async def observed_settings(self) -> list[SettingCheck]:
        """What the account shows of the settings the evidence leaves open: which extension carries an appointment
        type's minutes; the cancel body and the token lifetime cannot be seen without writing or waiting."""
        services = await self.client.search(wire.HealthcareService, [("_count", "10")])
        observed = None
        for service in services:
            for ext in service.extension:
                quantity = ext.valueQuantity or ext.valueDuration
                if quantity is not None and mapping.duration_of(wire.HealthcareService(extension=[ext]), None):
                    observed = ext.url
                    break
            if observed:
                break
        configured = self.settings.duration_extension_url
        return [
            SettingCheck(
                setting="duration_extension_url",
                configured=configured or "unset (any extension with a quantity in minutes)",
                observed=observed,
                agrees=None if configured is None or observed is None else configured == observed,
                source=DURATION_SOURCE,
            ),
            SettingCheck(
                setting="cancel_style",
                configured=f"{self.settings.cancel_style} ({self.settings.cancel_code})",
                source=CANCEL_SOURCE,
            ),
            SettingCheck(
                setting="token_lifetime_seconds",
                configured=str(self.settings.token_lifetime_seconds),
                source=LIFETIME_SOURCE,
            ),
        ]

    # ------------------------------------------------------------------------------------------------ availability

    def _find_params(self, query: AvailabilityQuery, minutes: int) -> list[tuple[str, str]]:
        return [
            ("start", mapping.instant(self._utc(query.start_from))),
            ("end", mapping.instant(self._utc(query.start_to))),
            ("duration", str(minutes)),
            ("practitioner-role", query.practitioner_id),
            ("_count", PAGE),
        ]

    async def _found(self, query: AvailabilityQuery, params: Params, minutes: int) -> list[Slot]:
        start, end = self._utc(query.start_from), self._utc(query.start_to)
        page: wire.Bundle | None = await self.client.bundle("Appointment/$find", params)
        slots: dict[datetime, Slot] = {}
        while page is not None:
            for proposed in resources_of(page, hx.Appointment, emr=EMR_NAME):
                role = proposed.actor("PractitionerRole")
                if proposed.start is None or (role is not None and role.id != query.practitioner_id):
                    continue
                begin = self._utc(proposed.start)
                if start <= begin < end:
                    slots[begin] = Slot(
                        start=begin,
                        end=begin + timedelta(minutes=minutes),
                        practitioner_id=query.practitioner_id,
                        service_id=query.service_id,
                        time_zone=self.context.time_zone,
                    )
            page = await self.client.next_page(page)
        return [slots[s] for s in sorted(slots)]

    async def availability(self, query: AvailabilityQuery) -> list[Slot]:
        if self._utc(query.start_to) <= self._utc(query.start_from):
            return []
        await self._role_id(query.practitioner_id)
        minutes = await self._duration(query.service_id)
        return await self._found(query, self._find_params(query, minutes), minutes)

    async def next_available(self, query: AvailabilityQuery) -> Slot | None:
        if self._utc(query.start_to) <= self._utc(query.start_from):
            return None
        await self._role_id(query.practitioner_id)
        minutes = await self._duration(query.service_id)
        params = [*self._find_params(query, minutes), ("show", "first-available")]
        found = await self._found(query, params, minutes)
        return found[0] if found else None

    # ------------------------------------------------------------------------------------------------ change feed

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        """Patients (practice-wide) and this clinic's appointments updated since `cursor`, cancelled ones included
        (deleted ones are not: no search lists them; group sessions with no patient are skipped).

        With no cursor the feed starts now. `_lastUpdated` is to the second, so `gt` is asked from a second before
        the cursor: a record stamped at the cursor's second is read again (harmless: the caller compares digests),
        never skipped. The next cursor is held back from the newest stamp (adapters.stamps.settled_cursor).
        """
        now = datetime.now(UTC)
        if cursor is None:
            return ChangeSet(patients=[], appointments=[], cursor=mapping.instant(now))
        try:
            since = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected("the change cursor is not an RFC 3339 time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        patients, patients_held = await self._changed(wire.Patient, since, now)
        found, appointments_held = await self._changed(hx.Appointment, since, now)
        appointments = await self._mine(found)
        stamps = [s for s in (fhir_mapping.updated_at(r) for r in [*patients, *appointments]) if s is not None]
        region = self._region()
        changed_patients = sorted(
            (mapping.patient_of(p, region) for p in patients), key=lambda p: (p.updated_at or now, p.id)
        )
        changed = sorted((self._appointment(a) for a in appointments), key=lambda a: (a.updated_at or now, a.id))
        next_cursor = settled_cursor(max(stamps), since, now) if stamps else since
        for held in (patients_held, appointments_held):
            if held is not None:  # a crowded second moved while it was walked: the next poll reads it again
                next_cursor = max(since, min(next_cursor, held))
        return ChangeSet(patients=changed_patients, appointments=changed, cursor=mapping.instant(next_cursor))

    async def _changed(self, type_: type[R], since: datetime, started: datetime) -> tuple[list[R], datetime | None]:
        """Every `type_` record stamped after the cursor `since`, and a stamp the next cursor must not pass (None:
        no limit beyond settling).

        `page=N` offsets are no snapshot: Halaxy documents no order for a search without `_sort`, so a record updated
        or deleted between two pages can move and shift another one past the offset, unseen, while the cursor moves
        on past its stamp. The pages are walked as before (a poll that finds less than a page is 1 request), and the
        walk is checked: a record read twice, a `total` that changed, or fewer records than `total` say the results
        moved under it. Then the same span is read again by `_lastUpdated` windows that each fit one answer (a window
        whose answer names a next page is halved, both halves asked afresh, oldest first); records stamped after the
        poll began fall outside them and are the next poll's (the cursor settles before the poll's start). One second
        holding more than a page cannot be split: its pages are walked, and if that walk moved too, the second is
        returned as the limit so the next poll reads it again. What no check can see: a deletion and a creation
        landing during one walk leave `total` unchanged and may hide one unchanged record until its next change.
        """
        lower = whole_second(since) - timedelta(seconds=1)  # `_lastUpdated` is to the second: re-read the cursor's
        found: dict[str, R] = {}
        unnamed: list[R] = []  # no id: kept for the mapping to refuse, as before

        def keep(records: list[R]) -> None:
            for record in records:
                if record.id is None:
                    unnamed.append(record)
                    continue
                stamp = fhir_mapping.updated_at(record)
                held = found.get(record.id)
                before = fhir_mapping.updated_at(held) if held is not None else None
                if held is None or stamp is None or before is None or stamp >= before:
                    found[record.id] = record  # the newest version read wins

        first, page = await self.client.search_page(
            type_, [("_lastUpdated", f"gt{mapping.instant(lower)}"), ("_count", PAGE)]
        )
        keep(first)
        if page.next_url() is None or await self._walk(type_, page, first, keep):
            return [*found.values(), *unnamed], None
        hold: datetime | None = None
        windows = _halves(lower, max(whole_second(started), lower + _SECOND))
        asked = 0
        while windows:
            asked += 1
            if asked > MAX_PAGES:
                raise Unavailable(f"{EMR_NAME} kept answering more than a page for ever narrower windows")
            low, high = windows.pop()
            bounds: Params = [
                ("_lastUpdated", f"gt{mapping.instant(low)}"),
                ("_lastUpdated", f"lte{mapping.instant(high)}"),
                ("_count", PAGE),
            ]
            records, page = await self.client.search_page(type_, bounds)
            keep(records)
            if page.next_url() is None:
                continue
            # A server that ignored the bounds answers records outside them: its window is walked by pages too.
            strays = any(
                (stamp := fhir_mapping.updated_at(r)) is not None and not low < stamp <= high + _SECOND for r in records
            )
            if high - low > _SECOND and not strays:
                windows += _halves(low, high)
            elif not await self._walk(type_, page, records, keep):
                hold = high if hold is None else min(hold, high)
        return [*found.values(), *unnamed], hold

    async def _walk(self, type_: type[R], page: wire.Bundle, first: list[R], keep: Callable[[list[R]], None]) -> bool:
        """The rest of a search by its `next` links; False when its results moved while walked."""
        total = page.total
        seen = {r.id for r in first}
        settled = True
        for _ in range(MAX_PAGES):
            following = await self.client.next_page(page)
            if following is None:
                return settled and (total is None or len(seen) >= total)
            records = resources_of(following, type_, emr=EMR_NAME)
            keep(records)
            ids = {r.id for r in records}
            settled = settled and not ids & seen and following.total == total
            seen |= ids
            page = following
        raise Unavailable(f"{EMR_NAME} kept returning more pages than any real search has")


_SECOND = timedelta(seconds=1)


def _halves(low: datetime, high: datetime) -> list[tuple[datetime, datetime]]:
    """(low, high] as two windows of whole seconds, the older last (popped first)."""
    middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
    return [(middle, high), (low, middle)]


def _floor(moment: datetime) -> str:
    """A `_lastUpdated` bound a little before `moment` (clocks differ; a repeat is harmless, a miss is not)."""
    return mapping.instant(moment - CLOCK_SKEW)


def _matches(patient: Patient, query: PatientQuery, phone: str | None) -> bool:
    """Halaxy's name search matches the start of a name part: compare what was asked exactly (ignoring case)."""
    if query.email and (patient.email or "").strip().lower() != query.email.strip().lower():
        return False
    if phone and phone not in patient.phones:
        return False
    if query.first_name and patient.first_name.strip().lower() != query.first_name.strip().lower():
        return False
    if query.last_name and patient.last_name.strip().lower() != query.last_name.strip().lower():
        return False
    return query.date_of_birth is None or patient.date_of_birth == query.date_of_birth

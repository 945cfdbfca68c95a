"""The generic FHIR R4 adapter: one gateway location is one `Location` of a FHIR R4 server.

Two dialects, chosen from the server's CapabilityStatement (`adapters.fhir.dialect`; `settings.dialect` may force
one):
- IHE ITI Scheduling: availability is `GET Appointment/$find` (ITI-115, read semantics, so retried like any read);
  a booking is one read of the practitioner's appointments at that time (ITI-118, when Appointment declares the
  `practitioner` and `date` search parameters; a clash is refused unwritten) then `POST Appointment/$book` with an
  `appointment-resource` in status `pending` (ITI-117), answered `booked`; a reschedule or cancel is `$book` with the
  full stored appointment in status `booked` or `cancelled`, as the IG specifies (a reschedule's `requestedPeriod`
  is the new period). Such an answer is not trusted blindly: it must be the same appointment (another id means the
  server booked the resource as a new appointment: that one is cancelled again and the caller gets Rejected), and a
  cancel's must be cancelled (else Rejected: the server did not cancel). A booking need not be one `$find`
  proposed (callers book times the clinic chose; the server decides). `$hold` (ITI-116) is not used: holds would
  linger when a caller goes away.
- Plain REST: availability is the practitioner's `Schedule` (at this Location) and its free `Slot`s; a booking is
  a `Slot` search then `POST Appointment` referencing the Slots it fills; a reschedule or cancel is a full-replace
  `PUT` of the appointment as read (every element the server holds is sent back, not only the modelled ones), sent
  with `If-Match` on the version read: a change the clinic made in between (a staff cancel) is answered 412, and
  the operation reads the appointment again once (a cancel of one cancelled meanwhile is done; a reschedule of one
  is AlreadyCancelled; otherwise the change is applied to what is now stored).
A booking is 2 calls in IHE and in REST with `settings.slots_enforced` (`min_booking_calls`), 4 in REST without it
(the default): see below. The service's coding and the Schedule are cached per instance; the write's answer is the
stored appointment, which write verification reads (`adapters.verify`).

Capabilities: the class declares the superset (the support matrix shows it, "as the server declares"); an instance
narrows `supports()`/`require()` to what the CapabilityStatement declares, read once per server and credentials and
cached process-wide (`dialect.STATEMENTS`). Double bookings: IHE `$book` "determines if the nominated appointment is
still available". In REST a server that enforces Slots (`settings.slots_enforced`: it marks them busy and refuses
a booking into a busy one) refuses a racer itself. A generic server (HAPI) does neither, so by default the adapter
reads the practitioner's appointments before the POST (a clash is refused unwritten) and again after it: of two
bookings that raced into one time the earlier-created keeps it, the later is cancelled again and its caller gets
SlotUnavailable (as `adapters.halaxy` does). Availability then leaves booked times out, and a reschedule checks the
new time the same way (before only). Without Appointment search by practitioner and date there is nothing to check
with, and REJECTS_DOUBLE_BOOKING is not declared. A refusal (409, or an OperationOutcome `conflict`) is
SlotUnavailable.

An appointment is at this location when a Location participant names it; one without a Location participant only
when its practitioner has a PractitionerRole at this Location (so it shows at each location where they work), never
when PractitionerRole cannot be searched: a key for one location cannot reach another location's appointment.

Change feed: `_lastUpdated` searches walked by stamp (`_walk`), plus the appointments deleted since (type `_history`,
where Appointment declares `history-type` and `history-instance`), reported as cancelled. A search never returns a
deleted resource, and not every server declares history, so `full_listing_complete` is False. An appointment
without start or end (FHIR allows it for proposed, waitlisted and cancelled ones) is left out of feeds and lists.

A create whose answer is lost is watched for (`adapters.reconcile`) through an Appointment search by patient and
start, recognised by the gateway's marker in `Appointment.comment`; it is never sent twice (a server without that
search leaves the outcome unknown). Search parameters go out only where the CapabilityStatement declares them,
except `_id` (a parameter of every resource), the result parameters `_count` and `_sort` (which R4 gives no place
to declare; see `_walk`) and the IG's `$find` parameters. Error messages carry the status and OperationOutcome issue
codes only: `diagnostics` is prose that can quote a patient and is never read.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import httpx
import msgspec

from adapters import phones
from adapters.base import FULL_LISTING, AdapterContext, Capability, EMRAdapter
from adapters.errors import (
    AdapterError,
    AlreadyCancelled,
    ContractChanged,
    NotFound,
    OutcomeUnknown,
    Rejected,
    SlotUnavailable,
    Unavailable,
    Unsupported,
)
from adapters.fhir import mapping, wire
from adapters.fhir.client import (
    MAX_PAGES,
    Conflict,
    FhirClient,
    bundle_issue_codes,
    resource_type,
    resources_of,
)
from adapters.fhir.dialect import STATEMENTS, Declared, Dialect, declare
from adapters.fhir.settings import FhirCredentials, FhirSettings, auth_of
from adapters.http import RetryPolicy
from adapters.markers import operation_of, with_marker, without_marker
from adapters.pacing import RateLimit
from adapters.probes import ProbeFn
from adapters.reconcile import FAR_FUTURE, AmbiguousWrite, settle_race
from adapters.stamps import parse_time, settled_cursor
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
R = TypeVar("R", bound=wire.Resource)
Json = dict[str, Any]

EMR_NAME = "the FHIR server"
PAGE = "100"
FEED_PAGE = "100"  # a change-feed page (`_count`); each next page is asked afresh from the last stamp read
SLOT_PAGE = "200"
ID_BATCH = 50
SLOT_LOOKBACK = timedelta(hours=1)  # a Slot that starts this long before a booking may still cover its start
CLASH_LOOKBACK = timedelta(hours=12)  # an appointment that starts this long before a booking may still overlap it
FIND_WINDOW = timedelta(minutes=1)
SLOT_REFUSED = "the server refused: that time is no longer available"
ENDED = frozenset({"cancelled", "entered-in-error"})
WITHDRAWN = "withdrawn by the gateway: the time was booked at the same moment"


class _Stale(Rejected):
    """412 on a full-replace PUT: the appointment changed on the server since it was read (a clinic's own edit).
    Nothing was overwritten; the operation reads it again once, and a second 412 reaches the caller as this."""


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]


def _unique(items: Iterable[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        if item:
            seen.setdefault(item, None)
    return list(seen)


def _covering(slots: list[wire.Slot], start: datetime, end: datetime) -> list[wire.Slot] | None:
    """Free Slots that tile [start, end) without a gap, or None."""
    ordered = sorted((s for s in slots if s.status == "free"), key=lambda s: s.start)
    cursor, used = start, []
    while cursor < end:
        found = next((s for s in ordered if s.start <= cursor < s.end), None)
        if found is None:
            return None
        used.append(found)
        cursor = found.end
    return used


def _overlaps(appointment: wire.Appointment, start: datetime, end: datetime) -> bool:
    return (
        appointment.status not in ENDED
        and appointment.status not in ("proposed", "waitlist", "noshow")
        and appointment.start is not None
        and appointment.end is not None
        and appointment.start < end
        and start < appointment.end
    )


def _is_id(value: str) -> bool:
    return bool(value) and len(value) <= 64 and all(c.isalnum() or c in "-." for c in value)


def _timed(appointment: wire.Appointment) -> bool:
    """FHIR lets a proposed, waitlisted or cancelled appointment have no start or end: the gateway cannot show one
    (every appointment it reports has times), so feeds and lists leave it out; one cannot clash either."""
    return appointment.start is not None and appointment.end is not None


def _made(appointment: wire.Appointment) -> tuple[datetime, int, str]:
    """When an appointment was created, as the server stamped it (version 1's `lastUpdated`, else `created`), then
    its id: of two bookings that raced into one time, the lower keeps it."""
    meta = appointment.meta
    first = meta is not None and meta.versionId == "1" and meta.lastUpdated is not None
    stamp = _updated(appointment) if first else (appointment.created or _updated(appointment))
    ident = appointment.id or ""
    return (stamp.astimezone(UTC) if stamp is not None else FAR_FUTURE, len(ident), ident)


def _deleted_id(url: str | None) -> str | None:
    """The id a history entry's `request.url` names: `Appointment/[id]`, possibly `…/_history/[vid]` or absolute."""
    parts = (url or "").split("?", 1)[0].split("/")
    for at, part in enumerate(parts[:-1]):
        if part == "Appointment" and _is_id(parts[at + 1]):
            return parts[at + 1]
    return None


class FhirAdapter(EMRAdapter[FhirSettings, FhirCredentials]):
    """Any FHIR R4 server speaking IHE ITI Scheduling, or plain REST with Schedule and Slot."""

    slug: ClassVar[str] = "fhir"
    display_name: ClassVar[str] = "FHIR R4"
    verified_against: ClassVar[str] = (
        "FHIR R4 4.0.1 and IHE ITI Scheduling IG 1.0.1 as published (emulated in both dialects, IHE and plain REST; "
        "not run against a live server; targets Medplum, Epic's $find/$book and R4 servers with Schedule/Slot); "
        "capabilities as the server's CapabilityStatement declares"
    )
    settings_type: ClassVar[type[FhirSettings]] = FhirSettings
    credentials_type: ClassVar[type[FhirCredentials]] = FhirCredentials
    # An idle poll is 2 searches (`_lastUpdated` on Patient and Appointment), 3 where Appointment history is declared.
    default_poll_seconds: ClassVar[int] = 60
    # No FHIR server's budget is known in advance: 10/s with bursts of 50 stays well inside Medplum's documented
    # 6,000 requests per minute; operators override it per server with EGW_EMR_RATE_LIMITS.
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=10.0, burst=50),)
    # IHE: Appointment search + $book; REST with enforced Slots: Slot search + POST Appointment. REST without (the
    # default, a generic server) is 4: the Slot search, the practitioner's appointments before, the POST, and after.
    min_booking_calls: ClassVar[int] = 2
    patient_batch_size: ClassVar[int] = ID_BATCH  # `Patient?_id=a,b,c`
    # `_lastUpdated=ge2000` lists every live appointment, but a search never returns a deleted one: only a server
    # declaring Appointment history lets the poll see deletions, and the class cannot promise that of every server
    # (`lists_every_appointment` answers per server: yes where history is declared).
    full_listing_complete: ClassVar[bool] = False
    write_settings: ClassVar[dict[str, str]] = {
        "start": "the location's time_zone",
        "end": "service_minutes (FHIR has no service duration)",
    }
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)  # narrowed per server: see supports()

    def __init__(
        self, settings: FhirSettings, credentials: FhirCredentials, http: httpx.AsyncClient, context: AdapterContext
    ) -> None:
        super().__init__(settings, credentials, http, context)
        auth = auth_of(credentials)
        self.client = FhirClient(
            http, emr=EMR_NAME, base_url=settings.base_url, auth=auth, user_agent=settings.user_agent
        )
        secret = credentials.bearer_token or self.client.key
        digest = hashlib.sha256((secret or "").encode()).hexdigest()[:16]
        self._key = f"{self.client.base_url}|{digest}|{settings.dialect}|{settings.slots_enforced}"
        self._declared: Declared | None = None
        self._location: wire.Location | None = None
        self._services: dict[str, wire.HealthcareService] = {}
        self._roles: list[wire.PractitionerRole] | None = None
        self._schedules: dict[str, str | None] = {}

    @property
    def retry(self) -> RetryPolicy:
        return self.client.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.client.retry = policy

    @property
    def location_id(self) -> str:
        return self.settings.location_id

    # ------------------------------------------------------------------------------------------------ capabilities

    def supports(self, capability: Capability) -> bool:
        """The class's superset, narrowed by the server's CapabilityStatement once it has been read."""
        if capability not in self.capabilities:
            return False
        declared = self._declared or STATEMENTS.get(self._key)
        return declared is None or capability in declared.capabilities

    def require(self, capability: Capability) -> None:
        if not self.supports(capability):
            raise Unsupported(f"this FHIR server does not declare what {capability.value} needs")

    async def declared(self, *, fresh: bool = False) -> Declared:
        if fresh or self._declared is None:
            found = None if fresh else STATEMENTS.get(self._key)
            if found is None:
                statement = await self.client.capabilities()
                found = declare(statement, self.settings.dialect, slots_enforced=self.settings.slots_enforced)
                STATEMENTS.put(self._key, found)
            self._declared = found
        return self._declared

    async def _needs(self, *capabilities: Capability) -> Declared:
        declared = await self.declared()
        missing = [c.value for c in capabilities if c not in declared.capabilities]
        if missing:
            raise Unsupported(
                f"this FHIR server's CapabilityStatement does not declare what {', '.join(missing)} needs"
            )
        return declared

    # ------------------------------------------------------------------------------------------------ helpers

    def _zone_region(self) -> str | None:
        return phones.region_for_zone(self.context.time_zone)

    def _utc(self, moment: datetime) -> datetime:
        return mapping.utc(moment, self.context.time_zone)

    def _minutes(self, service_id: str) -> int:
        return self.settings.service_minutes.get(service_id, self.settings.default_service_minutes)

    def _by_code(self) -> dict[tuple[str | None, str], str]:
        found: dict[tuple[str | None, str], str] = {}
        for service_id, service in self._services.items():
            coding = mapping.service_code(service)
            if coding is not None and coding.code:
                found.setdefault((coding.system, coding.code), service_id)
        return found

    def _appointment(self, appointment: wire.Appointment) -> Appointment:
        return mapping.appointment_of(appointment, self.context, self._by_code())

    async def _here(self, appointment: wire.Appointment) -> bool:
        """At this Location: a Location participant names it. Without one (a server that records none), the
        practitioner must have an active PractitionerRole at this Location, read once per instance; such an
        appointment shows at every location where its practitioner works. Without PractitionerRole search, or
        without a practitioner, it belongs to no location: a key for one location never reaches another's."""
        locations = [p.actor.id for p in appointment.participant if p.actor is not None and p.actor.is_a("Location")]
        if locations:
            return self.location_id in locations
        practitioner = mapping.actor_id(appointment, "Practitioner")
        if practitioner is None:
            return False
        roles = await self._roles_here()
        return roles is not None and any(r.practitioner and r.practitioner.id == practitioner for r in roles)

    async def _location_resource(self) -> wire.Location:
        if self._location is None:
            try:
                self._location = await self.client.read(wire.Location, self.location_id)
            except NotFound:
                raise NotFound(
                    f"the FHIR server has no Location {self.location_id}: check the location's location_id"
                ) from None
        return self._location

    async def _service(self, service_id: str) -> wire.HealthcareService:
        if service_id not in self._services:
            if not _is_id(service_id):
                raise NotFound("FHIR ids are letters, digits, '-' and '.'")
            self._services[service_id] = await self.client.read(wire.HealthcareService, service_id)
        return self._services[service_id]

    async def _fetch(self, appointment_id: str) -> tuple[wire.Appointment, Json]:
        """The appointment (decoded and as stored) if it is at this location."""
        if not _is_id(appointment_id):
            raise NotFound("FHIR ids are letters, digits, '-' and '.'")
        appointment, raw = await self.client.read_json(wire.Appointment, appointment_id)
        if not await self._here(appointment):
            raise NotFound("the FHIR server has no such appointment at this location")
        return appointment, raw

    # ------------------------------------------------------------------------------------------------ catalog

    async def _roles_here(self) -> list[wire.PractitionerRole] | None:
        """The active PractitionerRoles at this Location; None on a server without PractitionerRole search."""
        declared = await self.declared()
        if not declared.searches("PractitionerRole", "location"):
            return None
        if self._roles is None:
            params: list[tuple[str, str]] = [("location", f"Location/{self.location_id}"), ("_count", PAGE)]
            if declared.searches("PractitionerRole", "active"):
                params.append(("active", "true"))
            roles = await self.client.search(wire.PractitionerRole, params)
            self._roles = [r for r in roles if r.active is not False]
        return self._roles

    async def list_practitioners(self) -> list[Practitioner]:
        declared = await self._needs(Capability.CATALOG)
        roles = await self._roles_here()
        found: list[wire.Practitioner] = []
        if roles is None:
            params: list[tuple[str, str]] = [("_count", PAGE)]
            if declared.searches("Practitioner", "active"):
                params.append(("active", "true"))
            found = await self.client.search(wire.Practitioner, params)
        else:
            ids = _unique(r.practitioner.id for r in roles if r.practitioner is not None)
            for batch in _batches(ids, ID_BATCH):
                found += await self.client.search(wire.Practitioner, [("_id", ",".join(batch)), ("_count", PAGE)])
        return [mapping.practitioner_of(p) for p in found if p.active is not False]

    async def list_services(self) -> list[Service]:
        declared = await self._needs(Capability.CATALOG)
        params: list[tuple[str, str]] = [("_count", PAGE)]
        if declared.searches("HealthcareService", "location"):
            params.append(("location", f"Location/{self.location_id}"))
        if declared.searches("HealthcareService", "active"):
            params.append(("active", "true"))
        services = [s for s in await self.client.search(wire.HealthcareService, params) if s.active is not False]
        roles = await self._roles_here()
        offered: dict[str, set[str]] | None = None
        if roles is not None and any(r.healthcareService for r in roles):
            offered = defaultdict(set)
            for role in roles:
                practitioner = role.practitioner.id if role.practitioner is not None else None
                for ref in role.healthcareService:
                    if practitioner and ref.id:
                        offered[ref.id].add(practitioner)
        result = []
        for service in services:
            service_id = mapping.require_id(service, "HealthcareService")
            self._services[service_id] = service
            linked = offered.get(service_id, set()) if offered is not None else None
            result.append(mapping.service_of(service, self._minutes(service_id), linked))
        return result

    async def list_locations(self) -> list[Location]:
        await self._needs(Capability.CATALOG)
        return [mapping.location_of(await self._location_resource())]

    async def check(self) -> None:
        """Reads the CapabilityStatement and this Location afresh: proves the base URL, credentials and id."""
        await self.declared(fresh=True)
        self._location = None
        await self._location_resource()

    # ------------------------------------------------------------------------------------------------ appointments

    async def get_appointment(self, appointment_id: str) -> Appointment:
        await self._needs(Capability.GET_APPOINTMENT)
        appointment, _ = await self._fetch(appointment_id)
        return self._appointment(appointment)

    async def _search_appointments(self, params: list[tuple[str, str]]) -> list[wire.Appointment]:
        declared = await self.declared()
        if declared.searches("Appointment", "location"):
            params = [*params, ("location", f"Location/{self.location_id}")]
        found = await self.client.search(wire.Appointment, [*params, ("_count", PAGE)])
        return [a for a in found if await self._here(a)]

    async def list_appointments(self, query: AppointmentQuery) -> list[Appointment]:
        declared = await self._needs(Capability.LIST_APPOINTMENTS)
        params: list[tuple[str, str]] = []
        for field, kind, value in (
            ("patient", "Patient", query.patient_id),
            ("practitioner", "Practitioner", query.practitioner_id),
        ):
            if value is None:
                continue
            if not _is_id(value):
                return []
            if field == "patient" or declared.searches("Appointment", field):
                params.append((field, f"{kind}/{value}"))
        if query.start_from is not None:
            params.append(("date", f"ge{mapping.instant(self._utc(query.start_from))}"))
        if query.start_to is not None:
            params.append(("date", f"lt{mapping.instant(self._utc(query.start_to))}"))
        found = await self._search_appointments(params)
        mapped = [self._appointment(a) for a in found if _timed(a)]
        if query.practitioner_id is not None:
            mapped = [a for a in mapped if a.practitioner_id == query.practitioner_id]
        return sorted(mapped, key=lambda a: (a.start, a.id))

    async def _landed(self, command: BookCommand, start: datetime) -> wire.Appointment | None:
        """The live appointment this booking made, if the server holds it (patient, practitioner, start; with the
        operation's marker where one was sent, never another operation's). A server without Appointment search by
        patient and date cannot be asked: the write's outcome is then unknown, never assumed absent."""
        declared = await self.declared()
        if not (declared.searches("Appointment", "patient") and declared.searches("Appointment", "date")):
            raise Unsupported("this FHIR server declares no Appointment search by patient and date to look with")
        found = await self._search_appointments(
            [
                ("patient", f"Patient/{command.patient_id}"),
                ("date", f"ge{mapping.instant(start - FIND_WINDOW)}"),
                ("date", f"le{mapping.instant(start + FIND_WINDOW)}"),
            ]
        )
        mine = [
            a
            for a in found
            if a.status not in ENDED
            and a.start is not None
            and a.start.astimezone(UTC) == start
            and mapping.actor_id(a, "Practitioner") == command.practitioner_id
        ]
        if command.operation_id is not None:
            mine = [a for a in mine if operation_of(a.comment) in (command.operation_id, None)]
            marked = [a for a in mine if operation_of(a.comment) == command.operation_id]
            mine = marked or mine
        return min(mine, key=lambda a: (a.created or FAR_FUTURE, a.id or "")) if mine else None

    async def _book(self, command: BookCommand) -> Written:
        declared = await self._needs(Capability.BOOK)
        for value in (command.patient_id, command.practitioner_id, command.service_id):
            if not _is_id(value):
                raise NotFound("FHIR ids are letters, digits, '-' and '.'")
        start = self._utc(command.start)
        minutes = self._minutes(command.service_id)
        end = self._utc(command.end) if command.end is not None else start + timedelta(minutes=minutes)
        if end <= start:
            raise Rejected("the appointment must end after it starts")
        notes = with_marker(command.notes, command.operation_id)
        asked = Asked(start=start, end=end, practitioner_id=command.practitioner_id, patient_id=command.patient_id)
        write: Callable[[], Awaitable[wire.Appointment]]
        if declared.dialect is Dialect.IHE:
            resource = await self._ihe_new(command, start, end, notes)

            async def write() -> wire.Appointment:
                return await self._book_op(msgspec.json.encode(resource), SLOT_REFUSED)

        else:
            resource = await self._rest_new(command, start, end, notes)

            async def write() -> wire.Appointment:
                try:
                    return await self.client.create(resource)
                except Conflict:
                    raise SlotUnavailable(SLOT_REFUSED) from None

        async def landed() -> wire.Appointment | None:
            return await self._landed(command, start)

        stored = await self._reconciled(write, landed, "booking", resend=False, operation_id=command.operation_id)
        if declared.dialect is Dialect.REST and not self.settings.slots_enforced:
            await self._settle_race(stored)
        return Written(stored=self._appointment(stored), asked=asked)

    async def _around(self, practitioner_id: str, start: datetime, end: datetime) -> list[wire.Appointment] | None:
        """The practitioner's appointments that may overlap [start, end), at any location (nobody is in two places),
        or None when the server declares no Appointment search by practitioner and date (nothing to ask with)."""
        declared = await self.declared()
        if not (declared.searches("Appointment", "practitioner") and declared.searches("Appointment", "date")):
            return None
        return await self.client.search(
            wire.Appointment,
            [
                ("practitioner", f"Practitioner/{practitioner_id}"),
                ("date", f"ge{mapping.instant(start - CLASH_LOOKBACK)}"),
                ("date", f"lt{mapping.instant(end)}"),
                ("_count", PAGE),
            ],
        )

    async def _refuse_clash(self, practitioner_id: str, start: datetime, end: datetime, own: str | None) -> None:
        around = await self._around(practitioner_id, start, end)
        if any(a.id != own and _overlaps(a, start, end) for a in around or []):
            raise SlotUnavailable("the practitioner already has an appointment at that time")

    async def _settle_race(self, mine: wire.Appointment) -> None:
        """REST without enforced Slots: two bookings racing into one time both land, so a booking looks again once
        written. Of overlapping live appointments the earlier-created (`_made`) keeps the time; a later one is
        withdrawn (cancelled) and its caller told SlotUnavailable. A look that fails withdraws too: an unverifiable
        race is not "no conflict"."""
        practitioner_id = mapping.actor_id(mine, "Practitioner")
        if practitioner_id is None or mine.start is None or mine.end is None:
            return
        start, end = mine.start, mine.end

        async def lost() -> bool:
            around = await self._around(practitioner_id, start, end)
            rivals = [a for a in around or [] if a.id != mine.id and _overlaps(a, start, end)]
            return any(_made(r) < _made(mine) for r in rivals)

        appointment_id = mapping.require_id(mine, "Appointment")
        await settle_race(
            lost=lost,
            withdraw=lambda: self._withdraw(appointment_id),
            emr=EMR_NAME,
            appointment_id=appointment_id,
            slot="time",
        )

    async def _withdraw(self, appointment_id: str) -> None:
        """Cancel a booking its caller is never told of (a lost race): read as stored, PUT back cancelled. A failure
        raises (`settle_race` makes it OutcomeUnknown)."""
        current, raw = await self.client.read_json(wire.Appointment, appointment_id)
        body = dict(raw)
        body["status"] = "cancelled"
        reason = mapping.cancel_reason_concept(CancelReason.OTHER, WITHDRAWN)
        body["cancelationReason"] = msgspec.to_builtins(reason)
        _strip_meta(body)
        await self._putter(current, body, SLOT_REFUSED)()

    def _participants(self, command: BookCommand, status: str) -> list[wire.AppointmentParticipant]:
        return [
            mapping.participant("Patient", command.patient_id, status),
            mapping.participant("Practitioner", command.practitioner_id, status),
            mapping.participant("Location", self.location_id, status),
            mapping.participant("HealthcareService", command.service_id, status),
        ]

    async def _ihe_new(
        self, command: BookCommand, start: datetime, end: datetime, notes: str | None
    ) -> wire.Appointment:
        """The `pending` appointment `$book` takes (ITI-117 `appointment-resource`), after one read of the
        practitioner's appointments around that time (ITI-118): a clash is refused without a write. The server's
        own check at `$book` stays the authority (two racing bookings)."""
        service = await self._service(command.service_id)
        await self._refuse_clash(command.practitioner_id, start, end, None)
        coding = mapping.service_code(service)
        return wire.Appointment(
            status="pending",
            serviceType=[wire.CodeableConcept(coding=[coding])] if coding else [],
            start=start,
            end=end,
            minutesDuration=round((end - start).total_seconds() / 60),
            comment=notes,
            requestedPeriod=[wire.Period(start=start, end=end)],
            participant=self._participants(command, "accepted"),
        )

    def _find_params(
        self,
        practitioner_id: str | None,
        service: wire.HealthcareService | None,
        start: datetime,
        end: datetime,
        count: str,
    ) -> list[tuple[str, str]]:
        params = [("start", mapping.instant(start)), ("end", mapping.instant(end))]
        if practitioner_id is not None:
            params.append(("practitioner", f"Practitioner/{practitioner_id}"))
        params += [("location-reference", f"Location/{self.location_id}"), ("_count", count)]
        coding = mapping.service_code(service) if service is not None else None
        if coding is not None and coding.code:
            params.append(("visit-type", f"{coding.system or ''}|{coding.code}"))
        return params

    async def _book_op(self, resource: bytes, conflict: str) -> wire.Appointment:
        """`POST Appointment/$book` with one `appointment-resource`; the IG's answer is a Bundle holding the one
        Appointment, a failure a Bundle holding only an OperationOutcome (a bare Appointment is read too)."""
        parameters = wire.Parameters(
            parameter=[wire.ParametersParameter(name="appointment-resource", resource=msgspec.Raw(resource))]
        )
        try:
            response = await self.client.operation("Appointment/$book", parameters)
        except Conflict:
            raise SlotUnavailable(conflict) from None
        try:
            answer = msgspec.json.decode(response.content, type=wire.Appointment | wire.Bundle)
            appointments = [answer] if isinstance(answer, wire.Appointment) else []
            if isinstance(answer, wire.Bundle):
                appointments = resources_of(answer, wire.Appointment, emr=EMR_NAME)
        except (msgspec.DecodeError, msgspec.ValidationError, ContractChanged):
            raise AmbiguousWrite("unreadable answer to $book", emr_status=response.status_code) from None
        if len(appointments) == 1:
            return appointments[0]
        codes = bundle_issue_codes(answer) if isinstance(answer, wire.Bundle) else []
        if {"conflict", "business-rule", "not-found", "duplicate"} & set(codes):
            raise SlotUnavailable(conflict, emr_status=response.status_code, emr_message=", ".join(codes))
        if codes:
            raise Rejected(
                f"the FHIR server refused the $book ({', '.join(codes)})",
                emr_status=response.status_code,
                emr_message=", ".join(codes),
            )
        raise AmbiguousWrite("$book answered no appointment", emr_status=response.status_code)

    async def _rest_new(
        self, command: BookCommand, start: datetime, end: datetime, notes: str | None
    ) -> wire.Appointment:
        """The Slots that hold [start, end) free in the practitioner's Schedule here, and the booked Appointment
        that fills them. Without enforced Slots (a server that never marks one busy), the practitioner's
        appointments at that time are read too: a clash is refused unwritten."""
        service = await self._service(command.service_id)
        schedule = await self._schedule(command.practitioner_id)
        if schedule is None:
            raise SlotUnavailable("the practitioner has no schedule at this location")
        slots = await self._slots(schedule, start - SLOT_LOOKBACK, end, free_only=True)
        covering = _covering(slots, start, end)
        if covering is None:
            raise SlotUnavailable("the practitioner's schedule has no free slots for that time")
        if not self.settings.slots_enforced:
            await self._refuse_clash(command.practitioner_id, start, end, None)
        coding = mapping.service_code(service)
        return wire.Appointment(
            status="booked",
            serviceType=[wire.CodeableConcept(coding=[coding])] if coding else [],
            start=start,
            end=end,
            minutesDuration=round((end - start).total_seconds() / 60),
            slot=[mapping.reference("Slot", mapping.require_id(s, "Slot")) for s in covering],
            comment=notes,
            participant=self._participants(command, "accepted"),
        )

    async def _schedule(self, practitioner_id: str) -> str | None:
        """The practitioner's active Schedule at this Location (one search, then kept)."""
        if practitioner_id not in self._schedules:
            declared = await self.declared()
            params: list[tuple[str, str]] = [
                ("actor", f"Practitioner/{practitioner_id}"),
                ("actor", f"Location/{self.location_id}"),
                ("_count", PAGE),
            ]
            if declared.searches("Schedule", "active"):
                params.append(("active", "true"))
            found = [
                s
                for s in await self.client.search(wire.Schedule, params)
                if s.active is not False
                and any(a.is_a("Practitioner") and a.id == practitioner_id for a in s.actor)
                and not any(a.is_a("Location") and a.id != self.location_id for a in s.actor)
            ]
            self._schedules[practitioner_id] = mapping.require_id(found[0], "Schedule") if found else None
        return self._schedules[practitioner_id]

    async def _slots(self, schedule_id: str, lo: datetime, hi: datetime, *, free_only: bool) -> list[wire.Slot]:
        params: list[tuple[str, str]] = [
            ("schedule", f"Schedule/{schedule_id}"),
            ("start", f"ge{mapping.instant(lo)}"),
            ("start", f"lt{mapping.instant(hi)}"),
            ("_count", SLOT_PAGE),
        ]
        if free_only and (await self.declared()).searches("Slot", "status"):
            params.append(("status", "free"))  # an optimisation only: callers keep free Slots themselves
        found = await self.client.search(wire.Slot, params)
        return [s for s in found if s.status == "free"] if free_only else found

    async def _reschedule(self, command: RescheduleCommand) -> Written:
        try:
            return await self._move(command)
        except _Stale:  # changed on the server between our read and our PUT: read again, and apply if still live
            return await self._move(command)

    async def _move(self, command: RescheduleCommand) -> Written:
        declared = await self._needs(Capability.RESCHEDULE)
        current, raw = await self._fetch(command.appointment_id)
        previous = self._appointment(current)
        if previous.status is AppointmentStatus.CANCELLED:
            raise AlreadyCancelled("a cancelled appointment cannot be rescheduled")
        practitioner_id = command.practitioner_id or previous.practitioner_id
        if not _is_id(practitioner_id):
            raise NotFound("FHIR ids are letters, digits, '-' and '.'")
        start = self._utc(command.start) if command.start is not None else previous.start
        if command.end is not None:
            end = self._utc(command.end)
        elif command.start is not None:
            end = start + (previous.end - previous.start)  # a move keeps the appointment's length
        else:
            end = previous.end
        if end <= start:
            raise Rejected("the appointment must end after it starts")
        asked = Asked(start=start, end=end, practitioner_id=practitioner_id)
        moves = (start, end, practitioner_id) != (previous.start, previous.end, previous.practitioner_id)
        if not moves and command.notes is None:
            return Written(stored=previous, asked=asked, previous=previous)
        body = dict(raw)
        body.update(
            start=mapping.instant(start),
            end=mapping.instant(end),
            minutesDuration=round((end - start).total_seconds() / 60),
            participant=self._moved_participants(raw, practitioner_id),
        )
        if command.notes is not None:
            body["comment"] = with_marker(command.notes, operation_of(current.comment))  # the marker stays
        _strip_meta(body)
        write: Callable[[], Awaitable[wire.Appointment]]
        if declared.dialect is Dialect.IHE:
            body["status"] = "booked"  # ITI-117: a modification is status booked
            body["requestedPeriod"] = [{"start": mapping.instant(start), "end": mapping.instant(end)}]
            encoded = msgspec.json.encode(body)

            async def write() -> wire.Appointment:
                return await self._book_op(encoded, "the new time is no longer available")

        else:
            if moves:
                body["slot"] = await self._move_slots(previous, practitioner_id, start, end)
            write = self._putter(current, body, "the new time is no longer available")

        async def landed() -> wire.Appointment | None:
            seen, _ = await self._fetch(current.id or command.appointment_id)
            applied = (
                seen.start is not None
                and seen.start.astimezone(UTC) == start
                and mapping.actor_id(seen, "Practitioner") == practitioner_id
                and (command.notes is None or without_marker(seen.comment) == without_marker(command.notes))
            )
            return seen if applied else None

        updated = await self._reconciled(write, landed, "reschedule", resend=True)
        if declared.dialect is Dialect.IHE:
            updated = await self._own_answer(current, updated, "reschedule")
        return Written(stored=self._appointment(updated), asked=asked, previous=previous)

    async def _own_answer(self, current: wire.Appointment, answer: wire.Appointment, what: str) -> wire.Appointment:
        """A `$book` change must answer the appointment it changed. Another id means the server booked the
        `appointment-resource` as a new appointment: that one is cancelled again and the caller told so."""
        if answer.id == current.id:
            return answer
        stray = mapping.require_id(answer, "Appointment", "$.entry[0].resource.id")
        body = msgspec.to_builtins(msgspec.structs.replace(answer, meta=None, status="cancelled"))
        body["cancelationReason"] = msgspec.to_builtins(
            mapping.cancel_reason_concept(CancelReason.OTHER, "made in error by $book: the gateway asked a change")
        )
        if answer.start is not None and answer.end is not None and not body.get("requestedPeriod"):
            body["requestedPeriod"] = [{"start": mapping.instant(answer.start), "end": mapping.instant(answer.end)}]
        try:
            undone = await self._book_op(msgspec.json.encode(body), "the server refused the cancellation")
        except (AdapterError, AmbiguousWrite):
            undone = None
        if undone is None or undone.id != stray or undone.status not in ENDED:
            raise OutcomeUnknown(
                f"the FHIR server's $book made a new appointment {stray} instead of the {what} of {current.id}, and "
                "cancelling it failed: a person needs to look at both",
                operation_id=str(uuid.uuid4()),
            )
        raise Rejected(
            f"the FHIR server's $book made a new appointment instead of the {what} of {current.id} (it does not "
            f"change appointments through $book); the new one ({stray}) was cancelled again"
        )

    def _putter(
        self, current: wire.Appointment, body: Json, conflict: str
    ) -> Callable[[], Awaitable[wire.Appointment]]:
        """A full-replace PUT of `body`, conditional on the version read (`If-Match`) when the read showed one: a
        change the clinic made since (a staff cancel) is answered 412 (`_Stale`), never overwritten."""
        path = f"Appointment/{current.id}"
        encoded = msgspec.json.encode(body)
        version = current.meta.versionId if current.meta is not None else None
        if_match = f'W/"{version}"' if version else None

        async def put() -> wire.Appointment:
            try:
                response = await self.client.write(
                    "PUT", path, encoded, content_type="application/fhir+json", if_match=if_match
                )
            except Conflict as exc:
                if exc.emr_status == 412:
                    raise _Stale(
                        "the appointment changed on the FHIR server while it was being written; nothing was "
                        "overwritten",
                        emr_status=412,
                        emr_message=exc.emr_message,
                    ) from None
                raise SlotUnavailable(conflict) from None
            return await self.client.written(response, wire.Appointment)

        return put

    @staticmethod
    def _moved_participants(raw: Json, practitioner_id: str) -> list[Any]:
        """The stored participants with the Practitioner actor replaced (every other element kept as stored)."""
        moved: list[Any] = []
        for item in raw.get("participant", []):
            actor = item.get("actor", {}) if isinstance(item, dict) else {}
            ref = actor.get("reference", "") if isinstance(actor, dict) else ""
            if isinstance(ref, str) and ref.startswith("Practitioner/"):
                item = {**item, "actor": {**actor, "reference": f"Practitioner/{practitioner_id}"}}
                item["actor"].pop("display", None)
            moved.append(item)
        return moved

    async def _move_slots(
        self, previous: Appointment, practitioner_id: str, start: datetime, end: datetime
    ) -> list[Json]:
        """The Slots the moved appointment fills: each must be free, or busy only by this appointment itself (the
        same practitioner, inside its current time). Time outside the schedule has no Slots: a clinic may move an
        appointment there, as it may in the IHE dialect."""
        schedule = await self._schedule(practitioner_id)
        if schedule is None:
            raise SlotUnavailable("the practitioner has no schedule at this location")
        slots = [
            s
            for s in await self._slots(schedule, start - SLOT_LOOKBACK, end, free_only=False)
            if s.start < end and start < s.end
        ]
        own = practitioner_id == previous.practitioner_id
        for slot in slots:
            inside_own = own and previous.start <= slot.start and slot.end <= previous.end
            if slot.status != "free" and not inside_own:
                raise SlotUnavailable("the practitioner is not free at the new time")
        if not self.settings.slots_enforced:
            await self._refuse_clash(practitioner_id, start, end, previous.id)
        return [{"reference": f"Slot/{mapping.require_id(s, 'Slot')}"} for s in slots]

    async def cancel(self, command: CancelCommand) -> Appointment:
        try:
            return await self._cancel(command)
        except _Stale:  # changed on the server between our read and our PUT: cancelled meanwhile is done
            return await self._cancel(command)

    async def _cancel(self, command: CancelCommand) -> Appointment:
        declared = await self._needs(Capability.CANCEL)
        current, raw = await self._fetch(command.appointment_id)
        if command.patient_id is not None and mapping.actor_id(current, "Patient") != command.patient_id:
            raise NotFound("the FHIR server has no such appointment for this patient")
        if current.status in ENDED:
            return self._appointment(current)  # cancelling twice is a no-op, not an error
        body = dict(raw)
        body["status"] = "cancelled"
        body["cancelationReason"] = msgspec.to_builtins(mapping.cancel_reason_concept(command.reason, command.note))
        _strip_meta(body)
        write: Callable[[], Awaitable[wire.Appointment]]
        if declared.dialect is Dialect.IHE:
            if current.start is not None and current.end is not None:
                period = {"start": mapping.instant(current.start), "end": mapping.instant(current.end)}
                body.setdefault("requestedPeriod", [period])
            encoded = msgspec.json.encode(body)

            async def write() -> wire.Appointment:
                return await self._book_op(encoded, "the server refused the cancellation")

        else:
            write = self._putter(current, body, "the server refused the cancellation")

        async def landed() -> wire.Appointment | None:
            seen, _ = await self._fetch(current.id or command.appointment_id)
            return seen if seen.status in ENDED else None

        stored = await self._reconciled(write, landed, "cancellation", resend=True)
        if declared.dialect is Dialect.IHE:
            stored = await self._own_answer(current, stored, "cancellation")
        if stored.status not in ENDED:
            raise Rejected(
                f"the FHIR server accepted the cancellation but still shows the appointment as {stored.status!r}: "
                "it was not cancelled"
            )
        return self._appointment(stored)

    # ------------------------------------------------------------------------------------------------ availability

    async def availability(self, query: AvailabilityQuery) -> list[Slot]:
        declared = await self._needs(Capability.AVAILABILITY)
        return await self._free(declared, query, first_only=False)

    async def next_available(self, query: AvailabilityQuery) -> Slot | None:
        declared = await self._needs(Capability.AVAILABILITY)
        found = await self._free(declared, query, first_only=True)
        return found[0] if found else None

    async def _free(self, declared: Declared, query: AvailabilityQuery, *, first_only: bool) -> list[Slot]:
        for value in (query.practitioner_id, query.service_id):
            if not _is_id(value):
                raise NotFound("FHIR ids are letters, digits, '-' and '.'")
        lo, hi = self._utc(query.start_from), self._utc(query.start_to)
        minutes = self._minutes(query.service_id)
        length = timedelta(minutes=minutes)
        if hi <= lo:
            return []
        starts: list[datetime] = []
        if declared.dialect is Dialect.IHE:
            service = await self._service(query.service_id)
            count = "1" if first_only else PAGE
            page: wire.Bundle | None = await self.client.bundle(
                "Appointment/$find", self._find_params(query.practitioner_id, service, lo, hi + length, count)
            )
            while page is not None:
                for proposal in resources_of(page, wire.Appointment, emr=EMR_NAME):
                    if proposal.start is not None and mapping.actor_id(proposal, "Practitioner") in (
                        query.practitioner_id,
                        None,
                    ):
                        starts.append(proposal.start.astimezone(UTC))
                page = None if first_only else await self.client.next_page(page)
        else:
            schedule = await self._schedule(query.practitioner_id)
            if schedule is None:
                return []
            slots = await self._slots(schedule, lo - SLOT_LOOKBACK, hi + length, free_only=True)
            starts = [s.start.astimezone(UTC) for s in slots if _covering(slots, s.start, s.start + length)]
            if not self.settings.slots_enforced:  # free Slots say nothing of bookings: leave booked times out
                around = await self._around(query.practitioner_id, lo, hi + length) or []
                starts = [s for s in starts if not any(_overlaps(a, s, s + length) for a in around)]
        found = sorted({s for s in starts if lo <= s < hi})
        if first_only:
            found = found[:1]
        return [
            Slot(
                start=s,
                end=s + length,
                practitioner_id=query.practitioner_id,
                service_id=query.service_id,
                time_zone=self.context.time_zone,
            )
            for s in found
        ]

    # ------------------------------------------------------------------------------------------------ patients

    async def find_patients(self, query: PatientQuery) -> list[Patient]:
        declared = await self.declared()
        params: list[tuple[str, str]] = []
        region = self._zone_region()
        if query.email:
            await self._needs(Capability.FIND_PATIENT_BY_EMAIL)
            params.append(("email", query.email) if declared.searches("Patient", "email") else ("telecom", query.email))
        if query.phone and not query.email:
            await self._needs(Capability.FIND_PATIENT_BY_PHONE)
            forms = ",".join(mapping.phone_forms(query.phone, region))
            params.append(("phone", forms) if declared.searches("Patient", "phone") else ("telecom", forms))
        if query.first_name and declared.searches("Patient", "given"):
            params.append(("given", query.first_name))
        if query.last_name and declared.searches("Patient", "family"):
            params.append(("family", query.last_name))
        if query.date_of_birth is not None and declared.searches("Patient", "birthdate"):
            params.append(("birthdate", f"eq{query.date_of_birth.isoformat()}"))
        if not params:
            raise Rejected("a patient search needs an email, a phone, a name or a date of birth")
        params.append(("_count", PAGE))
        found = [mapping.patient_of(p, region) for p in await self.client.search(wire.Patient, params)]
        # Servers match strings by prefix and accents loosely: keep what the query names exactly.
        if query.email:
            found = [p for p in found if (p.email or "").casefold() == query.email.casefold()]
        if query.phone:
            found = [p for p in found if query.phone in p.phones]
        if query.first_name:
            found = [p for p in found if p.first_name.casefold() == query.first_name.casefold()]
        if query.last_name:
            found = [p for p in found if p.last_name.casefold() == query.last_name.casefold()]
        if query.date_of_birth is not None:
            found = [p for p in found if p.date_of_birth == query.date_of_birth]
        return found

    async def get_patient(self, patient_id: str) -> Patient:
        if not _is_id(patient_id):
            raise NotFound("FHIR ids are letters, digits, '-' and '.'")
        return mapping.patient_of(await self.client.read(wire.Patient, patient_id), self._zone_region())

    async def get_patients(self, patient_ids: list[str]) -> list[Patient]:
        """`Patient?_id=a,b,c`: `patient_batch_size` a request."""
        ids = _unique(i for i in patient_ids if _is_id(i))
        region = self._zone_region()
        found: list[Patient] = []
        for batch in _batches(ids, self.patient_batch_size):
            page = await self.client.search(wire.Patient, [("_id", ",".join(batch)), ("_count", PAGE)])
            found += [mapping.patient_of(p, region) for p in page]
        return found

    async def create_patient(self, patient: NewPatient) -> Patient:
        await self._needs(Capability.CREATE_PATIENT)
        resource = mapping.new_patient(patient)

        async def create() -> wire.Patient:
            return await self.client.create(resource)

        async def landed() -> wire.Patient | None:
            query = PatientQuery(
                email=patient.email,
                first_name=patient.first_name,
                last_name=patient.last_name,
                date_of_birth=patient.date_of_birth,
            )
            found = await self.find_patients(query)
            if not found:
                return None
            return await self.client.read(
                wire.Patient, max(found, key=lambda p: p.updated_at or datetime.min.replace(tzinfo=UTC)).id
            )

        created = await self._reconciled(create, landed, "patient creation", resend=False)
        return mapping.patient_of(created, self._zone_region())

    # ------------------------------------------------------------------------------------------------ change feed

    async def lists_every_appointment(self) -> bool:
        """A full listing misses deleted appointments unless the server declares Appointment history, which the feed
        then reads: only then may `sync --full` mark the location's facts complete."""
        declared = await self.declared()
        return declared.can("Appointment", "history-type") and declared.can("Appointment", "history-instance")

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        """Patients (account-wide) and this location's appointments with `_lastUpdated` at or after the cursor, and
        (where the server declares Appointment history) the appointments deleted since, reported as cancelled.

        No cursor: the feed starts now. `ge` re-reads records stamped exactly at the cursor (the caller compares
        snapshots); the next cursor is held back a little (`adapters.stamps.settled_cursor`). Pages are walked by
        stamp (`_walk`). An appointment without times is left out (`_timed`)."""
        declared = await self._needs(Capability.CHANGES_SINCE)
        if cursor is None:
            return ChangeSet(patients=[], appointments=[], cursor=mapping.instant(datetime.now(UTC)))
        try:
            since = parse_time(cursor)
        except ValueError:
            raise Rejected("the change cursor is not an RFC 3339 time") from None
        started = datetime.now(UTC)
        patients = await self._walk(wire.Patient, since, [])
        here = [("location", f"Location/{self.location_id}")] if declared.searches("Appointment", "location") else []
        appointments = [a for a in await self._walk(wire.Appointment, since, here) if await self._here(a)]
        region = self._zone_region()
        latest_patients = {mapping.require_id(p, "Patient"): p for p in sorted(patients, key=_sort_key)}
        latest_appointments = {mapping.require_id(a, "Appointment"): a for a in sorted(appointments, key=_sort_key)}
        stamps = [s for s in (_updated(r) for r in [*patients, *appointments]) if s is not None]
        reported = [self._appointment(a) for a in latest_appointments.values() if _timed(a)]
        if cursor != FULL_LISTING:  # a full listing wants what exists; history since 2000 would be every version
            deleted, when = await self._deleted_since(declared, since, set(latest_appointments))
            reported += deleted
            stamps += when
        latest = max(stamps, default=None)
        return ChangeSet(
            patients=[mapping.patient_of(p, region) for p in latest_patients.values()],
            appointments=reported,
            cursor=mapping.instant(settled_cursor(latest, since, started)) if latest else mapping.instant(since),
        )

    async def _walk(self, type_: type[R], since: datetime, extra: list[tuple[str, str]]) -> list[R]:
        """Every record stamped at or after `since`, walked by stamp: after each page the next is asked afresh with
        `_lastUpdated=ge<the last stamp read>` instead of following the offset link, so a record updated mid-walk
        (it moves to the end) cannot shift one never read onto a page already read. Boundary records are read twice
        and kept once (by id and version). `_sort=_lastUpdated` is a result parameter, which an R4
        CapabilityStatement has no place to declare: a page that comes back out of stamp order (a server that
        ignored it), or a page of one stamp, is followed by its `next` link instead."""
        found: dict[tuple[str, str], R] = {}
        at = since

        async def ask(moment: datetime) -> wire.Bundle:
            params = [("_lastUpdated", f"ge{mapping.instant(moment)}"), ("_sort", "_lastUpdated"), *extra]
            return await self.client.bundle(resource_type(type_), [*params, ("_count", FEED_PAGE)])

        page: wire.Bundle | None = await ask(at)
        for _ in range(MAX_PAGES):
            if page is None:
                return list(found.values())
            rows = resources_of(page, type_, emr=EMR_NAME)
            for row in rows:
                version = row.meta.versionId if row.meta is not None else None
                key = (mapping.require_id(row, resource_type(type_)), version or str(_updated(row)))
                found[key] = row
            if page.next_url() is None:
                return list(found.values())
            stamps = [s for s in (_updated(r) for r in rows) if s is not None]
            ordered = bool(stamps) and len(stamps) == len(rows) and stamps == sorted(stamps)
            last = stamps[-1] if ordered else None
            if last is not None and last > at:
                at = last
                page = await ask(at)
            else:
                page = await self.client.next_page(page)
        raise Unavailable(f"{EMR_NAME} kept returning more pages than any real change feed has")

    async def _deleted_since(
        self, declared: Declared, since: datetime, live: set[str]
    ) -> tuple[list[Appointment], list[datetime]]:
        """Appointments deleted at or after `since` (type history: entries whose `request` is a DELETE), each
        reported as cancelled from its last version (instance history), and the deletions' instants. A search never
        returns a deleted resource, so without this a deleted appointment would stay booked in the gateway's facts;
        a server that declares no `history-type` and `history-instance` on Appointment is not asked (1 request a
        poll where it is, plus 1 per deletion)."""
        if not (declared.can("Appointment", "history-type") and declared.can("Appointment", "history-instance")):
            return [], []
        gone: dict[str, datetime | None] = {}
        page: wire.Bundle | None = await self.client.bundle(
            "Appointment/_history", [("_since", mapping.instant(since)), ("_count", FEED_PAGE)]
        )
        for _ in range(MAX_PAGES):
            if page is None:
                break
            for entry in page.entry:
                request = entry.request
                if request is None or (request.method or "").upper() != "DELETE":
                    continue
                deleted = _deleted_id(request.url) or _deleted_id(entry.fullUrl)
                if deleted is None or deleted in live:
                    continue
                when = _instant_text(entry.response.lastModified if entry.response is not None else None)
                earlier = gone.get(deleted)
                if deleted not in gone or (when is not None and (earlier is None or when > earlier)):
                    gone[deleted] = when  # deleted twice (restored between): the later deletion
            page = await self.client.next_page(page)
        reported: list[Appointment] = []
        for appointment_id, when in sorted(gone.items()):
            history = await self.client.bundle(f"Appointment/{appointment_id}/_history", [("_count", "10")])
            versions = [a for a in resources_of(history, wire.Appointment, emr=EMR_NAME) if a.id == appointment_id]
            if not versions:
                continue
            last = max(versions, key=_sort_key)
            if not _timed(last) or not await self._here(last):
                continue
            stamp = when or _updated(last)
            meta = wire.Meta(versionId=None, lastUpdated=stamp)
            reported.append(self._appointment(msgspec.structs.replace(last, status="cancelled", meta=meta)))
        return reported, [w for w in gone.values() if w is not None]

    # ------------------------------------------------------------------------------------------------ verify

    def verify_probes(self) -> list[tuple[str, ProbeFn]]:
        async def statement() -> str:
            declared = await self.declared(fresh=True)
            kind = "IHE ITI Scheduling ($find, $book)" if declared.dialect is Dialect.IHE else "plain REST (Slot)"
            return f"{kind}; {len(declared.capabilities)} of {len(self.capabilities)} capabilities declared"

        return [("capability statement", statement)]

    async def observed_settings(self) -> list[SettingCheck]:
        """The Location's time zone extension against the configured zone, and (IHE) each configured service length
        against the length of a visit the server proposes from `$find` over the next week."""
        location = await self._location_resource()
        observed = mapping.time_zone_of(location)
        checks = [
            SettingCheck(
                setting="time_zone",
                configured=self.context.time_zone,
                observed=observed,
                agrees=None if observed is None else observed == self.context.time_zone,
                source="the Location's http://hl7.org/fhir/StructureDefinition/timezone extension",
            )
        ]
        declared = await self.declared()
        if declared.dialect is not Dialect.IHE or Capability.AVAILABILITY not in declared.capabilities:
            return checks
        roles = await self._roles_here()
        practitioner = next((r.practitioner.id for r in roles or [] if r.practitioner is not None), None)
        now = datetime.now(UTC)
        for service_id, minutes in sorted(self.settings.service_minutes.items())[:10]:
            seen: str | None = None
            try:
                service = await self._service(service_id)
                params = self._find_params(practitioner, service, now, now + timedelta(days=7), "1")
                bundle = await self.client.bundle("Appointment/$find", params)
                proposals = resources_of(bundle, wire.Appointment, emr=EMR_NAME)
                if proposals and proposals[0].start and proposals[0].end:
                    seen = str(round((proposals[0].end - proposals[0].start).total_seconds() / 60))
            except NotFound:
                seen = None
            checks.append(
                SettingCheck(
                    setting=f"service_minutes[{service_id}]",
                    configured=str(minutes),
                    observed=seen,
                    agrees=None if seen is None else seen == str(minutes),
                    source="the length of the server's own $find proposal for the service (FHIR has no duration)",
                )
            )
        return checks


def _strip_meta(body: Json) -> None:
    """A written resource's `meta` keeps its profiles; the server owns the version and the stamp."""
    meta = body.get("meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if kept:
            body["meta"] = kept
        else:
            del body["meta"]


def _updated(resource: wire.Resource) -> datetime | None:
    stamp = resource.meta.lastUpdated if resource.meta is not None else None
    return stamp.astimezone(UTC) if stamp is not None else None


def _sort_key(resource: wire.Resource) -> datetime:
    return _updated(resource) or datetime.min.replace(tzinfo=UTC)


def _instant_text(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None

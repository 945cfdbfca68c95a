"""The adapter contract: capabilities as data, one abstract base, typed settings and credentials."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ClassVar, Generic, TypeVar

import httpx
import msgspec

from adapters import probes, verify
from adapters.errors import NotFound, Unsupported
from adapters.pacing import RateLimit
from adapters.reconcile import FAR_FUTURE, reconciled
from adapters.verify import Written
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
from schemas.verify import SettingCheck, VerifyReport


class Capability(enum.StrEnum):
    BOOK = "book"
    GET_APPOINTMENT = "get_appointment"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    LIST_APPOINTMENTS = "list_appointments"
    AVAILABILITY = "availability"
    NEXT_AVAILABILITY = "next_availability"
    FIND_PATIENT_BY_EMAIL = "find_patient_by_email"
    FIND_PATIENT_BY_PHONE = "find_patient_by_phone"
    FIND_PATIENT_BY_NAME = "find_patient_by_name"
    CREATE_PATIENT = "create_patient"
    CATALOG = "catalog"
    CHANGES_SINCE = "changes_since"
    RECONCILES_TIMED_OUT_CREATE = "reconciles_timed_out_create"
    REJECTS_DOUBLE_BOOKING = "rejects_double_booking"
    CUSTOM_DURATION = "custom_duration"  # an appointment may be longer or shorter than its service's length


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base for an EMR's location settings (non-secret)."""


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base for an EMR's credentials (secret; stored encrypted)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


class AdapterContext(msgspec.Struct, kw_only=True):
    """What the gateway knows about the location an adapter serves."""

    location_id: str
    time_zone: str
    # How long a write whose answer was lost is watched for before it is reported unknown (`adapters.reconcile`):
    # twice the EMR request timeout, so an EMR finishing late behind a load balancer is still seen.
    write_patience_seconds: float = 40.0


_FIND_WINDOW = timedelta(minutes=1)
# The cursor that asks a change feed for everything it holds: before any EMR's records.
FULL_LISTING = "2000-01-01T00:00:00Z"
S = TypeVar("S", bound=Settings)
C = TypeVar("C", bound=Credentials)
W = TypeVar("W")


class EMRAdapter(ABC, Generic[S, C]):
    """One instance per location and request scope; holds no state the gateway must persist."""

    slug: ClassVar[str]
    display_name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    settings_type: ClassVar[type[Settings]]
    credentials_type: ClassVar[type[Credentials]]
    verified_against: ClassVar[str]
    default_poll_seconds: ClassVar[int] = 300
    # What one set of credentials may send, as token buckets (all must allow a request). Shared by every replica
    # and worker holding the credentials; operators override them with EGW_EMR_RATE_LIMITS.
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(per_second=1.0, burst=5),)
    # Which setting governs each field a write can get wrong ("start", "end", "practitioner", "patient"), named in
    # `emr_write_mismatch` so an operator knows what to check (e.g. Practice Better's duration unit).
    write_settings: ClassVar[dict[str, str]] = {"start": "the location's time_zone"}
    # Whether a reschedule may hand back a new appointment id (Nookal's book-then-cancel): only then does the
    # gateway look old ids up in its alias table on every read.
    reissues_ids: ClassVar[bool] = False
    # The EMR calls one booking makes with a warm catalog (the gateway pools adapters): each is a safety check, the
    # write or its read-back. The contract suite counts them and bench/overhead checks the gateway adds none.
    min_booking_calls: ClassVar[int]
    # How many patient records one EMR request can return by id (Cliniko's `q[]=id:=1,2,3`): change detection
    # fetches the patients a poll touched in batches of this size.
    patient_batch_size: ClassVar[int] = 1
    # Whether `changes_since(FULL_LISTING)` lists every appointment of the location, past and future: only then
    # does a full sync let every patient snapshot come from stored facts (others list a patient's own once).
    full_listing_complete: ClassVar[bool] = False

    async def _reconciled(
        self,
        write: Callable[[], Awaitable[W]],
        landed: Callable[[], Awaitable[W | None]],
        what: str,
        *,
        resend: bool,
        operation_id: str | None = None,
    ) -> W:
        """A write whose answer was lost is watched for `write_patience_seconds` (adapters.reconcile). Only a write
        that lands the same way twice (a cancel, a move) may be sent once more; a create never is, patients included:
        a late apply would leave a second chart."""
        return await reconciled(
            write,
            landed,
            what=what,
            emr=self.display_name,
            patience=self.context.write_patience_seconds,
            resend=resend,
            operation_id=operation_id,
        )

    def __init__(self, settings: S, credentials: C, http: httpx.AsyncClient, context: AdapterContext) -> None:
        self.settings = settings
        self.credentials = credentials
        self.http = http
        self.context = context

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise Unsupported(f"{self.display_name} does not support {capability.value}")

    async def book(self, command: BookCommand) -> Appointment:
        """Book, then compare what the EMR stored with what was asked; a mismatch is cancelled and raised."""
        written = await self._book(command)
        return await verify.settle_booking(self.display_name, written, cancel=self.cancel, settings=self.write_settings)

    async def reschedule(self, command: RescheduleCommand) -> Appointment:
        """Move, then compare; a mismatch is moved back (or cancelled) and raised."""
        written = await self._reschedule(command)
        return await verify.settle_move(
            self.display_name, written, move=self._reschedule, cancel=self.cancel, settings=self.write_settings
        )

    @abstractmethod
    async def _book(self, command: BookCommand) -> Written:
        """Create the appointment; `stored` from the EMR's own answer or a read-back, `asked` from the command."""

    @abstractmethod
    async def _reschedule(self, command: RescheduleCommand) -> Written:
        """Move the appointment; `previous` is how it was before (needed to move it back)."""

    @abstractmethod
    async def get_appointment(self, appointment_id: str) -> Appointment: ...

    @abstractmethod
    async def cancel(self, command: CancelCommand) -> Appointment: ...

    @abstractmethod
    async def list_appointments(self, query: AppointmentQuery) -> list[Appointment]: ...

    @abstractmethod
    async def find_patients(self, query: PatientQuery) -> list[Patient]: ...

    @abstractmethod
    async def get_patient(self, patient_id: str) -> Patient: ...

    @abstractmethod
    async def create_patient(self, patient: NewPatient) -> Patient: ...

    @abstractmethod
    async def list_practitioners(self) -> list[Practitioner]: ...

    @abstractmethod
    async def list_services(self) -> list[Service]: ...

    @abstractmethod
    async def list_locations(self) -> list[Location]: ...

    @abstractmethod
    async def availability(self, query: AvailabilityQuery) -> list[Slot]: ...

    async def next_available(self, query: AvailabilityQuery) -> Slot | None:
        """Default: the first slot of the range; adapters with a cheaper EMR call override it."""
        slots = await self.availability(query)
        return min(slots, key=lambda s: s.start) if slots else None

    async def find_booking(self, command: BookCommand) -> Appointment | None:
        """The appointment `command` created, if the EMR holds one: the gateway's reconciler and a retry after a
        crash ask this before anything is booked again. Read-only, except that an adapter whose booking has a
        preliminary step (Jane's hold) releases a stray one it finds. Default: the patient's live appointments
        starting then with that practitioner (and, where notes carry it, the operation's marker)."""
        query = AppointmentQuery(
            patient_id=command.patient_id,
            start_from=command.start - _FIND_WINDOW,
            start_to=command.start + _FIND_WINDOW,
        )
        found = [
            a
            for a in await self.list_appointments(query)
            if a.status is not AppointmentStatus.CANCELLED
            and a.practitioner_id == command.practitioner_id
            and abs(a.start - command.start) < _FIND_WINDOW
        ]
        if command.operation_id is not None:
            marked = [a for a in found if a.operation_id == command.operation_id]
            if marked or any(a.operation_id is not None for a in found):
                found = marked  # another operation's booking at the same time is not this one
        # The earliest made (ids compared as numbers where they are: "10" is after "9").
        return min(found, key=lambda a: (a.created_at or FAR_FUTURE, len(a.id), a.id)) if found else None

    async def get_patients(self, patient_ids: list[str]) -> list[Patient]:
        """The patients that still exist of `patient_ids` (any order, gone ones left out). Default: one read each;
        an EMR that filters by a list of ids overrides it with `patient_batch_size` per request."""
        found: list[Patient] = []
        for patient_id in patient_ids:
            try:
                found.append(await self.get_patient(patient_id))
            except NotFound:
                continue
        return found

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        raise Unsupported(f"{self.display_name} has no change feed")

    async def lists_every_appointment(self) -> bool:
        """Whether this account's full listing covers every appointment, deletions included (`sync --full` then
        marks the location's facts complete). Default: the class's `full_listing_complete`; an adapter whose answer
        depends on what the server declares (FHIR's Appointment history) overrides it."""
        return self.full_listing_complete

    async def full_listing_requests(self) -> int | None:
        """How many requests `changes_since(FULL_LISTING)` will send, counting this estimate's own: `emr-gateway
        sync --full` divides it by the paced rate for an ETA. Default None: unknown (progress without an ETA)."""
        return None

    async def check(self) -> None:
        """Prove the credentials and settings work (used by `locations add` and readiness)."""
        await self.list_locations()

    async def verify(self) -> VerifyReport:
        """Read-only probes of the live account (`locations verify`): each list the adapter uses, availability for
        the next week, one appointment read, plus `verify_probes()`, and `observed_settings()`."""
        return await probes.verify(self)

    def verify_probes(self) -> list[tuple[str, probes.ProbeFn]]:
        """The adapter's own read-only probes (e.g. one page of patients), as (name, probe) pairs."""
        return []

    async def observed_settings(self) -> list[SettingCheck]:
        """For each setting evidence marks uncertain: what is configured and what the account shows."""
        return []

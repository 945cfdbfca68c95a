"""The adapter contract: capabilities as data, one abstract base, typed settings and credentials."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import ClassVar, Generic, TypeVar

import httpx
import msgspec

from adapters.errors import Unsupported
from adapters.pacing import RateLimit
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


S = TypeVar("S", bound=Settings)
C = TypeVar("C", bound=Credentials)


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

    @abstractmethod
    async def book(self, command: BookCommand) -> Appointment: ...

    @abstractmethod
    async def get_appointment(self, appointment_id: str) -> Appointment: ...

    @abstractmethod
    async def reschedule(self, command: RescheduleCommand) -> Appointment: ...

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

    async def changes_since(self, cursor: str | None) -> ChangeSet:
        raise Unsupported(f"{self.display_name} has no change feed")

    async def check(self) -> None:
        """Prove the credentials and settings work (used by `locations add` and readiness)."""
        await self.list_locations()

"""EMR request efficiency of change detection: the requests each adapter's syncs send vs. the fewest its EMR allows.

Per adapter and size N (patients, one appointment each), on one emulator seeded once and served over real HTTP on
loopback (uvicorn in a thread of this process), the gateway's own code runs against a fresh SQLite store per
repetition: the first poll of a new location (`gateway.sync.scheduler.poll_location`), an idle poll's change feed,
a full listing of every patient and appointment (the change feed asked from 2000-01-01), a change feed and a poll
after 1 % of patients and 1 % of appointments changed, and the daily sweep over the last 24 hours
(`gateway.sync.scheduler.sweep`). Requests are counted by the emulator (`GET /_emulator/stats`) around each sync;
the baseline is computed in the same run from what the emulator holds and the page sizes the adapters use. Numbers
go to a table and to `bench/results/sync_efficiency-<timestamp>.json`; nothing here asserts a count or a time.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import copy
import datetime
import enum
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx
import msgspec

from adapters.cliniko import wire as cliniko_wire
from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import Emulator, EmulatorSeed, SeedPatient, ServerThread, default_seed
from adapters.emulators import EMULATORS
from adapters.fhir.emulator import BASE as FHIR_BASE
from adapters.fhir.emulator import FhirEmulator, FhirError
from adapters.halaxy.emulator import PREFIX as HALAXY_PREFIX
from adapters.halaxy.emulator import HalaxyEmulator, PatientEdit
from adapters.jane import wire as jane_wire
from adapters.jane.emulator import JaneEmulator
from adapters.nookal.emulator import NookalEmulator
from adapters.pacing import RateLimit
from adapters.practicebetter.emulator import PracticeBetterEmulator, RecordChange
from adapters.practicebetter.feed import FEED_LOOKBACK
from adapters.practicebetter.feed import NEAR_AHEAD as PB_NEAR_AHEAD
from adapters.registry import get_adapter_class
from adapters.simplepractice.emulator import SimplePracticeEmulator
from adapters.simplepractice.feed import NEAR_AHEAD as SP_NEAR_AHEAD
from adapters.simplepractice.feed import NEAR_BACK as SP_NEAR_BACK
from bench.overhead import HUGE, RESULTS_DIR, Stat, _stat, machine_info, write_report
from gateway.config import GatewayConfig
from gateway.crypto import Keyring, generate_key
from gateway.emr import AnyAdapter, EMRPacing, build_adapter
from gateway.storage import sync as db
from gateway.storage.migrate import upgrade
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store
from gateway.sync.full import sync_location
from gateway.sync.scheduler import adaptive_interval, cached_catalog, poll_interval, poll_location, sweep
from schemas.changes import ChangeSet

UTC = datetime.UTC
FULL_CURSOR = "2000-01-01T00:00:00Z"  # before anything the emulators hold: the change feed lists everything
SEED_AGE = datetime.timedelta(days=30)  # seeded records are stamped this long ago, so no cursor ever re-reads them
PAST_DAYS, FUTURE_DAYS = 13, 170  # appointments start from 13 days ago to 170 days ahead (inside every feed window)
SLOTS_PER_DAY = 16  # 30-minute appointments from 09:00
CHANGED_SHARE = 0.01  # an incremental sync follows edits to 1 % of patients and cancellations of 1 % of appointments
SWEEP_WINDOW = datetime.timedelta(days=1)
LARGE = 10_000  # from this size on, one repetition by default
WORKER = "bench-sync"
TAB = "bench-sync-tab"


class Kind(enum.StrEnum):
    INITIAL = "initial-poll"  # poll_location on a new location: what the gateway does first
    IDLE = "idle-feed"  # changes_since(cursor) with nothing changed: what every quiet poll costs
    FULL = "full-listing"  # changes_since(2000-01-01): every patient and appointment through the adapter
    FEED = "incremental-feed"  # changes_since(cursor) after 1 % of patients and appointments changed
    POLL = "incremental-poll"  # poll_location after the same changes: the feed, then snapshots and the catalog
    SWEEP = "daily-sweep"  # sweep() over the last 24 hours: appointments that started, their patients re-snapshotted


# ---------------------------------------------------------------------------------------------- messages


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """One kind of record a feed lists, and how the EMR's API (as the adapter uses it) hands it out."""

    name: str
    page: int | None  # records per request; None: one unpaged answer holds them all
    per_record: bool = False  # only readable one record per request (no list endpoint)
    newest_first_scan: bool = False  # no "changed since" filter: read newest-first until one older record shows

    def requests_for(self, records: int) -> int:
        """The fewest requests that return `records` records: a list is asked at least once (to learn it is
        empty); records read one by one cost one each."""
        if self.per_record:
            return records
        if self.page is None:
            return 1
        return max(1, math.ceil(records / self.page))

    def floor_for(self, changed: int, held: int) -> int:
        """Requests a feed needs for `changed` of `held` records: a newest-first scan must also see one older."""
        if self.newest_first_scan and changed < held:
            return self.requests_for(changed + 1)
        return self.requests_for(changed)

    def label(self) -> str:
        if self.per_record:
            return f"{self.name} 1 each"
        return f"{self.name} {self.page if self.page is not None else 'all'}"


class Measurement(msgspec.Struct, kw_only=True):
    """One sync of one repetition."""

    adapter: str
    size: int
    kind: Kind
    repetition: int
    requests: int  # counted by the emulator
    listed: int  # records the sync's listing returned (see Row.listed)
    seconds: float  # local wall time of the sync
    emulator_cpu_seconds: float | None  # CPU of the emulator's server thread (its own scans and rendering)
    gateway_cpu_seconds: float  # CPU of the rest of this process: adapter, detector, store, event loop
    minimum: int
    floor: int
    events: int | None = None  # webhook events the gateway published (polls and sweeps)
    # Issue 17's ceiling: a quiet poll = the feed floor; a poll or sweep = floor + ceil(patients to read / the
    # adapter's patient batch) + 1; a full sync = the listing's floor.
    target: int | None = None
    by_endpoint: dict[str, int] = msgspec.field(default_factory=dict)  # as the adapter's HTTP client sent them
    error: str | None = None


class Row(msgspec.Struct, kw_only=True):
    adapter: str
    size: int
    kind: Kind
    repetitions: int
    listed: int  # records the listing returned (a poll: its feed's; a sweep: appointments started in its window)
    requests: int  # median over repetitions (counts are deterministic; `requests_min`/`max` show if not)
    requests_min: int
    requests_max: int
    minimum: int  # what the EMR's page size allows for the records that had to be read
    floor: int  # the fewest this EMR's API allows (filters it lacks force wider listings), with the same pages
    ratio: float | None  # requests / minimum
    target: int | None  # see Measurement.target
    meets_target: bool | None
    pages: str
    seconds: Stat  # local wall time
    emulator_cpu_seconds: float | None  # medians over repetitions
    gateway_cpu_seconds: float
    at_emr_limit_seconds: float  # requests / the EMR's documented rate (or the gateway's pacing where none is)
    at_gateway_pacing_seconds: float  # the adapter's own token buckets (burst first), as the gateway paces it
    per_day_at_default_poll: int | None  # idle feed: what quiet polls alone send a day at the derived interval
    events: int | None
    errors: int


class RateInfo(msgspec.Struct, kw_only=True):
    adapter: str
    per_second: float
    source: str
    gateway_pacing: list[dict[str, float]]
    default_poll_seconds: float  # one location's derived interval for a 2-request quiet poll (gateway defaults)


class Settings(msgspec.Struct, kw_only=True):
    sizes: list[int]
    adapters: list[str]
    repetitions: dict[int, int]  # per size
    appointments_per_patient: int
    changed_share: float
    appointment_days: list[int]


class Report(msgspec.Struct, kw_only=True):
    benchmark: str
    started_at: str
    finished_at: str
    settings: Settings
    machine: dict[str, Any]
    rates: list[RateInfo]
    measurements: list[Measurement]
    rows: list[Row]


# ---------------------------------------------------------------------------------------------- rates

# The EMRs' documented request rates; where an EMR publishes none, the gateway's own pacing is the figure used.
DOCUMENTED: dict[str, tuple[float, str]] = {
    "cliniko": (200 / 60, "Cliniko documents 200 requests/minute per user"),
    "practicebetter": (5.0, "Practice Better: 5 requests/s, bursts of 20 (vendor swagger as integrators cite it)"),
    "jane": (100 / 60, "none published for the staff endpoints; the adapter module's ~100/minute (partner API)"),
    "nookal": (2.0, "none published; the adapter module's ~2/s (integrators' own pace)"),
    # docs/authentication: "500 requests per minute" per client, a sliding window (the gateway paces 7/s, burst 50).
    "halaxy": (500 / 60, "Halaxy documents 500 requests/minute per client, a sliding window"),
    # A generic FHIR server has no one published rate (Medplum's free tier documents 6,000/minute; Epic and others
    # set their own): the gateway's default pacing for it, which operators override per server.
    "fhir": (10.0, "none for FHIR servers in general; the gateway's default pacing (10/s), overridden per server"),
}


def rate_info(slug: str) -> RateInfo:
    cls = get_adapter_class(slug)
    limits: tuple[RateLimit, ...] = getattr(cls, "rate_limits", ())  # the gateway's pacing (absent before it lands)
    pacing = [{"per_second": limit.per_second, "burst": float(limit.burst)} for limit in limits]
    documented = DOCUMENTED.get(slug)
    if documented is not None:
        per_second, source = documented
    elif limits:
        per_second = min(limit.per_second for limit in limits)
        source = f"none published; the gateway's own pacing ({per_second:g}/s)"
    else:
        per_second, source = 1.0, "none published and no gateway pacing: 1/s assumed"
    return RateInfo(
        adapter=slug,
        per_second=per_second,
        source=source,
        gateway_pacing=pacing,
        default_poll_seconds=round(poll_interval(GatewayConfig(), slug), 2),
    )


def paced_seconds(requests: int, pacing: Sequence[dict[str, float]]) -> float:
    """How long token buckets (all must allow each request) take to let `requests` through from full."""
    return max((max(0.0, (requests - p["burst"]) / p["per_second"]) for p in pacing), default=0.0)


# ---------------------------------------------------------------------------------------------- the data


class ShiftedClock:
    """The emulators' clock: seeding runs SEED_AGE in the past, so seeded records never sit at a live cursor."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Planned(msgspec.Struct, frozen=True, kw_only=True):
    patient: int  # index into the seed's patients
    practitioner: int
    start: datetime.datetime  # aware, the seed's time zone


def seed_of(size: int) -> EmulatorSeed:
    base = default_seed()
    patients = [
        SeedPatient(
            first_name=f"Bench{i}",
            last_name=f"Patient{i:05d}",
            email=f"bench.patient{i}@example.com",
            phone=f"04{i:08d}",
            date_of_birth=datetime.date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
        )
        for i in range(size)
    ]
    return msgspec.structs.replace(base, patients=patients)


def plan_of(seed: EmulatorSeed, today: datetime.date) -> list[Planned]:
    """One appointment per patient, spread over the days from PAST_DAYS ago to FUTURE_DAYS ahead (double bookings
    allowed: every emulator accepts them through the flag or the default its EMR has)."""
    zone = ZoneInfo(seed.time_zone)
    days = PAST_DAYS + FUTURE_DAYS + 1
    opening = datetime.time.fromisoformat(seed.open_from)
    minutes = seed.services[0].duration_minutes
    plan: list[Planned] = []
    for i in range(len(seed.patients)):
        day = today + datetime.timedelta(days=i % days - PAST_DAYS)
        slot = (i // days) % SLOTS_PER_DAY
        start = datetime.datetime.combine(day, opening, zone) + datetime.timedelta(minutes=minutes * slot)
        plan.append(
            Planned(patient=i, practitioner=(i // days // SLOTS_PER_DAY) % len(seed.practitioners), start=start)
        )
    return plan


# ---------------------------------------------------------------------------------------------- drivers


class Driver(abc.ABC):
    """What the benchmark needs from one emulator beyond the Emulator ABC: bulk seeding and clinic-side edits.

    Appointments go through each emulator's own create methods (the code its HTTP routes run, without HTTP);
    patient edits through its control routes' methods where it has one, else on its in-memory records, as a
    receptionist's edit in the EMR's own screens would land.
    """

    slug: ClassVar[str]
    patients: ClassVar[Resource]
    appointments: ClassVar[Resource]
    patients_from_appointments: ClassVar[bool] = False  # the feed reads the patients of changed appointments only
    walk_pages: ClassVar[int] = 0  # fixed pages a quiet poll reads beyond its window (a far slice, a newest page)

    def __init__(self, seed: EmulatorSeed, clock: ShiftedClock) -> None:
        self.seed = seed
        self.clock = clock

    @property
    @abc.abstractmethod
    def emulator(self) -> Emulator: ...

    @abc.abstractmethod
    def patient_ids(self) -> list[str]:
        """In seed order."""

    @abc.abstractmethod
    def add_appointment(self, patient_id: str, plan: Planned) -> str: ...

    @abc.abstractmethod
    def edit_patient(self, patient_id: str, number: int) -> None: ...

    @abc.abstractmethod
    def cancel(self, appointment_id: str, patient_id: str) -> None: ...

    def feed_window(self, now: datetime.datetime, since: datetime.datetime) -> tuple[datetime.datetime, ...] | None:
        """Where the EMR's API makes the feed list every appointment by start time (it cannot ask for changed ones);
        None: the feed asks for changed appointments only."""
        return None

    def _minutes(self) -> int:
        return self.seed.services[0].duration_minutes


class ClinikoDriver(Driver):
    slug = "cliniko"
    patients = Resource(name="patients", page=100)
    appointments = Resource(name="appointments", page=100)

    def __init__(self, seed: EmulatorSeed, clock: ShiftedClock) -> None:
        super().__init__(seed, clock)
        self.em = ClinikoEmulator(seed, rate_limit_per_minute=HUGE, clock=clock, max_exchanges=1)
        self.business = self.em.business_ids()[0]
        self.practitioners = list(self.em.practitioners)
        self.service = next(iter(self.em.appointment_types))

    @property
    def emulator(self) -> Emulator:
        return self.em

    def patient_ids(self) -> list[str]:
        return list(self.em.patients)

    def add_appointment(self, patient_id: str, plan: Planned) -> str:
        body = cliniko_wire.IndividualAppointmentCreate(
            patient_id=patient_id,
            practitioner_id=self.practitioners[plan.practitioner],
            appointment_type_id=self.service,
            business_id=self.business,
            starts_at=plan.start.astimezone(UTC),
        )
        return self.em.create_appointment("http://seed", msgspec.json.encode(body))[1]

    def edit_patient(self, patient_id: str, number: int) -> None:
        with self.em._lock:  # Cliniko's API has no patient update the emulator serves: the clinic's own screens
            record = self.em.patients[patient_id]
            record.notes = f"bench edit {number}"
            record.updated_at = self.em._bumped(record.updated_at)

    def cancel(self, appointment_id: str, patient_id: str) -> None:
        body = cliniko_wire.IndividualAppointmentCancel(cancellation_reason=cliniko_wire.CancellationReason.OTHER)
        self.em.cancel_appointment(appointment_id, msgspec.json.encode(body))


class JaneDriver(Driver):
    slug = "jane"
    patients = Resource(name="patients", page=1, per_record=True)
    appointments = Resource(name="appointments", page=None)
    patients_from_appointments = True

    def __init__(self, seed: EmulatorSeed, clock: ShiftedClock) -> None:
        super().__init__(seed, clock)
        self.em = JaneEmulator(seed, requests_per_window=HUGE, session_idle_seconds=HUGE, clock=clock, max_exchanges=1)
        self.location = next(iter(self.em.locations))
        self.staff = list(self.em.staff)
        self.treatment = next(iter(self.em.treatments))

    @property
    def emulator(self) -> Emulator:
        return self.em

    def patient_ids(self) -> list[str]:
        return [str(i) for i in self.em.patients]

    def add_appointment(self, patient_id: str, plan: Planned) -> str:
        staff = self.staff[plan.practitioner]
        end = plan.start + datetime.timedelta(minutes=self._minutes())
        hold = self.em.create_hold(
            msgspec.json.encode(
                jane_wire.ProvisionalCreate(
                    appointment=jane_wire.Provisional(
                        location_id=self.location, start_at=plan.start, end_at=end, staff_member_id=staff
                    ),
                    browser_tab_id=TAB,
                )
            )
        )
        record = jane_wire.booking(
            msgspec.Raw(msgspec.json.encode(hold)),
            treatment_id=self.treatment,
            patient_id=int(patient_id),
            patient=msgspec.Raw(msgspec.json.encode(self.em.patients[int(patient_id)])),
            notes=None,
        )
        self.em.book(hold.id, msgspec.json.encode(jane_wire.BookRequest(appointment=record, browser_tab_id=TAB)))
        return str(hold.id)

    def edit_patient(self, patient_id: str, number: int) -> None:
        with self.em._lock:  # no patient update on the staff endpoints the emulator serves
            patient = self.em.patients[int(patient_id)]
            patient.preferred_name = f"Edit{number}"
            patient.updated_at = self.em._now()

    def cancel(self, appointment_id: str, patient_id: str) -> None:
        body = jane_wire.CancelRequest(cancelled_reason="Other", browser_tab_id=TAB)
        self.em.cancel(int(appointment_id), msgspec.json.encode(body))


class NookalDriver(Driver):
    slug = "nookal"
    patients = Resource(name="patients", page=200)
    appointments = Resource(name="appointments", page=200)

    def __init__(self, seed: EmulatorSeed, clock: ShiftedClock) -> None:
        super().__init__(seed, clock)
        self.em = NookalEmulator(seed, clock=clock, max_exchanges=1)  # it has no rate limit of its own
        self.location = self.em.location_ids()[0]
        self.scope = self.em.keys[self.em.api_key]
        self.practitioners = list(self.em.practitioners)
        self.type_id = next(iter(self.em.types))

    @property
    def emulator(self) -> Emulator:
        return self.em

    def patient_ids(self) -> list[str]:
        return list(self.em.patients)

    def add_appointment(self, patient_id: str, plan: Planned) -> str:
        params = {
            "location_id": self.location,
            "appointment_date": plan.start.date().isoformat(),
            "start_time": plan.start.strftime("%H:%M:%S"),
            "patient_id": patient_id,
            "practitioner_id": self.practitioners[plan.practitioner],
            "appointment_type_id": self.type_id,
            "allow_overlap_bookings": "1",
        }
        with self.em._lock:
            answer = self.em.add_booking("addAppointmentBooking", params, self.scope)
        return str(answer["data"]["results"]["appointment_id"])

    def edit_patient(self, patient_id: str, number: int) -> None:
        with self.em._lock:  # v2 has no patient update: the clinic's own screens
            record = self.em.patients[patient_id]
            record.mobile = f"0499{number:06d}"
            record.modified = self.em._stamp(record.modified)

    def cancel(self, appointment_id: str, patient_id: str) -> None:
        with self.em._lock:
            self.em.cancel_appointment(
                "cancelAppointment", {"appointment_id": appointment_id, "patient_id": patient_id}, self.scope
            )


class SimplePracticeDriver(Driver):
    slug = "simplepractice"
    walk_pages = 1
    patients = Resource(name="clients", page=50, newest_first_scan=True)  # `sort=-updatedAt`, no filter
    appointments = Resource(name="appointments", page=50)

    def __init__(self, seed: EmulatorSeed, clock: ShiftedClock) -> None:
        super().__init__(seed, clock)
        self.em = SimplePracticeEmulator(seed, rate_limit_per_minute=HUGE, clock=clock, max_exchanges=1)
        self.office = next(iter(self.em.offices))
        self.clinicians = list(self.em.clinicians)
        self.code = next(iter(self.em.cpt_codes.values())).code

    @property
    def emulator(self) -> Emulator:
        return self.em

    def patient_ids(self) -> list[str]:
        return list(self.em.clients)

    def add_appointment(self, patient_id: str, plan: Planned) -> str:
        end = plan.start + datetime.timedelta(minutes=self._minutes())
        document = {
            "data": {
                "type": "appointments",
                "attributes": {
                    "startTime": plan.start.isoformat(),
                    "endTime": end.isoformat(),
                    "clinicianId": self.clinicians[plan.practitioner],
                    "officeId": self.office,
                    "cptCodes": [{"code": self.code}],
                },
                "relationships": {"client": {"data": {"type": "clients", "id": patient_id}}},
            }
        }
        return self.em.create_appointment(msgspec.json.encode(document)).id

    def edit_patient(self, patient_id: str, number: int) -> None:
        with self.em._lock:  # the emulator serves no client update: the clinician's own screens
            record = self.em.clients[patient_id]
            record.phones = [f"0499{number:06d}"]
            record.updated_at = self.em._now()

    def cancel(self, appointment_id: str, patient_id: str) -> None:
        document = {
            "data": {
                "type": "appointments",
                "id": appointment_id,
                "attributes": {"attendanceStatus": "Canceled", "cancelReason": "Other"},
            }
        }
        self.em.update_appointment(appointment_id, msgspec.json.encode(document))

    def feed_window(self, now: datetime.datetime, since: datetime.datetime) -> tuple[datetime.datetime, ...] | None:
        # `filter[timeRange]` only, no "updated since" filter: the near window whole, plus one far slice (walk_pages)
        return (now - SP_NEAR_BACK, now + SP_NEAR_AHEAD)


class PracticeBetterDriver(Driver):
    slug = "practicebetter"
    walk_pages = 2
    patients = Resource(name="records", page=100)
    appointments = Resource(name="sessions", page=100)

    def __init__(self, seed: EmulatorSeed, clock: ShiftedClock) -> None:
        super().__init__(seed, clock)
        self.em = PracticeBetterEmulator(seed, rate_per_second=HUGE, burst=HUGE, clock=clock, max_exchanges=1)
        self.company = self.em.companies[self.em.company_ids()[0]]
        self.consultants = [m.id for m in self.company.members.values() if m.is_practitioner]
        self.service = next(iter(self.company.services))

    @property
    def emulator(self) -> Emulator:
        return self.em

    def patient_ids(self) -> list[str]:
        return [r.id for r in self.em.records.values() if r.company_id == self.company.id]

    def add_appointment(self, patient_id: str, plan: Planned) -> str:
        body = {
            "clientRecordId": patient_id,
            "serviceId": self.service,
            "serviceType": "face",
            "sessionDate": plan.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration": self._minutes(),
            "asConsultantId": self.consultants[plan.practitioner],
            "ignoreConflict": True,
        }
        return self.em.create_session(self.company, body).id

    def edit_patient(self, patient_id: str, number: int) -> None:
        self.em.change_record(patient_id, RecordChange(mobilePhone=f"0499{number:06d}"))

    def cancel(self, appointment_id: str, patient_id: str) -> None:
        self.em.cancel_session(self.company, appointment_id, {})

    def feed_window(self, now: datetime.datetime, since: datetime.datetime) -> tuple[datetime.datetime, ...] | None:
        # No "modified since" filter on sessions: the near window whole, plus the newest-created page and one page of
        # the walk over every session (walk_pages)
        return (now - FEED_LOOKBACK, now + PB_NEAR_AHEAD)


class HalaxyDriver(Driver):
    slug = "halaxy"
    # The feed is `Patient?_lastUpdated=gt…` and `Appointment?_lastUpdated=gt…` (adapters/halaxy/adapter.py
    # changes_since), each with `_count=50` (the SDK fixture's page; the emulator serves up to 100): only changed
    # records are listed, so the floor is the minimum and a quiet poll's is 2. Appointments are searched practice-wide
    # and kept to this clinic by their PractitionerRole; the seed has one clinic, so none is read and dropped. Knowing
    # the clinic's roles is the adapter's own need, not the API's (its search takes `practitioner-role`): a roles read
    # in a poll is counted against the floor, not added to it.
    patients = Resource(name="Patient", page=50)
    appointments = Resource(name="Appointment", page=50)

    def __init__(self, seed: EmulatorSeed, clock: ShiftedClock) -> None:
        super().__init__(seed, clock)
        self.em = HalaxyEmulator(seed, rate_limit=HUGE, clock=clock, max_exchanges=1)
        clinic = self.em.clinic_ids()[0]
        self.roles = [r.id for r in self.em.roles.values() if r.clinic_id == clinic]  # one per practitioner, in order
        self.service = next(iter(self.em.services))

    @property
    def emulator(self) -> Emulator:
        return self.em

    def patient_ids(self) -> list[str]:
        return list(self.em.patients)

    def add_appointment(self, patient_id: str, plan: Planned) -> str:
        # `$book`'s own code (reference/createappointment's Parameters); the emulator books overlaps by default, as
        # Halaxy's calendar lets staff double-book.
        minutes = self._minutes()
        end = plan.start + datetime.timedelta(minutes=minutes)
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "appt-resource",
                    "resource": {
                        "resourceType": "Appointment",
                        "start": plan.start.isoformat(),
                        "end": end.isoformat(),
                        "minutesDuration": minutes,
                        "participant": [
                            {"actor": {"reference": f"PractitionerRole/{self.roles[plan.practitioner]}"}},
                            {"actor": {"reference": f"Patient/{patient_id}"}},
                        ],
                    },
                },
                {"name": "patient-id", "valueReference": {"reference": f"Patient/{patient_id}"}},
                {"name": "healthcare-service-id", "valueReference": {"reference": f"HealthcareService/{self.service}"}},
                {"name": "location-type", "valueCode": "clinic"},
                {"name": "status", "valueCode": "booked"},
            ],
        }
        return self.em.book(body, f"{HALAXY_PREFIX}/Appointment/$book").id

    def edit_patient(self, patient_id: str, number: int) -> None:
        # The method of `POST /_emulator/patients/{id}` (a receptionist's edit in Halaxy's screens): it bumps
        # `meta.lastUpdated` and the version. No webhook is configured, so the route's notification would be a no-op.
        self.em.edit_patient(patient_id, PatientEdit(phone=f"+61499{number:06d}"))

    def cancel(self, appointment_id: str, patient_id: str) -> None:
        # The method of `POST /_emulator/appointments/{id}/cancel`: cancelled in Halaxy's calendar.
        self.em.front_desk_cancel(appointment_id)


class FhirDriver(Driver):
    slug = "fhir"
    # The feed is `Patient?_lastUpdated=ge…` and `Appointment?_lastUpdated=ge…&location=…` (adapters/fhir/adapter.py
    # changes_since), each with `_count=100`: only changed records are listed (the emulator's default dialect, "ihe",
    # declares `_lastUpdated`), so the floor is the minimum and a quiet poll's is 2. The CapabilityStatement the feed
    # checks is cached per process for an hour (read at the warm-up's `check()`), so it costs no poll a request.
    patients = Resource(name="Patient", page=100)
    appointments = Resource(name="Appointment", page=100)

    def __init__(self, seed: EmulatorSeed, clock: ShiftedClock) -> None:
        super().__init__(seed, clock)
        self.em = FhirEmulator(
            seed,
            dialect="ihe",
            rate_limit_per_minute=HUGE,
            token_rate_limit_per_minute=HUGE,
            clock=clock,
            max_exchanges=1,
        )
        self.location = self.em.location_ids[0]
        self.practitioners = list(self.em.db["Practitioner"])
        service = next(iter(self.em.db["HealthcareService"].values())).resource
        self.service = service["id"]
        self.service_type = [{"coding": service["type"][0]["coding"][:1]}]
        self.overbooked = 0  # appointments `$book` refused as double bookings, stored as the clinic's screens do

    @property
    def emulator(self) -> Emulator:
        return self.em

    def patient_ids(self) -> list[str]:
        return list(self.em.db["Patient"])

    def add_appointment(self, patient_id: str, plan: Planned) -> str:
        # ITI-117 `$book` with a `pending` appointment-resource, as the adapter books (answered `booked`).
        end = plan.start + datetime.timedelta(minutes=self._minutes())
        start_text, end_text = plan.start.isoformat(), end.isoformat()
        actors = (
            ("Patient", patient_id),
            ("Practitioner", self.practitioners[plan.practitioner]),
            ("Location", self.location),
            ("HealthcareService", self.service),
        )
        resource = {
            "resourceType": "Appointment",
            "status": "pending",
            "serviceType": self.service_type,
            "start": start_text,
            "end": end_text,
            "minutesDuration": self._minutes(),
            "requestedPeriod": [{"start": start_text, "end": end_text}],
            "participant": [
                {"actor": {"reference": f"{kind}/{rid}"}, "required": "required", "status": "accepted"}
                for kind, rid in actors
            ],
        }
        body = {"resourceType": "Parameters", "parameter": [{"name": "appointment-resource", "resource": resource}]}
        try:
            answer = self.em.book(f"http://seed{FHIR_BASE}", body)
            return str(answer["entry"][0]["resource"]["id"])
        except FhirError as exc:
            # `$book` refuses a double booking (the IG: it "determines if the nominated appointment is still
            # available"). The plan double-books only past 16 slots x 184 days x the practitioners (5,888 with the
            # default seed's 2): those go through the emulator's own create code (`POST Appointment`, which checks no
            # calendar without Slots), as a clinic overbooking in its own screens would.
            if exc.status != 409:
                raise
            self.overbooked += 1
            return str(self.em.create("Appointment", {**resource, "status": "booked"}).resource["id"])

    def edit_patient(self, patient_id: str, number: int) -> None:
        # No control route edits a patient: the clinic's own screens, on the emulator's records through its own write
        # step (`_put`: a new version, `meta.lastUpdated` moved, the old one kept for vread), as every write does.
        with self.em._lock:
            patient = copy.deepcopy(self.em.db["Patient"][patient_id].resource)
            kept = [t for t in patient.get("telecom", []) if t.get("system") != "phone"]
            patient["telecom"] = [*kept, {"system": "phone", "value": f"0499{number:06d}", "use": "mobile"}]
            self.em._put("Patient", patient, patient_id)

    def cancel(self, appointment_id: str, patient_id: str) -> None:
        # The method of `POST /_emulator/fhir/Appointment/{id}/status/{status}` (the clinic's own screens).
        self.em.set_status(appointment_id, "cancelled")


DRIVERS: dict[str, type[Driver]] = {
    d.slug: d
    for d in (
        ClinikoDriver,
        JaneDriver,
        NookalDriver,
        SimplePracticeDriver,
        PracticeBetterDriver,
        HalaxyDriver,
        FhirDriver,
    )
}


# ---------------------------------------------------------------------------------------------- one EMR account


class Account:
    """One seeded emulator served on loopback, with what the seed plan says it holds."""

    def __init__(self, slug: str, size: int) -> None:
        self.slug = slug
        self.size = size
        self.clock = ShiftedClock()
        self.seed = seed_of(size)
        zone = ZoneInfo(self.seed.time_zone)
        self.plan = plan_of(self.seed, datetime.datetime.now(zone).date())
        began = time.perf_counter()
        self.clock.offset = -SEED_AGE.total_seconds()
        self.driver = DRIVERS[slug](self.seed, self.clock)
        self.patients = self.driver.patient_ids()
        if len(self.patients) != size:
            raise RuntimeError(f"{slug}: the emulator holds {len(self.patients)} patients, not {size}")
        self.appointments = [self.driver.add_appointment(self.patients[p.patient], p) for p in self.plan]
        self.clock.offset = 0.0
        self.seed_seconds = time.perf_counter() - began
        self.server = ServerThread(self.driver.emulator.app())
        self.base_url = self.server.start()
        self.server_tid = self.server._thread.native_id  # its CPU is the emulator's, not the gateway's
        self.settings_json, self.credentials_json = self.driver.emulator.location_config(self.base_url)
        self.cancelled: set[int] = set()

    def stop(self) -> None:
        self.server.stop()

    def started_between(self, low: datetime.datetime, high: datetime.datetime | None = None) -> int:
        return sum(1 for p in self.plan if p.start >= low and (high is None or p.start < high))

    def changes(self, repetition: int) -> tuple[list[int], list[int]]:
        """(patients to edit, appointments to cancel) for one repetition, disjoint and never reused: cancellations
        take appointments more than a day ahead (every feed covers those), edits take patients from the end."""
        count = max(1, round(self.size * CHANGED_SHARE))
        soon = datetime.datetime.now(UTC) + datetime.timedelta(days=1)
        future = [p.patient for p in self.plan if p.start > soon and p.patient not in self.cancelled]
        cancel = future[:count]
        self.cancelled.update(cancel)
        taken = set(cancel)
        edit: list[int] = []
        for i in range(self.size - 1 - repetition * count, -1, -1):
            if len(edit) == count:
                break
            if i not in taken:
                edit.append(i)
        return edit, cancel


# ---------------------------------------------------------------------------------------------- measuring


def _thread_cpu_seconds(tid: int) -> float | None:
    """User + system CPU of one thread of this process, from /proc (None where there is none)."""
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _endpoint(path: str) -> str:
    """The path with record ids replaced, so requests group by endpoint."""
    parts = []
    for part in path.split("/"):
        if part.isdigit() or (len(part) >= 16 and all(c in "0123456789abcdef-" for c in part.lower())):
            part = "{id}"
        parts.append(part)
    return "/".join(parts)


class ProbeTransport(httpx.AsyncBaseTransport):
    """The worker's client's transport, noting each request for `Probe`. An event hook would not see them: the
    gateway's paced client (adapters.pacing) hands requests straight to this client's transport."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.probe.on_request(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Probe:
    """Counts requests two ways: the emulator's own count (authoritative) and, per endpoint, as the client sent them."""

    def __init__(self, base_url: str) -> None:
        self.stats_url = f"{base_url}/_emulator/stats"
        self.sent: Counter[str] = Counter()
        self.control = httpx.AsyncClient(timeout=30)

    def on_request(self, request: httpx.Request) -> None:
        if not request.url.path.startswith("/_emulator"):
            self.sent[f"{request.method} {_endpoint(request.url.path)}"] += 1

    async def count(self) -> tuple[int, int]:
        """(requests, of which answered 429) so far."""
        answer = await self.control.get(self.stats_url)
        answer.raise_for_status()
        stats = answer.json()
        return int(stats["requests"]), int(stats.get("rate_limited", 0))

    async def close(self) -> None:
        await self.control.aclose()


class Repetition:
    """One fresh store and location on the account: the six syncs in order."""

    def __init__(self, account: Account, number: int, store: Store, location: LocationRecord, config: GatewayConfig):
        self.account = account
        self.number = number
        self.store = store
        self.location = location
        self.config = config
        self.measurements: list[Measurement] = []

    def adapter(self, http: httpx.AsyncClient) -> AnyAdapter:
        """Built as `poll_location` builds it (a fresh instance per poll, behind the account's stored budget, whose
        limits `_config` puts out of reach)."""
        return build_adapter(
            self.location.emr,
            self.location.settings_json,
            self.account.credentials_json,
            http=http,
            location_id=self.location.id,
            time_zone=self.location.time_zone,
            store=self.store,
            pacing=EMRPacing.for_config(self.config, self.store),
        )

    async def measure(
        self,
        probe: Probe,
        kind: Kind,
        run: Callable[[], Any],
        *,
        minimum: int,
        floor: int,
        target: int | None = None,
    ) -> Measurement:
        probe.sent.clear()
        before, limited_before = await probe.count()
        tid = self.account.server_tid
        emulator_before = _thread_cpu_seconds(tid) if tid is not None else None
        process_before = time.process_time()
        began = time.perf_counter()
        error: str | None = None
        result: Any = None
        try:
            result = await run()
        except Exception as exc:  # recorded, not raised: the other syncs still say something
            error = f"{type(exc).__name__}: {exc}"[:300]
        seconds = time.perf_counter() - began
        process_cpu = time.process_time() - process_before
        emulator_after = _thread_cpu_seconds(tid) if tid is not None else None
        emulator_cpu = (
            emulator_after - emulator_before if emulator_after is not None and emulator_before is not None else None
        )
        after, limited_after = await probe.count()
        requests = after - before
        if limited_after > limited_before and error is None:  # the emulator's limit must be out of reach
            error = f"{limited_after - limited_before} requests answered 429"
        listed, events = 0, None
        if isinstance(result, ChangeSet):
            listed = len(result.patients) + len(result.appointments)
        elif isinstance(result, tuple):
            listed, events = result
        measurement = Measurement(
            adapter=self.account.slug,
            size=self.account.size,
            kind=kind,
            repetition=self.number,
            requests=requests,
            listed=listed,
            seconds=round(seconds, 4),
            emulator_cpu_seconds=round(emulator_cpu, 3) if emulator_cpu is not None else None,
            gateway_cpu_seconds=round(process_cpu - (emulator_cpu or 0.0), 3),
            minimum=minimum,
            floor=floor,
            events=events,
            target=target,
            by_endpoint=dict(probe.sent.most_common()),
            error=error,
        )
        self.measurements.append(measurement)
        return measurement

    async def poll(self, http: httpx.AsyncClient, claim_at: datetime.datetime) -> int:
        claimed = await db.claim_due(self.store, WORKER, claim_at, self.config.sync_lease_seconds, 1)
        if len(claimed) != 1:
            raise RuntimeError("the location was not due")
        published = await poll_location(self.store, http, self.config, claimed[0], WORKER)
        state = await db.get_state(self.store, self.location.id)
        if state is None or state.last_error is not None:
            raise RuntimeError(f"the poll failed: {state.last_error if state else 'no sync state'}")
        return published

    async def cursor(self) -> str:
        state = await db.get_state(self.store, self.location.id)
        if state is None or state.cursor is None:
            raise RuntimeError("the first poll left no cursor")
        return state.cursor

    async def run(self, http: httpx.AsyncClient, probe: Probe) -> None:
        account, driver = self.account, self.account.driver
        patients, appointments = driver.patients, driver.appointments
        # Changes of the previous repetition must fall in an earlier second than this one's cursor (whole seconds).
        await asyncio.sleep(1.05 - time.time() % 1.0)
        now = datetime.datetime.now(UTC)
        await db.ensure_states(self.store, [self.location.id], now)

        async def initial() -> tuple[int, int]:
            return 0, await self.poll(http, now)

        await self.measure(probe, Kind.INITIAL, initial, minimum=0, floor=0)
        cursor = await self.cursor()
        since = datetime.datetime.fromisoformat(cursor.replace("Z", "+00:00"))

        def feed_floor(changed_patients: int, changed_appointments: int, affected: int) -> tuple[int, int]:
            at = datetime.datetime.now(UTC)
            listed_patients = affected if driver.patients_from_appointments else changed_patients
            minimum = patients.requests_for(listed_patients) + appointments.requests_for(changed_appointments)
            patient_floor = patients.floor_for(listed_patients, len(account.patients))
            window = driver.feed_window(at, since)
            if window is None:
                return minimum, patient_floor + appointments.requests_for(changed_appointments)
            near = appointments.requests_for(account.started_between(*window))
            return minimum, patient_floor + near + driver.walk_pages

        idle_min, idle_floor = feed_floor(0, 0, 0)
        await self.measure(
            probe,
            Kind.IDLE,
            lambda: self.adapter(http).changes_since(cursor),
            minimum=idle_min,
            floor=idle_floor,
            target=idle_floor,
        )
        full_min = patients.requests_for(len(account.patients)) + appointments.requests_for(len(account.appointments))

        async def full() -> tuple[int, int]:
            """`emr-gateway sync --full`: the listing, stored as facts (and, where complete, marked so)."""
            done = await sync_location(self.store, http, self.config, self.location, full=True)
            return done.patients + done.appointments, done.events

        # "The page minimum (≈ 50 + 50 requests)": the listing's floor, plus the catalog the snapshots name (<= 5).
        await self.measure(probe, Kind.FULL, full, minimum=full_min, floor=full_min, target=full_min + 5)
        batch = get_adapter_class(account.slug).patient_batch_size

        edit, cancel = account.changes(self.number - 1)
        for i in edit:
            driver.edit_patient(account.patients[i], self.number)
        for i in cancel:
            driver.cancel(account.appointments[i], account.patients[i])
        feed_min, feed_fl = feed_floor(len(edit), len(cancel), len(set(cancel)))
        feed = await self.measure(
            probe, Kind.FEED, lambda: self.adapter(http).changes_since(cursor), minimum=feed_min, floor=feed_fl
        )

        async def incremental() -> tuple[int, int]:
            later = datetime.datetime.now(UTC) + datetime.timedelta(
                seconds=poll_interval(self.config, self.location.emr) + 1
            )
            return feed.listed, await self.poll(http, later)

        to_read = 0 if driver.patients_from_appointments else len(set(cancel) - set(edit))
        poll_target = feed_fl + math.ceil(to_read / batch) + 1
        await self.measure(probe, Kind.POLL, incremental, minimum=feed_min, floor=feed_fl, target=poll_target)

        sweep_now = datetime.datetime.now(UTC)
        started = account.started_between(sweep_now - SWEEP_WINDOW, sweep_now)

        async def daily() -> tuple[int, int]:
            adapter = self.adapter(http)
            swept = await sweep(
                self.store,
                adapter,
                self.location,
                sweep_now - SWEEP_WINDOW,
                sweep_now,
                cached_catalog(GatewayConfig(), self.store, adapter),
            )
            return started, len(swept.events)  # what poll_location publishes of a sweep

        sweep_min = appointments.requests_for(started)
        sweep_target = sweep_min + math.ceil(started / batch) + 1  # at most one patient per started appointment
        await self.measure(probe, Kind.SWEEP, daily, minimum=sweep_min, floor=sweep_min, target=sweep_target)


def _config(database_url: str) -> GatewayConfig:
    """The gateway's defaults, with every EMR's request pacing set out of reach so the local run is not slowed."""
    unlimited = (RateLimit(per_second=float(HUGE), burst=HUGE),)
    return GatewayConfig(database_url=database_url, emr_rate_limits={slug: unlimited for slug in EMULATORS})


async def run_account(slug: str, size: int, repetitions: int, say: Callable[[str], None]) -> list[Measurement]:
    account = Account(slug, size)
    say(f"  {slug} N={size}: seeded {size} patients + {len(account.appointments)} appointments in "
        f"{account.seed_seconds:.1f}s at {account.base_url}")  # fmt: skip
    probe = Probe(account.base_url)
    timeout = httpx.Timeout(20.0, connect=5.0)  # the gateway's EGW_EMR_TIMEOUT_SECONDS / _CONNECT_ defaults
    measurements: list[Measurement] = []
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=ProbeTransport(probe)) as http:
            # Steady state: Practice Better's OAuth token is cached per process for an hour, so a poll does not mint
            # one; mint it (and prove the credentials work) before measuring.
            warmup = build_adapter(
                slug,
                account.settings_json,
                account.credentials_json,
                http=http,
                location_id="warm-up",
                time_zone=account.seed.time_zone,
            )
            await warmup.check()
            for number in range(1, repetitions + 1):
                with tempfile.TemporaryDirectory(prefix="egw-bench-sync-") as tmp:
                    url = f"sqlite:///{Path(tmp) / 'sync.db'}"
                    upgrade(url)
                    store = await Store.open(url, Keyring.parse(generate_key()))
                    try:
                        location = await store.create_location(
                            emr=slug,
                            name=f"Bench {slug}",
                            settings_json=account.settings_json,
                            credentials_json=account.credentials_json,
                            time_zone=account.seed.time_zone,
                        )
                        repetition = Repetition(account, number, store, location, _config(url))
                        await repetition.run(http, probe)
                    finally:
                        await store.close()
                for m in repetition.measurements:
                    say(_line(m))
                measurements += repetition.measurements
    finally:
        await probe.close()
        account.stop()
    return measurements


# ---------------------------------------------------------------------------------------------- reporting


def poll_interval_for(slug: str, requests: int) -> float:
    """The interval the gateway derives for one location whose quiet poll costs `requests` (default settings)."""
    cls = get_adapter_class(slug)
    return adaptive_interval(GatewayConfig(), cls, cls.rate_limits, requests=requests, sharing=1, fill=1.0)


def _line(m: Measurement) -> str:
    extra = f" events={m.events}" if m.events is not None else ""
    extra += f" ERROR {m.error}" if m.error else ""
    return (
        f"    [rep {m.repetition}] {m.kind:<16} requests={m.requests:<6} min={m.minimum:<5} floor={m.floor:<5} "
        f"listed={m.listed:<6} {m.seconds:8.3f}s (CPU emulator {m.emulator_cpu_seconds}s, gateway "
        f"{m.gateway_cpu_seconds}s){extra}"
    )


def summarize(measurements: Sequence[Measurement], rates: dict[str, RateInfo]) -> list[Row]:
    groups: dict[tuple[str, int, Kind], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.adapter, m.size, m.kind), []).append(m)
    rows: list[Row] = []
    for (adapter, size, kind), runs in groups.items():
        ok = [r for r in runs if r.error is None] or runs
        requests = sorted(r.requests for r in ok)
        median = int(statistics.median_low(requests))
        minimum = int(statistics.median_low([r.minimum for r in ok]))
        floor = int(statistics.median_low([r.floor for r in ok]))
        rate = rates[adapter]
        driver = DRIVERS[adapter]
        per_day = round(median * 86400 / poll_interval_for(adapter, median))
        targets = [r.target for r in ok if r.target is not None]
        target = int(statistics.median_low(targets)) if targets else None
        events = [r.events for r in ok if r.events is not None]
        emulator_cpu = [r.emulator_cpu_seconds for r in ok if r.emulator_cpu_seconds is not None]
        rows.append(
            Row(
                adapter=adapter,
                size=size,
                kind=kind,
                repetitions=len(runs),
                listed=int(statistics.median_low([r.listed for r in ok])),
                requests=median,
                requests_min=requests[0],
                requests_max=requests[-1],
                minimum=minimum,
                floor=floor,
                ratio=round(median / minimum, 2) if minimum else None,
                target=target,
                meets_target=median <= target if target is not None else None,
                pages=f"{driver.patients.label()}; {driver.appointments.label()}",
                seconds=_stat([r.seconds for r in ok]),
                emulator_cpu_seconds=round(statistics.median(emulator_cpu), 3) if emulator_cpu else None,
                gateway_cpu_seconds=round(statistics.median([r.gateway_cpu_seconds for r in ok]), 3),
                at_emr_limit_seconds=round(median / rate.per_second, 1),
                at_gateway_pacing_seconds=round(paced_seconds(median, rate.gateway_pacing), 1),
                per_day_at_default_poll=per_day if kind is Kind.IDLE else None,
                events=int(statistics.median_low(events)) if events else None,
                errors=sum(1 for r in runs if r.error is not None),
            )
        )
    return rows


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(rows: Sequence[Row], rates: Sequence[RateInfo]) -> str:
    header = (
        f"{'adapter':<14} {'N':>6} {'sync':<16} {'listed':>7} {'requests':>9} {'min':>6} {'floor':>6} {'ratio':>7} "
        f"{'target':>7} {'ok':>3} "
        f"{'local s med [min-max]':>24} {'CPU emu|gw s':>13} {'@EMR limit':>11} {'@gw pacing':>11} "
        f"{'req/day@poll':>12}  pages"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        requests = str(r.requests) if r.requests_min == r.requests_max else f"{r.requests}*"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        target = str(r.target) if r.target is not None else "-"
        ok = "-" if r.meets_target is None else ("yes" if r.meets_target else "NO")
        local = f"{r.seconds.median:.3f} [{r.seconds.min:.3f}-{r.seconds.max:.3f}]"
        per_day = str(r.per_day_at_default_poll) if r.per_day_at_default_poll is not None else "-"
        emulator = f"{r.emulator_cpu_seconds:.2f}" if r.emulator_cpu_seconds is not None else "?"
        cpu = f"{emulator}|{r.gateway_cpu_seconds:.2f}"
        errors = f"  ERRORS {r.errors}" if r.errors else ""
        lines.append(
            f"{r.adapter:<14} {r.size:>6} {r.kind:<16} {r.listed:>7} {requests:>9} {r.minimum:>6} {r.floor:>6} "
            f"{ratio:>7} {target:>7} {ok:>3} {local:>24} {cpu:>13} {_duration(r.at_emr_limit_seconds):>11} "
            f"{_duration(r.at_gateway_pacing_seconds):>11} {per_day:>12}  {r.pages}{errors}"
        )
    if any(r.requests_min != r.requests_max for r in rows):
        lines.append("(* request counts differed between repetitions: the median is shown, the JSON has each)")
    lines += [
        "",
        "target (issue 17): quiet poll = floor; poll and sweep = floor + ceil(patients to read / batch) + 1; "
        "full sync = floor + the catalog (5). A patient met for the first time on an EMR whose full listing is not "
        "complete also costs one read of their appointments. "
        "req/day@poll: quiet polls at the interval the gateway derives for one location",
        "rates: @EMR limit = requests / rate; @gw pacing = the adapter's token buckets, burst first",
    ]
    for rate in rates:
        pacing = ", ".join(f"{p['per_second']:g}/s burst {p['burst']:g}" for p in rate.gateway_pacing) or "none"
        lines.append(
            f"  {rate.adapter:<14} {rate.per_second:.3f}/s ({rate.source}); gateway pacing: {pacing}; "
            f"derived poll {rate.default_poll_seconds:g} s (one location, 2-request quiet poll)"
        )
    return "\n".join(lines)


def endpoints_table(measurements: Sequence[Measurement], size: int) -> str:
    """Where the requests of the syncs that read per patient go, at one size (first repetition)."""
    lines = [f"requests by endpoint, N={size} (first repetition, as the adapter's client sent them):"]
    for m in measurements:
        if m.size != size or m.repetition != 1 or m.kind not in (Kind.FULL, Kind.POLL, Kind.SWEEP):
            continue
        top = ", ".join(f"{n} x {endpoint}" for endpoint, n in list(m.by_endpoint.items())[:8])
        lines.append(f"  {m.adapter:<14} {m.kind:<16} {top}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str], *, lenient: bool = False) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.sync_efficiency",
        description="EMR requests of change detection per adapter vs. the fewest the EMR's page size allows.",
    )
    p.add_argument("--quick", action="store_true", help="sizes 100 and 1000, 1 repetition")
    p.add_argument("--sizes", type=int, nargs="+", help="patients per emulator (default 100 1000 10000)")
    p.add_argument("--adapters", nargs="+", choices=sorted(DRIVERS), help="default: every one with a driver")
    p.add_argument(
        "--repetitions",
        type=int,
        help=f"repetitions per size (default 3, and 1 from N={LARGE} on: counts are deterministic and the emulators' "
        "own scans make those slow; --quick 1)",
    )
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON goes (default bench/results)")
    if lenient:  # under `python -m bench`, other benchmarks' options are theirs
        args, _ = p.parse_known_args(list(argv))
        return args
    return p.parse_args(list(argv))


def settings_from(args: argparse.Namespace) -> Settings:
    sizes = args.sizes or ([100, 1000] if args.quick else [100, 1000, 10000])
    if any(n < 1 for n in sizes):
        raise SystemExit("--sizes must be positive")
    order = [d for d in DRIVERS if d in (args.adapters or DRIVERS)]
    return Settings(
        sizes=sizes,
        adapters=order,
        repetitions={n: args.repetitions or (1 if args.quick or n >= LARGE else 3) for n in sizes},
        appointments_per_patient=1,
        changed_share=CHANGED_SHARE,
        appointment_days=[-PAST_DAYS, FUTURE_DAYS],
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    started = datetime.datetime.now(UTC)

    def say(line: str) -> None:
        print(line, flush=True)

    say(
        f"sync efficiency: adapters={','.join(settings.adapters)} sizes={settings.sizes} "
        f"repetitions={settings.repetitions} (1 appointment per patient, {CHANGED_SHARE:.0%} changed per increment)"
    )
    measurements: list[Measurement] = []
    for size in settings.sizes:
        for slug in settings.adapters:
            measurements += asyncio.run(run_account(slug, size, settings.repetitions[size], say))
    rates = {slug: rate_info(slug) for slug in settings.adapters}
    rows = summarize(measurements, rates)
    report = Report(
        benchmark="sync_efficiency",
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.datetime.now(UTC).isoformat(timespec="seconds"),
        settings=settings,
        machine=machine_info(),
        rates=list(rates.values()),
        measurements=measurements,
        rows=rows,
    )
    path = write_report(args.out, "sync_efficiency", started, report)
    say("")
    say(table(rows, list(rates.values())))
    say("")
    say(endpoints_table(measurements, max(settings.sizes)))
    say(f"\nwrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


def main_shared(argv: Sequence[str]) -> int:
    """For `python -m bench`: the options every benchmark gets may include ones only another benchmark knows."""
    return run(parse_args(argv, lenient=True))


if __name__ == "__main__":
    sys.exit(main())

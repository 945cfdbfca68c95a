"""The Cliniko adapter against the Cliniko emulator over real HTTP: what a clinic would notice if it went wrong."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.base import AdapterContext
from adapters.cliniko.adapter import ClinikoAdapter
from adapters.cliniko.emulator import ClinikoEmulator
from adapters.cliniko.settings import ClinikoCredentials, ClinikoSettings, base_url_of
from adapters.emulation import (
    EmulatorSeed,
    Fault,
    FaultKind,
    SeedBusiness,
    SeedPatient,
    ServerThread,
    default_seed,
)
from adapters.errors import (
    AuthFailed,
    InvalidReference,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    SlotUnavailable,
    Unsupported,
)
from adapters.http import RetryPolicy
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.commands import (
    AppointmentQuery,
    AvailabilityQuery,
    BookCommand,
    CancelCommand,
    NewPatient,
    RescheduleCommand,
)
from schemas.patients import PatientQuery

UTC = dt.UTC
MELBOURNE = ZoneInfo("Australia/Melbourne")
FAST = RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.004, jitter=0.001)
SLOW_MS = 1500
PATIENCE = 1.5  # twice the client timeout below, as the gateway sets it


@dataclass
class Clinic:
    emulator: ClinikoEmulator
    base_url: str
    http: httpx.AsyncClient

    def adapter(self, business_index: int = 0, *, api_key: str | None = None) -> ClinikoAdapter:
        settings_json, credentials_json = self.emulator.location_config(self.base_url, business_index)
        settings = msgspec.json.decode(settings_json, type=ClinikoSettings)
        credentials = msgspec.json.decode(credentials_json, type=ClinikoCredentials)
        if api_key is not None:
            credentials = msgspec.structs.replace(credentials, api_key=api_key)
        adapter = ClinikoAdapter(
            settings,
            credentials,
            self.http,
            AdapterContext(
                location_id=f"loc{business_index}", time_zone=MELBOURNE.key, write_patience_seconds=PATIENCE
            ),
        )
        adapter.retry = FAST
        return adapter

    @property
    def practitioner_ids(self) -> list[str]:
        return list(self.emulator.practitioners)

    @property
    def type_ids(self) -> list[str]:
        return list(self.emulator.appointment_types)

    @property
    def patient_id(self) -> str:
        return next(iter(self.emulator.patients))

    def command(self, start: dt.datetime, *, patient_id: str | None = None, practitioner: int = 0) -> BookCommand:
        return BookCommand(
            patient_id=patient_id or self.patient_id,
            practitioner_id=self.practitioner_ids[practitioner],
            service_id=self.type_ids[0],  # 30 minutes
            start=start,
        )

    def posts(self, path: str = "/v1/individual_appointments") -> int:
        return self.count("POST", path)

    def count(self, method: str, path: str | None = None) -> int:
        return sum(1 for e in self.emulator.exchanges if e.method == method and (path is None or e.path == path))

    async def settled(self, method: str, at_least: int) -> int:
        """Requests of `method` once a held-back one is recorded (exchanges are recorded when their answer ends)."""
        for _ in range(500):
            if self.count(method) >= at_least:
                break
            await asyncio.sleep(0.01)
        return self.count(method)


def local(days_ahead: int, hour: int, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(MELBOURNE).date() + dt.timedelta(days=days_ahead)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=MELBOURNE)


def two_business_seed() -> EmulatorSeed:
    seed = default_seed()
    seed.businesses = [SeedBusiness(name="North Clinic"), SeedBusiness(name="South Clinic")]
    return seed


async def _clinic(emulator: ClinikoEmulator) -> AsyncIterator[Clinic]:
    server = ServerThread(emulator.app())
    base_url = server.start()
    http = httpx.AsyncClient(timeout=httpx.Timeout(0.75))
    try:
        yield Clinic(emulator, base_url, http)
    finally:
        await http.aclose()
        server.stop()


@pytest.fixture
async def clinic() -> AsyncIterator[Clinic]:
    async for c in _clinic(ClinikoEmulator(two_business_seed())):
        yield c


# ------------------------------------------------------------------------------------------------ time and wire


async def test_utc_instants_round_trip(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    # 10:00 in Melbourne, expressed in New York time: the same instant must land in Cliniko as UTC.
    start = local(2, 10).astimezone(ZoneInfo("America/New_York"))
    booked = await adapter.book(clinic.command(start))

    assert booked.start == start
    assert booked.start.tzinfo is not None
    assert booked.start.astimezone(MELBOURNE).hour == 10
    assert booked.time_zone == "Australia/Melbourne"
    [record] = clinic.emulator.appointments.values()
    assert record.starts_at == start
    [post] = [e for e in clinic.emulator.exchanges if e.method == "POST"]
    body = msgspec.json.decode(post.request_body)
    assert body["starts_at"].endswith("Z")
    assert "ends_at" not in body
    assert isinstance(body["patient_id"], str)
    assert booked.end - booked.start == dt.timedelta(minutes=30)


async def test_requests_carry_cliniko_auth_and_user_agent(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    await adapter.check()
    exchange = clinic.emulator.exchanges[-1]
    assert exchange.request_header("user-agent") == "EMR Gateway (demo@example.com)"
    assert exchange.request_header("accept") == "application/json"
    key = adapter.credentials.api_key
    assert exchange.request_header("authorization") == "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_shard_comes_from_the_key_suffix() -> None:
    def url(key: str, **settings: str) -> str:
        return base_url_of(
            ClinikoSettings(business_id="1", **settings),
            ClinikoCredentials(api_key=key, user_agent_email="ops@example.com"),
        )

    assert url("abcdefgh123-uk2") == "https://api.uk2.cliniko.com/v1"
    assert url("abcdefgh123") == "https://api.au1.cliniko.com/v1"
    assert url("abcdefgh123-uk2", shard="ca1") == "https://api.ca1.cliniko.com/v1"


async def test_a_key_for_another_shard_is_refused() -> None:
    async for clinic in _clinic(ClinikoEmulator(default_seed(), shard="uk2")):
        await clinic.adapter().check()  # the configured key ends in -uk2
        wrong = clinic.adapter(api_key=clinic.emulator.api_key + "-au1")
        with pytest.raises(AuthFailed):
            await wrong.check()


# ------------------------------------------------------------------------------------------------ double bookings


async def test_overlapping_booking_is_refused(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    other = await adapter.create_patient(NewPatient(first_name="Other", last_name="Person"))
    await adapter.book(clinic.command(local(2, 10)))

    with pytest.raises(SlotUnavailable):
        await adapter.book(clinic.command(local(2, 10, 15), patient_id=other.id))
    # Back to back is fine, and so is another practitioner at the same time.
    await adapter.book(clinic.command(local(2, 10, 30), patient_id=other.id))
    await adapter.book(clinic.command(local(2, 10), patient_id=other.id, practitioner=1))
    assert clinic.emulator.stats().active_appointments == 3


async def test_reschedule_checks_the_new_slot_but_not_against_itself(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    first = await adapter.book(clinic.command(local(2, 10)))
    second = await adapter.book(clinic.command(local(2, 11)))

    with pytest.raises(SlotUnavailable):
        await adapter.reschedule(RescheduleCommand(appointment_id=second.id, start=local(2, 10, 15)))
    moved = await adapter.reschedule(RescheduleCommand(appointment_id=first.id, start=local(2, 10, 15)))
    assert moved.id == first.id
    assert moved.start == local(2, 10, 15)
    assert moved.end == local(2, 10, 45)  # recomputed from the appointment type, not the old end
    [patch] = [e for e in clinic.emulator.exchanges if e.method == "PATCH"]
    assert msgspec.json.decode(patch.request_body)["ends_at"] is None


async def test_simultaneous_bookings_of_one_slot_keep_exactly_one(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    other = await adapter.create_patient(NewPatient(first_name="Other", last_name="Person"))
    # Both creates are held long enough that both calendar checks pass first: only /conflicts can catch this.
    clinic.emulator.faults.add(Fault(kind=FaultKind.LATENCY, method="POST", count=2, delay_ms=400))
    start, end = local(2, 10), local(2, 10, 30)
    results = await asyncio.gather(
        adapter.book(msgspec.structs.replace(clinic.command(start), end=end)),
        adapter.book(msgspec.structs.replace(clinic.command(start, patient_id=other.id), end=end)),
        return_exceptions=True,
    )
    assert clinic.posts() == 2
    # Exactly one wins: the earlier-created booking keeps the slot, the later one is withdrawn and refused.
    assert sum(isinstance(r, SlotUnavailable) for r in results) == 1
    [kept] = [r for r in results if isinstance(r, Appointment)]
    assert clinic.emulator.stats().active_appointments == 1
    assert (await adapter.get_appointment(kept.id)).status is AppointmentStatus.BOOKED
    # The loser is archived, not cancelled: no "ghost" stays in the clinic's calendar (issue 15, finding 10).
    [loser] = [a for a in clinic.emulator.appointments.values() if a.id != kept.id]
    assert loser.archived_at is not None
    assert loser.cancelled_at is None


# ---------------------------------------------------------------------------------------- writes never blindly retried


async def test_create_timed_out_after_apply_leaves_exactly_one(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    clinic.emulator.faults.add(Fault(kind=FaultKind.TIMEOUT_AFTER_APPLY, method="POST", delay_ms=SLOW_MS))
    booked = await adapter.book(clinic.command(local(2, 10)))
    assert list(clinic.emulator.appointments) == [booked.id]
    assert await clinic.settled("POST", 1) == 1


async def test_create_timed_out_before_apply_is_never_sent_twice(clinic: Clinic) -> None:
    """It may still land late (behind a load balancer): the outcome is unknown, and the gateway's reconciler, not a
    second POST, settles it."""
    adapter = clinic.adapter()
    clinic.emulator.faults.add(Fault(kind=FaultKind.TIMEOUT_BEFORE_APPLY, method="POST", delay_ms=SLOW_MS))
    command = msgspec.structs.replace(clinic.command(local(2, 10)), operation_id="op_before_apply")
    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)
    assert caught.value.operation_id == "op_before_apply"
    assert not clinic.emulator.appointments
    assert await clinic.settled("POST", 1) == 1
    assert await adapter.find_booking(command) is None


async def test_unverifiable_create_is_outcome_unknown(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    command = msgspec.structs.replace(clinic.command(local(2, 10)), end=local(2, 10, 30))
    clinic.emulator.faults.add(Fault(kind=FaultKind.TIMEOUT_AFTER_APPLY, method="POST", delay_ms=SLOW_MS))
    task = asyncio.create_task(adapter.book(command))
    for _ in range(500):  # wait until the write is applied (its answer is still held back)
        if clinic.emulator.appointments:
            break
        await asyncio.sleep(0.01)
    # Every check Cliniko could answer now fails.
    clinic.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, method="GET", count=1000, status=503))
    with pytest.raises(OutcomeUnknown) as caught:
        await task
    assert caught.value.operation_id
    assert len(clinic.emulator.appointments) == 1
    assert await clinic.settled("POST", 1) == 1


async def test_cancel_timed_out_after_apply_is_confirmed(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    booked = await adapter.book(clinic.command(local(2, 10)))
    clinic.emulator.faults.add(Fault(kind=FaultKind.TIMEOUT_AFTER_APPLY, method="PATCH", delay_ms=SLOW_MS))
    cancelled = await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.SICK))
    assert cancelled.status is AppointmentStatus.CANCELLED
    assert cancelled.cancel_reason is CancelReason.SICK
    assert clinic.emulator.appointments[booked.id].cancellation_reason == 30
    assert await clinic.settled("PATCH", 1) == 1


async def test_cancel_sends_the_reason_code_and_is_idempotent(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    booked = await adapter.book(clinic.command(local(2, 10)))
    command = CancelCommand(appointment_id=booked.id, reason=CancelReason.WORK, note="shift change")
    first = await adapter.cancel(command)
    second = await adapter.cancel(command)
    assert first.cancel_reason is CancelReason.WORK
    assert first.cancel_note == "shift change"
    assert second.status is AppointmentStatus.CANCELLED
    [patch] = [e for e in clinic.emulator.exchanges if e.method == "PATCH"]
    assert patch.path.endswith("/cancel")
    assert msgspec.json.decode(patch.request_body)["cancellation_reason"] == 60


# ------------------------------------------------------------------------------------------------ isolation


async def test_another_business_cannot_see_or_touch_an_appointment(clinic: Clinic) -> None:
    north, south = clinic.adapter(0), clinic.adapter(1)
    booked = await north.book(clinic.command(local(2, 10)))

    with pytest.raises(NotFound):
        await south.get_appointment(booked.id)
    with pytest.raises(NotFound):
        await south.reschedule(RescheduleCommand(appointment_id=booked.id, start=local(3, 10)))
    with pytest.raises(NotFound):
        await south.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.OTHER))
    assert await south.list_appointments(AppointmentQuery(patient_id=clinic.patient_id)) == []
    assert [a.id for a in await north.list_appointments(AppointmentQuery(patient_id=clinic.patient_id))] == [booked.id]
    assert clinic.emulator.appointments[booked.id].starts_at == local(2, 10)
    assert clinic.emulator.stats().active_appointments == 1
    # One practitioner cannot be in two clinics at once.
    with pytest.raises(SlotUnavailable):
        await south.book(clinic.command(local(2, 10)))


async def test_check_names_a_wrong_business_id(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    adapter.settings = msgspec.structs.replace(adapter.settings, business_id="42")
    with pytest.raises(NotFound, match="business_id"):
        await adapter.check()


# ------------------------------------------------------------------------------------------------ errors


async def test_unknown_references_are_named_without_values(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    with pytest.raises(InvalidReference) as caught:
        await adapter.book(msgspec.structs.replace(clinic.command(local(2, 10)), patient_id="123", end=local(2, 11)))
    assert caught.value.field == "patient_id"
    email = "not-an-email@@example..com"
    with pytest.raises(Rejected) as rejected:
        await adapter.create_patient(NewPatient(first_name="Ann", last_name="Bell", email=email))
    assert "email" in str(rejected.value)
    assert email not in f"{rejected.value} {rejected.value.emr_message}"


async def test_rate_limit_reads_x_ratelimit_reset() -> None:
    async for clinic in _clinic(ClinikoEmulator(default_seed(), rate_limit_per_minute=2)):
        adapter = clinic.adapter()
        await adapter.check()
        adapter._business = None
        await adapter.check()
        adapter._business = None
        with pytest.raises(RateLimited) as caught:
            await adapter.check()
        assert 1 <= caught.value.retry_after <= 61


async def test_html_404_is_not_found(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    with pytest.raises(NotFound):
        await adapter.client.get("no_such_route", ClinikoSettings)


# ------------------------------------------------------------------------------------------------ patients


async def test_patients_by_email_name_and_phone(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    [jane] = await adapter.find_patients(PatientQuery(email="jane.citizen@example.com"))
    assert jane.phones == ["+61412345678"]
    with pytest.raises(Unsupported):
        await adapter.find_patients(PatientQuery(phone="+61412345678"))
    named = PatientQuery(first_name="Jane", last_name="Citizen", phone="+61412345678")
    assert [p.id for p in await adapter.find_patients(named)] == [jane.id]
    assert await adapter.find_patients(msgspec.structs.replace(named, phone="+61400000000")) == []


async def test_lists_follow_next_links() -> None:
    seed = default_seed()
    seed.patients = [SeedPatient(first_name=f"P{i}", last_name="Many") for i in range(130)]
    async for clinic in _clinic(ClinikoEmulator(seed)):
        found = await clinic.adapter().find_patients(PatientQuery(last_name="Many"))
        assert len({p.id for p in found}) == 130


# ------------------------------------------------------------------------------------------------ availability


async def test_availability_spans_windows_and_skips_the_past(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    query = AvailabilityQuery(
        practitioner_id=clinic.practitioner_ids[0],
        service_id=clinic.type_ids[0],
        start_from=local(-2, 9),  # the past is clamped to today
        start_to=local(10, 12),  # more than one 7-day window
    )
    slots = await adapter.availability(query)
    now = dt.datetime.now(UTC)
    days = {s.start.astimezone(MELBOURNE).date() for s in slots}
    assert all(now <= s.start < query.start_to for s in slots)
    assert local(9, 0).date() in days
    assert local(10, 0).date() in days
    assert all(s.end - s.start == dt.timedelta(minutes=30) for s in slots)
    assert min(s.start for s in slots if s.start.astimezone(MELBOURNE).date() == local(10, 0).date()) == local(10, 9)
    window_gets = [e for e in clinic.emulator.exchanges if e.path.endswith("/available_times")]
    assert len({e.query.split("&page")[0] for e in window_gets}) >= 2

    later = msgspec.structs.replace(query, start_from=local(3, 13), start_to=local(4, 12))
    best = await adapter.next_available(later)
    assert best is not None
    assert best.start == local(3, 13)


# ------------------------------------------------------------------------------------------------ change feed


async def test_changes_since(clinic: Clinic) -> None:
    adapter = clinic.adapter()
    first = await adapter.changes_since(None)
    assert first.patients == []
    assert first.appointments == []

    booked = await adapter.book(clinic.command(local(2, 10)))
    patient = await adapter.create_patient(NewPatient(first_name="New", last_name="Patient"))
    await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.OTHER))
    other_business = await clinic.adapter(1).book(clinic.command(local(3, 10)))

    started = dt.datetime.now(dt.UTC)
    changes = await adapter.changes_since(first.cursor)
    assert [a.id for a in changes.appointments] == [booked.id]  # de-duplicated, this business only
    assert changes.appointments[0].status is AppointmentStatus.CANCELLED
    assert patient.id in [p.id for p in changes.patients]
    stamps: list[dt.datetime] = [a.updated_at for a in changes.appointments if a.updated_at]
    stamps += [p.updated_at for p in changes.patients if p.updated_at]
    # The newest stamp read, held back to 2 s before the poll began (a record stamped earlier but read later is
    # re-read, not skipped), never before the previous cursor.
    cursor = dt.datetime.fromisoformat(changes.cursor)
    assert dt.datetime.fromisoformat(first.cursor) <= cursor <= max(stamps).replace(microsecond=0)
    assert cursor <= started - dt.timedelta(seconds=2) or cursor == dt.datetime.fromisoformat(first.cursor)
    assert other_business.id not in [a.id for a in changes.appointments]

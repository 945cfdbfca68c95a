"""Both sides held to FHIR R4B, not to each other: every body the adapter sent and the emulator answered in a full
day's work (catalog, availability, patients, book, reschedule, cancel, change feed, errors) validated with the
`fhir.resources` models. On the default emulator Halaxy's documented deviation (no Appointment.status) is put back
first (fhir_check.py); on the FHIR-pure variant nothing is."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest

from adapters.errors import NotFound
from adapters.halaxy.adapter import HalaxyAdapter
from schemas.appointments import AppointmentStatus, CancelReason
from schemas.commands import (
    AppointmentQuery,
    AvailabilityQuery,
    BookCommand,
    CancelCommand,
    NewPatient,
    RescheduleCommand,
)
from schemas.patients import PatientQuery
from tests.adapters.halaxy.conftest import HX
from tests.adapters.halaxy.fhir_check import assert_halaxy_exchanges
from tests.fhir_conformance import assert_fhir_exchanges

ZONE = ZoneInfo("Australia/Melbourne")


def _at(days: int, hour: int) -> dt.datetime:
    day = dt.datetime.now(ZONE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=ZONE)


async def _a_days_work(adapter: HalaxyAdapter) -> None:
    await adapter.check()
    practitioners = await adapter.list_practitioners()
    service = min(await adapter.list_services(), key=lambda s: s.duration_minutes)
    await adapter.list_locations()
    cursor = (await adapter.changes_since(None)).cursor
    query = AvailabilityQuery(
        practitioner_id=practitioners[0].id, service_id=service.id, start_from=_at(2, 9), start_to=_at(2, 12)
    )
    slots = await adapter.availability(query)
    assert await adapter.next_available(query) is not None
    email = f"conformance.{uuid.uuid4().hex[:8]}@example.com"
    patient = await adapter.create_patient(
        NewPatient(first_name="Cora", last_name="Form", email=email, phone="+61 400 222 333")
    )
    assert [p.id for p in await adapter.find_patients(PatientQuery(email=email))] == [patient.id]
    booked = await adapter.book(
        BookCommand(
            patient_id=patient.id,
            practitioner_id=practitioners[0].id,
            service_id=service.id,
            start=slots[0].start,
            notes="first visit",
        )
    )
    moved = await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=_at(3, 15)))
    assert moved.start == _at(3, 15)
    cancelled = await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.AWAY))
    assert cancelled.status is AppointmentStatus.CANCELLED
    assert [a.id for a in await adapter.list_appointments(AppointmentQuery(patient_id=patient.id))] == [booked.id]
    await adapter.changes_since(cursor)
    with pytest.raises(NotFound):
        await adapter.get_appointment("987654321")
    await adapter.verify()


async def test_a_days_work_is_fhir_but_for_halaxys_missing_status(hx: HX) -> None:
    await _a_days_work(hx.adapter())
    seen = assert_halaxy_exchanges(hx.emulator.exchanges)
    for kind in ("Bundle", "Appointment", "Patient", "Organization", "OperationOutcome", "CapabilityStatement"):
        assert seen.get(kind), (kind, seen)
    assert seen["request:Parameters"] == 1
    assert seen["request:Patient"] == 1


@pytest.mark.parametrize("hx_emulator", [{"status_field": True}], indirect=True)
async def test_against_a_fhir_pure_halaxy_every_body_validates_unmodified(hx: HX) -> None:
    await _a_days_work(hx.adapter())
    seen = assert_fhir_exchanges(hx.emulator.exchanges, skip_prefixes=("/main/oauth/token",))
    assert seen["Appointment"] >= 3
    assert seen["request:Parameters"] == 1

"""Verify what was written, and notice what no longer decodes: the same checks on every adapter and its emulator.

The emulator's MISSTORE fault stores a write as an EMR that misread it would (the start in another zone, the length
in another unit) and answers as if all was well; only a comparison with what was asked can notice. RESHAPE drops a
field from the EMR's answers, as an EMR that renamed it would.
"""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.base import Capability
from adapters.emulation import FaultKind
from adapters.errors import ContractChanged, WriteMismatch
from schemas.appointments import Appointment, AppointmentStatus
from schemas.commands import AppointmentQuery, RescheduleCommand
from schemas.verify import ProbeStatus
from tests.contract.conftest import Harness

# A member each EMR's practitioner list carries and the adapter requires (so dropping it must be noticed).
REQUIRED_PRACTITIONER_FIELD = {
    "cliniko": "created_at",
    "fhir": "id",
    "halaxy": "practitioner",
    "jane": "id",
    "nookal": "ID",
    "practicebetter": "id",
    "simplepractice": "firstName",
}


async def _active(harness: Harness, patient_id: str, around: dt.datetime) -> list[Appointment]:
    """The patient's appointments that are not cancelled, within two days of `around`, as the EMR lists them."""
    query = AppointmentQuery(
        patient_id=patient_id, start_from=around - dt.timedelta(days=2), start_to=around + dt.timedelta(days=2)
    )
    listed = await harness.adapter.list_appointments(query)
    return [a for a in listed if a.status is not AppointmentStatus.CANCELLED]


@pytest.mark.parametrize(("shift", "length"), [(60, None), (-600, None), (0, 1)], ids=["zone+1h", "zone-10h", "unit"])
async def test_a_booking_stored_differently_is_cancelled_and_reported(
    harness: Harness, shift: int, length: int | None
) -> None:
    harness.requires(Capability.BOOK, Capability.LIST_APPOINTMENTS, Capability.CANCEL)
    command = await harness.book(days_ahead=3, hour=12)
    before = await harness.stats()
    options: dict[str, int | str] = {"shift_minutes": shift}
    if length is not None:
        options["length_minutes"] = length
    await harness.fault(FaultKind.MISSTORE, **options)

    with pytest.raises(WriteMismatch) as caught:
        await harness.adapter.book(command)

    mismatch = caught.value
    assert mismatch.undone, mismatch.message
    fields = dict(mismatch.differences)
    if shift:
        assert fields["start"] == shift
    else:
        assert "start" not in fields
        assert fields["end"] == length - (await harness.booking()).duration.total_seconds() // 60  # type: ignore[operator]
    assert not await _active(harness, command.patient_id, command.start)  # nothing left, at either time
    after = await harness.stats()
    assert after.active_appointments == before.active_appointments


async def _booked(harness: Harness) -> Appointment:
    command = await harness.book(days_ahead=4, hour=10)
    booked = await harness.adapter.book(command)
    assert booked.start == command.start
    return booked


@pytest.mark.parametrize("misreads", [1, 2, 1000], ids=["move-only", "move-and-way-back", "systematic"])
async def test_a_reschedule_stored_differently_is_moved_back(harness: Harness, misreads: int) -> None:
    harness.requires(Capability.BOOK, Capability.RESCHEDULE, Capability.LIST_APPOINTMENTS, Capability.CANCEL)
    booked = await _booked(harness)
    await harness.fault(FaultKind.MISSTORE, shift_minutes=120, count=misreads)

    with pytest.raises(WriteMismatch) as caught:
        await harness.adapter.reschedule(
            RescheduleCommand(appointment_id=booked.id, start=booked.start + dt.timedelta(days=1))
        )

    assert caught.value.undone, caught.value.message
    assert dict(caught.value.differences)["start"] == 120
    [active] = await _active(harness, booked.patient_id, booked.start)
    assert (active.start, active.end, active.practitioner_id) == (booked.start, booked.end, booked.practitioner_id)


async def test_a_correct_write_is_not_undone(harness: Harness) -> None:
    """The comparison itself: an EMR that stored what was asked gives a plain success."""
    harness.requires(Capability.BOOK, Capability.LIST_APPOINTMENTS)
    booked = await _booked(harness)
    [active] = await _active(harness, booked.patient_id, booked.start)
    assert active.id == booked.id


async def test_verify_passes_on_the_emulator(harness: Harness) -> None:
    report = await harness.adapter.verify()
    failed = [p for p in report.probes if p.status is ProbeStatus.FAILED]
    assert report.ok, failed
    assert report.emr == harness.slug
    assert report.probes[0].name == "authentication"


async def test_verify_names_a_field_the_emr_no_longer_sends(harness: Harness) -> None:
    harness.requires(Capability.CATALOG)
    field = REQUIRED_PRACTITIONER_FIELD[harness.slug]
    await harness.fault(FaultKind.RESHAPE, drop_field=field, count=1000)

    with pytest.raises(ContractChanged) as caught:
        await harness.adapter.list_practitioners()
    assert caught.value.path.endswith(field)

    report = await harness.adapter.verify()
    assert not report.ok
    broken = [p for p in report.probes if p.field_path is not None]
    assert broken
    assert all(p.status is ProbeStatus.FAILED for p in broken)
    assert any(p.field_path.endswith(field) and p.seen == "missing required field" for p in broken)  # type: ignore[union-attr]

"""Issue 15 for Jane, over real HTTP against the emulator: one appointment per request whatever Jane does late, no
hold left blocking a slot, no race check that counts a failure as "no rival", and nothing a patient could be
identified by in what a refusal becomes."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import msgspec
import pytest

from adapters.emulation import FaultKind
from adapters.errors import AdapterError, OutcomeUnknown, Rejected, SlotUnavailable, Unavailable
from adapters.jane.adapter import JaneAdapter
from adapters.jane.emulator import Stored
from schemas.appointments import AppointmentStatus
from schemas.commands import AppointmentQuery, BookCommand, RescheduleCommand
from tests.adapters.jane.conftest import PATIENCE, Rig

HOLD = "/admin/api/v2/appointments"
BOOK = "/admin/api/v3/appointments/"
QUOTING = "Jane Citizen (jane.citizen@example.com, +61 412 345 678, born 1985-04-12) is invalid"
PATIENT_DATA = ("Jane Citizen", "jane.citizen@example.com", "+61 412 345 678", "1985-04-12")


def _booked(rig: Rig) -> list[Stored]:
    return [a for a in rig.emulator.appointments.values() if a.state == "booked"]


def _sent(rig: Rig, method: str, path: str) -> int:
    return sum(1 for e in rig.emulator.traffic.exchanges if e.method == method and e.path.startswith(path))


async def _command(rig: Rig, adapter: JaneAdapter, operation_id: str, **changes: Any) -> BookCommand:
    command = await rig.command(adapter, days_ahead=changes.pop("days_ahead", 3), hour=changes.pop("hour", 10))
    return msgspec.structs.replace(command, operation_id=operation_id, **changes)


async def _until(condition: Any, seconds: float = PATIENCE * 4) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the emulator never reached the expected state")


# ------------------------------------------------------------------------------------------------ the marker


async def test_the_marker_is_written_in_notes_text_stripped_for_callers_and_kept_across_a_notes_change(
    rig: Rig,
) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_marker1", notes="Bring the referral")
    booked = await adapter.book(command)
    assert (booked.notes, booked.operation_id) == ("Bring the referral", "op_marker1")
    [stored] = _booked(rig)
    assert stored.notes_text == "Bring the referral [egw:op_marker1]"
    [book] = [e for e in rig.emulator.traffic.exchanges if e.method == "PUT" and e.path.startswith(BOOK)]
    assert msgspec.json.decode(book.request_body)["appointment"]["notes_text"] == stored.notes_text

    read = await adapter.get_appointment(booked.id)
    assert (read.notes, read.operation_id) == ("Bring the referral", "op_marker1")
    moved = await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, notes="Running late"))
    assert (moved.notes, moved.operation_id) == ("Running late", "op_marker1")
    assert stored.notes_text == "Running late [egw:op_marker1]"
    later = await adapter.reschedule(
        RescheduleCommand(appointment_id=booked.id, start=booked.start + dt.timedelta(hours=1))
    )
    assert (later.notes, later.operation_id) == ("Running late", "op_marker1")
    same = await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, notes="Running late"))
    assert same.updated_at == later.updated_at  # the same notes (the marker aside) are no change
    [listed] = await adapter.list_appointments(AppointmentQuery(patient_id=booked.patient_id))
    assert (listed.notes, listed.operation_id) == ("Running late", "op_marker1")

    plain = await adapter.book(msgspec.structs.replace(command, operation_id=None, notes=None, start=booked.start))
    assert (plain.notes, plain.operation_id) == (None, None)
    assert next(a for a in _booked(rig) if a.id == int(plain.id)).notes_text is None


# ------------------------------------------------------------------------------------------------ late holds


async def test_a_hold_applied_late_within_patience_is_adopted_and_booked_once(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_latehold1")
    rig.fault(FaultKind.APPLY_LATE, "POST", HOLD, delay_ms=int(PATIENCE * 1000 / 3))
    booked = await adapter.book(command)
    assert (booked.status, booked.start, booked.operation_id) == (
        AppointmentStatus.BOOKED,
        command.start,
        "op_latehold1",
    )
    await asyncio.sleep(PATIENCE)
    assert [a.id for a in rig.emulator.appointments.values()] == [int(booked.id)]  # the late hold, booked
    assert rig.emulator.holds() == []
    assert _sent(rig, "POST", HOLD) == 1


async def test_a_hold_applied_after_patience_is_released_by_find_booking_and_the_slot_books_again(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_latehold2")
    elsewhere = await adapter._hold(int(command.practitioner_id), command.start + dt.timedelta(hours=2),
                                    command.start + dt.timedelta(hours=2, minutes=30))  # fmt: skip
    rig.fault(FaultKind.APPLY_LATE, "POST", HOLD, delay_ms=int(PATIENCE * 2000))
    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)
    assert caught.value.operation_id == "op_latehold2"
    await _until(lambda: len(rig.emulator.holds()) == 2)
    assert _sent(rig, "POST", HOLD) == 2  # the hold elsewhere, and this booking's once: never sent again
    with pytest.raises(SlotUnavailable):  # what the issue found: the late hold refuses every booking
        await adapter.book(msgspec.structs.replace(command, operation_id="op_other"))

    assert await adapter.find_booking(command) is None  # what the gateway's reconciler asks
    assert [h.id for h in rig.emulator.holds()] == [elsewhere.record.id]  # another slot's hold is left alone
    assert await adapter.find_booking(command) is None  # and asking again is harmless
    booked = await adapter.book(command)
    assert (booked.status, booked.start) == (AppointmentStatus.BOOKED, command.start)
    assert [a.id for a in _booked(rig)] == [int(booked.id)]


async def test_find_booking_finds_a_booking_and_leaves_other_patients_and_times_alone(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_found1")
    assert await adapter.find_booking(command) is None
    booked = await adapter.book(command)
    found = await adapter.find_booking(command)
    assert found is not None
    assert (found.id, found.operation_id) == (booked.id, "op_found1")
    assert await adapter.find_booking(msgspec.structs.replace(command, operation_id="op_never_sent")) is None
    later = msgspec.structs.replace(command, start=command.start + dt.timedelta(hours=1))
    assert await adapter.find_booking(later) is None
    assert [a.id for a in _booked(rig)] == [int(booked.id)]


# ------------------------------------------------------------------------------------------------ late book steps


async def test_a_book_step_applied_late_within_patience_is_adopted(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_latebook1")
    rig.fault(FaultKind.APPLY_LATE, "PUT", BOOK, delay_ms=int(PATIENCE * 1000 / 3))
    booked = await adapter.book(command)
    assert (booked.status, booked.operation_id) == (AppointmentStatus.BOOKED, "op_latebook1")
    await asyncio.sleep(PATIENCE)
    assert [a.id for a in _booked(rig)] == [int(booked.id)]
    assert rig.emulator.holds() == []
    assert _sent(rig, "PUT", BOOK) == 1


async def test_a_book_step_not_landed_within_patience_releases_the_hold_so_it_cannot_land_later(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_latebook2")
    rig.fault(FaultKind.APPLY_LATE, "PUT", BOOK, delay_ms=int(PATIENCE * 2000))
    with pytest.raises(Unavailable, match="nothing was booked"):
        await adapter.book(command)
    await rig.recorded("DELETE", HOLD)
    assert _sent(rig, "DELETE", HOLD) == 1
    await asyncio.sleep(PATIENCE * 2)  # the late book step arrives: its hold is gone
    assert rig.emulator.appointments == {}
    assert _sent(rig, "PUT", BOOK) == 1
    assert (await adapter.book(command)).status is AppointmentStatus.BOOKED


async def test_a_late_booking_is_found_by_its_marker_beside_the_patients_other_appointment_then(rig: Rig) -> None:
    """The book step lands after the gateway gave up and could not release the hold; meanwhile the clinic moved the
    same patient's earlier appointment (lower id, another operation's marker) to that very time."""
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_latebook3")
    other = await adapter.book(
        msgspec.structs.replace(command, start=command.start + dt.timedelta(days=1), operation_id="op_earlier")
    )
    rig.fault(FaultKind.APPLY_LATE, "PUT", BOOK, delay_ms=int(PATIENCE * 2500))
    rig.fault(FaultKind.ERROR_5XX, "DELETE", HOLD, count=10)
    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)
    assert caught.value.operation_id == "op_latebook3"
    rig.emulator.faults.clear()
    moved = rig.emulator.appointments[int(other.id)]
    length = moved.end_at - moved.start_at
    moved.start_at = command.start.astimezone(moved.start_at.tzinfo)
    moved.end_at = moved.start_at + length
    await _until(lambda: len(_booked(rig)) == 2)

    found = await adapter.find_booking(command)
    assert found is not None
    assert found.id != other.id
    assert (found.operation_id, found.start, found.status) == ("op_latebook3", command.start, AppointmentStatus.BOOKED)
    earlier = await adapter.find_booking(msgspec.structs.replace(command, operation_id="op_earlier"))
    assert earlier is not None
    assert earlier.id == other.id
    assert len(_booked(rig)) == 2  # find_booking books and cancels nothing


# ------------------------------------------------------------------------------------------------ race check


async def test_a_rival_check_that_cannot_run_withdraws_the_booking(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_race1")
    rig.fault(FaultKind.ERROR_5XX, "GET", HOLD, count=10, armed_by="POST")
    with pytest.raises(Unavailable, match="could not confirm the slot was free"):
        await adapter.book(command)
    await rig.recorded("DELETE", HOLD)
    assert _sent(rig, "DELETE", HOLD) == 1
    assert _sent(rig, "PUT", BOOK) == 0
    assert rig.emulator.appointments == {}
    rig.emulator.faults.clear()
    assert (await adapter.book(command)).status is AppointmentStatus.BOOKED


async def test_a_rival_check_and_release_that_both_fail_are_an_unknown_outcome_the_reconciler_settles(
    rig: Rig,
) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_race2")
    rig.fault(FaultKind.ERROR_5XX, "GET", HOLD, count=10, armed_by="POST")
    rig.fault(FaultKind.ERROR_5XX, "DELETE", HOLD, count=10)
    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)
    assert caught.value.operation_id == "op_race2"
    assert len(rig.emulator.holds()) == 1
    assert _sent(rig, "PUT", BOOK) == 0
    rig.emulator.faults.clear()
    assert await adapter.find_booking(command) is None
    assert rig.emulator.holds() == []
    assert (await adapter.book(command)).status is AppointmentStatus.BOOKED


async def test_a_later_rival_hold_yields_to_the_earlier_one(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_race3")
    start = command.start
    earlier = await adapter._hold(int(command.practitioner_id), start, start + dt.timedelta(minutes=30))
    original = adapter._overlapping
    calls = 0

    async def free_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return [] if calls == 1 else await original(*args, **kwargs)  # the pre-check ran before the rival held

    adapter._overlapping = free_first  # type: ignore[method-assign]
    with pytest.raises(SlotUnavailable):
        await adapter.book(command)
    assert [h.id for h in rig.emulator.holds()] == [earlier.record.id]


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("method", "prefix", "status", "shape"),
    [
        ("POST", HOLD, 422, {"errors": {"base": [QUOTING]}}),
        ("POST", HOLD, 409, {"error": QUOTING}),
        ("PUT", BOOK, 422, {"errors": {"base": [QUOTING]}}),
        ("PUT", BOOK, 400, {"error": QUOTING}),
    ],
    ids=["hold-422", "hold-409", "book-422", "book-400"],
)
async def test_a_refusal_quoting_the_patient_leaks_nothing_and_leaves_no_hold(
    rig: Rig, caplog: pytest.LogCaptureFixture, method: str, prefix: str, status: int, shape: dict[str, Any]
) -> None:
    adapter = rig.adapter()
    command = await _command(rig, adapter, "op_reject1")
    rig.fault(FaultKind.REJECT, method, prefix, status=status, message=QUOTING)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Rejected) as caught:
        await adapter.book(command)
    [refusal] = [e for e in rig.emulator.traffic.exchanges if e.status == status]
    assert msgspec.json.decode(refusal.response_body) == shape  # the emulator's own refusal shape
    error: AdapterError = caught.value
    said = " ".join(str(x) for x in (error, error.message, error.emr_message, vars(error)))
    for datum in PATIENT_DATA:
        assert datum not in said, said
        assert datum not in caplog.text
    assert error.emr_message in (f"HTTP {status}; fields: base", f"HTTP {status}")
    assert rig.emulator.holds() == []
    assert rig.emulator.appointments == {}


# ------------------------------------------------------------------------------------------------ late updates


async def test_a_move_applied_late_within_patience_is_adopted_and_not_sent_twice(rig: Rig) -> None:
    adapter = rig.adapter()
    booked = await adapter.book(await _command(rig, adapter, "op_move1"))
    rig.fault(FaultKind.APPLY_LATE, "PUT", f"{HOLD}/{booked.id}", delay_ms=int(PATIENCE * 1000 / 3))
    moved = await adapter.reschedule(
        RescheduleCommand(appointment_id=booked.id, start=booked.start + dt.timedelta(hours=1))
    )
    assert moved.start == booked.start + dt.timedelta(hours=1)
    assert _sent(rig, "PUT", f"{HOLD}/{booked.id}") == 1

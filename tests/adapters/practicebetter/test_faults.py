"""Issue 15 on Practice Better, over real HTTP: the gateway's marker in a session's `notes`, creates (sessions and
client records) that Practice Better applies after the gateway gave up are adopted once and never sent twice, a
rival session at the same time is never taken for ours, racers are refused by Practice Better's own 409 (there is no
post-write read that could fail), and an error body quoting a client leaves nothing of them anywhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.emulation import Fault, FaultKind
from adapters.errors import AdapterError, OutcomeUnknown, SlotUnavailable, Unsupported, WriteMismatch
from adapters.markers import marker
from adapters.practicebetter.adapter import PracticeBetterAdapter
from adapters.practicebetter.emulator import CompanyRec, SessionRec
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.commands import AppointmentQuery, BookCommand, CancelCommand, NewPatient, RescheduleCommand
from tests.adapters.practicebetter.conftest import PB
from tests.contract.conftest import PATIENCE

SESSIONS = "/consultant/sessions"
RECORDS = "/consultant/records"
MELBOURNE = ZoneInfo("Australia/Melbourne")
PATIENT_DATA = ("Jane Citizen", "jane.citizen@example.com", "+61 412 345 678", "0412345678", "1985-04-12")
QUOTING = "Jane Citizen (jane.citizen@example.com, +61 412 345 678, 0412345678, born 1985-04-12) is invalid"
WITHIN_PATIENCE_MS = int(PATIENCE * 1000 / 3)
AFTER_PATIENCE_MS = int(PATIENCE * 1000 * 2)


def _future(days: int, hour: int) -> dt.datetime:
    day = dt.datetime.now(MELBOURNE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=MELBOURNE)


def _op() -> str:
    return f"op_{uuid.uuid4().hex[:20]}"


async def _command(
    pb: PB, start: dt.datetime, *, adapter: PracticeBetterAdapter | None = None, **extra: Any
) -> BookCommand:
    practitioner, service, patient = await pb.ids(adapter)
    fields: dict[str, Any] = {"patient_id": patient, "practitioner_id": practitioner, "service_id": service}
    return BookCommand(**{**fields, "start": start, **extra})


def _stored(pb: PB) -> list[SessionRec]:
    return list(pb.emulator.sessions.values())


def _posts(pb: PB, path: str) -> int:
    return pb.requests("POST", path)


def _said(error: AdapterError) -> str:
    return " ".join(str(x) for x in (error, error.message, error.emr_message, vars(error)) if x)


# ---------------------------------------------------------------------------------------------- the marker


async def test_the_marker_is_written_stripped_for_callers_and_kept_when_the_session_moves(pb: PB) -> None:
    adapter = pb.adapter()
    op = _op()
    command = await _command(pb, _future(3, 10), notes="Bring the referral", operation_id=op)
    booked = await adapter.book(command)
    [sent] = [
        msgspec.json.decode(e.request_body) for e in pb.emulator.exchanges if e.method == "POST" and e.path == SESSIONS
    ]
    assert sent["notes"] == f"Bring the referral {marker(op)}"
    assert (booked.notes, booked.operation_id) == ("Bring the referral", op)
    read = await adapter.get_appointment(booked.id)
    [listed] = await adapter.list_appointments(AppointmentQuery(patient_id=command.patient_id))
    assert {(a.notes, a.operation_id) for a in (read, listed)} == {("Bring the referral", op)}

    # A move that repeats the notes the caller sees is a move, not a notes change; the marker stays.
    moved = await adapter.reschedule(
        RescheduleCommand(appointment_id=booked.id, start=_future(3, 14), notes="Bring the referral")
    )
    assert (moved.notes, moved.operation_id) == ("Bring the referral", op)
    assert pb.emulator.sessions[booked.id].notes == f"Bring the referral {marker(op)}"
    # Practice Better's API cannot change a session's notes: refused, and the marker is untouched.
    with pytest.raises(Unsupported):
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=_future(3, 15), notes="Other"))
    assert pb.emulator.sessions[booked.id].notes == f"Bring the referral {marker(op)}"


async def test_a_booking_without_an_operation_keeps_the_notes_as_given(pb: PB) -> None:
    booked = await pb.adapter().book(await _command(pb, _future(3, 11), notes="Plain"))
    assert (booked.notes, booked.operation_id) == ("Plain", None)
    assert pb.emulator.sessions[booked.id].notes == "Plain"


# ---------------------------------------------------------------------------------------------- late creates


def _with_a_rival(pb: PB, monkeypatch: pytest.MonkeyPatch) -> None:
    """The practice double-books the same client at the same time (`ignoreConflict`, as staff may) right after our
    marked create lands: a newer, unmarked session that a lookup by client, consultant and start alone would take."""
    original = pb.emulator.create_session

    def create_then_rival(company: CompanyRec, body: dict[str, Any]) -> SessionRec:
        made = original(company, body)
        if "[egw:" in str(body.get("notes") or ""):
            original(company, {**body, "notes": "booked at the front desk", "ignoreConflict": True})
        return made

    monkeypatch.setattr(pb.emulator, "create_session", create_then_rival)


async def test_a_late_create_is_adopted_by_its_marker_beside_the_same_clients_other_session(
    pb: PB, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = pb.adapter()
    op = _op()
    command = await _command(pb, _future(4, 9), adapter=adapter, operation_id=op)
    _with_a_rival(pb, monkeypatch)
    pb.emulator.faults.add(
        Fault(kind=FaultKind.APPLY_LATE, method="POST", path_prefix=SESSIONS, delay_ms=WITHIN_PATIENCE_MS)
    )
    booked = await adapter.book(command)
    [ours] = [s for s in _stored(pb) if s.notes == marker(op)]
    [rival] = [s for s in _stored(pb) if s.notes == "booked at the front desk"]
    assert rival.start == ours.start
    assert rival.id > ours.id  # the rival is listed first (newest first)
    assert (booked.id, booked.operation_id) == (ours.id, op)
    assert _posts(pb, SESSIONS) == 1
    found = await adapter.find_booking(command)
    assert found is not None
    assert found.id == ours.id
    # A command of no operation (unmarked) is not ours: the marked session belongs to another operation.
    plain = msgspec.structs.replace(command, operation_id=None)
    other = await adapter.find_booking(plain)
    assert other is not None
    assert other.id == rival.id


async def test_a_create_applied_after_patience_is_unknown_sent_once_and_found_by_the_reconciler(pb: PB) -> None:
    adapter = pb.adapter()
    op = _op()
    command = await _command(pb, _future(4, 11), adapter=adapter, operation_id=op)
    pb.emulator.faults.add(
        Fault(kind=FaultKind.APPLY_LATE, method="POST", path_prefix=SESSIONS, delay_ms=AFTER_PATIENCE_MS)
    )
    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)
    assert caught.value.operation_id == op
    assert await adapter.find_booking(command) is None  # not landed yet
    await asyncio.sleep(PATIENCE * 1.5)
    found = await adapter.find_booking(command)
    assert found is not None
    assert (found.start, found.operation_id) == (command.start, op)
    assert _posts(pb, SESSIONS) == 1
    assert [s.id for s in _stored(pb) if not s.cancelled] == [found.id]


@pytest.mark.parametrize("pb_emulator", [{"wall_zone": "America/New_York"}], indirect=True)
async def test_a_late_create_read_in_another_zone_is_found_by_its_marker_and_undone(pb: PB) -> None:
    """The account reads wall time in US Eastern, the location says Melbourne: the session lands hours away. Its
    marker finds it there: within patience it is verified and cancelled; after patience the reconciler's
    `find_booking` finds it (its start is not the command's: the reconciler must compare before adopting)."""
    adapter = pb.adapter(session_date_zone=None)
    within = await _command(pb, _future(4, 12), adapter=adapter, operation_id=_op())
    pb.emulator.faults.add(
        Fault(kind=FaultKind.APPLY_LATE, method="POST", path_prefix=SESSIONS, delay_ms=WITHIN_PATIENCE_MS)
    )
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(within)
    assert caught.value.undone
    assert dict(caught.value.differences)["start"] != 0
    assert (pb.emulator.stats().appointments, pb.emulator.stats().active_appointments) == (1, 0)

    after = await _command(pb, _future(5, 12), adapter=adapter, operation_id=_op())
    pb.emulator.faults.add(
        Fault(kind=FaultKind.APPLY_LATE, method="POST", path_prefix=SESSIONS, delay_ms=AFTER_PATIENCE_MS)
    )
    with pytest.raises(OutcomeUnknown):
        await adapter.book(after)
    await asyncio.sleep(PATIENCE * 1.5)
    found = await adapter.find_booking(after)
    assert found is not None
    assert found.operation_id == after.operation_id
    assert found.start != after.start
    assert _posts(pb, SESSIONS) == 2  # one per booking, never a second send


async def test_find_booking_never_takes_another_operations_session(pb: PB) -> None:
    adapter = pb.adapter()
    theirs = await adapter.book(await _command(pb, _future(4, 15), adapter=adapter, operation_id=_op()))
    mine = await _command(pb, _future(4, 15), adapter=adapter, operation_id=_op())
    assert await adapter.find_booking(mine) is None
    again = await adapter.find_booking(msgspec.structs.replace(mine, operation_id=theirs.operation_id))
    assert again is not None
    assert again.id == theirs.id


async def test_a_cancelled_booking_is_not_found(pb: PB) -> None:
    adapter = pb.adapter()
    command = await _command(pb, _future(4, 16), adapter=adapter, operation_id=_op())
    booked = await adapter.book(command)
    await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.OTHER))
    assert await adapter.find_booking(command) is None


# ---------------------------------------------------------------------------------------------- client records


async def test_a_client_create_applied_late_is_adopted_and_never_sent_twice(pb: PB) -> None:
    adapter = pb.adapter()
    pb.emulator.faults.add(
        Fault(kind=FaultKind.APPLY_LATE, method="POST", path_prefix=RECORDS, delay_ms=WITHIN_PATIENCE_MS)
    )
    created = await adapter.create_patient(NewPatient(first_name="Late", last_name="Client", email="late@example.com"))
    assert _posts(pb, RECORDS) == 1
    assert [r.id for r in pb.emulator.records.values() if r.email == "late@example.com"] == [created.id]


async def test_a_client_create_applied_after_patience_is_unknown_then_found_by_e_mail(pb: PB) -> None:
    adapter = pb.adapter()
    new = NewPatient(first_name="Later", last_name="Client", email="later@example.com")
    pb.emulator.faults.add(
        Fault(kind=FaultKind.APPLY_LATE, method="POST", path_prefix=RECORDS, delay_ms=AFTER_PATIENCE_MS)
    )
    with pytest.raises(OutcomeUnknown):
        await adapter.create_patient(new)
    assert _posts(pb, RECORDS) == 1
    await asyncio.sleep(PATIENCE * 1.5)
    again = await adapter.create_patient(new)  # the caller's retry: the duplicate e-mail is refused, the client found
    assert [r.id for r in pb.emulator.records.values() if r.email == "later@example.com"] == [again.id]


# ---------------------------------------------------------------------------------------------- racers


async def test_racers_are_refused_by_practice_better_with_no_read_after_the_write(pb: PB) -> None:
    """No post-write race check to fail: Practice Better's own 409 (`ignoreConflict: false`) refuses the others,
    and a booking reads nothing after its create, so reads failing from then on change nothing."""
    adapter = pb.adapter()
    first = await _command(pb, _future(6, 10), adapter=adapter)
    racers = [first]
    for n in range(3):
        client = await adapter.create_patient(
            NewPatient(first_name=f"Racer{n}", last_name="Test", email=f"racer{n}@example.com")
        )
        racers.append(msgspec.structs.replace(first, patient_id=client.id))
    reads = pb.requests("GET", SESSIONS)
    pb.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, method="GET", status=503, count=1000, armed_by="POST"))
    results = await asyncio.gather(*(adapter.book(c) for c in racers), return_exceptions=True)
    pb.emulator.faults.clear()
    booked = [r for r in results if isinstance(r, Appointment)]
    refused = [r for r in results if isinstance(r, SlotUnavailable)]
    assert (len(booked), len(refused)) == (1, 3), results
    assert {r.emr_status for r in refused} == {409}
    assert pb.requests("GET", SESSIONS) == reads
    assert [s.id for s in _stored(pb) if not s.cancelled] == [booked[0].id]
    assert (await adapter.get_appointment(booked[0].id)).status is AppointmentStatus.BOOKED


# ---------------------------------------------------------------------------------------------- error bodies


async def test_the_emulator_refuses_in_practice_better_s_shape(pb: PB) -> None:
    adapter = pb.adapter()
    await adapter.list_practitioners()  # mints a token
    token = next(iter(pb.emulator.tokens))
    pb.emulator.faults.add(Fault(kind=FaultKind.REJECT, method="POST", message=QUOTING))
    answer = await pb.http.post(f"{pb.base_url}{SESSIONS}", json={}, headers={"Authorization": f"Bearer {token}"})
    assert (answer.status_code, answer.json()) == (400, {"message": QUOTING})


@pytest.mark.parametrize("status", [400, 409, 422])
@pytest.mark.parametrize("path", [SESSIONS, RECORDS])
async def test_a_refusal_quoting_a_client_leaks_nothing(
    pb: PB, status: int, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = pb.adapter()
    command = await _command(pb, _future(7, 10), adapter=adapter)
    pb.emulator.faults.add(
        Fault(kind=FaultKind.REJECT, method="POST", path_prefix=path, status=status, message=QUOTING, count=5)
    )
    new = NewPatient(first_name="Jane", last_name="Citizen", email="new.jane@example.com")
    write = adapter.book(command) if path == SESSIONS else adapter.create_patient(new)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AdapterError) as caught:
        await write
    assert caught.value.emr_status == status
    said = _said(caught.value)
    for datum in PATIENT_DATA:
        assert datum not in said, (datum, said)
        assert datum not in caplog.text, datum

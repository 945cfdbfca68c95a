"""Issue 15 on SimplePractice, over real HTTP against the emulator: a create applied after the gateway gave up is
adopted (by the operation's marker in `memo`), never sent twice; a race check that cannot run withdraws the write;
SimplePractice's JSON:API error prose (which can quote a client) reaches no message and no log."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.errors import AdapterError, OutcomeUnknown, SlotUnavailable, Unavailable
from adapters.markers import marker
from adapters.simplepractice.adapter import RACE_NOTE
from adapters.simplepractice.client import error_for
from adapters.simplepractice.emulator import AppointmentRec
from schemas.appointments import AppointmentStatus
from schemas.commands import AppointmentQuery, BookCommand, NewPatient, RescheduleCommand
from tests.adapters.simplepractice.conftest import PATIENCE, ZONE, Env, booking

APPOINTMENTS = "/frontend/appointments"
CLIENT_DATA = ("John Doe", "john@example.com", "(212) 555-0147", "2125550147", "1979-02-03")
QUOTING = "John Doe (john@example.com, (212) 555-0147, 2125550147, born 1979-02-03) already has an appointment"


def at(days: int, hour: int) -> dt.datetime:
    return dt.datetime.combine(dt.date.today() + dt.timedelta(days=days), dt.time(hour), ZoneInfo(ZONE))


def active(env: Env) -> list[AppointmentRec]:
    with env.emulator._lock:
        return [a for a in env.emulator.appointments.values() if a.active()]


def posts(env: Env) -> int:
    return sum(1 for x in env.emulator.exchanges if x.method == "POST" and x.path == APPOINTMENTS)


async def fault(env: Env, kind: str, *, method: str = "POST", count: int = 1, **options: object) -> None:
    await env.control(
        "faults", {"kind": kind, "method": method, "path_prefix": APPOINTMENTS, "count": count, **options}
    )


async def operation(env: Env, start: dt.datetime, operation_id: str, notes: str | None = None) -> BookCommand:
    command = await booking(env.adapter(), start)
    return msgspec.structs.replace(command, operation_id=operation_id, notes=notes)


def other_booking(env: Env, command: BookCommand, *, memo: str | None, created: dt.datetime) -> AppointmentRec:
    """The same client's booking with the same clinician at the same minute, put straight into SimplePractice (a
    caller who retried another way), created at `created`."""
    em = env.emulator
    start = command.start.astimezone(dt.UTC)
    with em._lock:
        record = AppointmentRec(
            em._new_id(70_000_000), command.patient_id, command.practitioner_id, next(iter(em.offices)), "90791",
            start, start + dt.timedelta(minutes=50), created, created, memo,
        )  # fmt: skip
        em.appointments[record.id] = record
    return record


async def until_posted(env: Env) -> None:
    for _ in range(500):
        if posts(env):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the create never reached the emulator")


# ---------------------------------------------------------------------------------------------- the marker


async def test_the_marker_is_written_in_memo_stripped_for_callers_and_kept_across_a_notes_change(env: Env) -> None:
    adapter = env.adapter()
    booked = await adapter.book(await operation(env, at(3, 10), "op_marker1", notes="Bring the intake forms"))

    assert (booked.notes, booked.operation_id) == ("Bring the intake forms", "op_marker1")
    record = env.emulator.appointments[booked.id]
    assert record.memo == f"Bring the intake forms {marker('op_marker1')}"
    read = await adapter.get_appointment(booked.id)
    assert (read.notes, read.operation_id) == ("Bring the intake forms", "op_marker1")

    moved = await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=at(3, 14), notes="Running late"))
    assert (moved.notes, moved.operation_id) == ("Running late", "op_marker1")
    assert record.memo == f"Running late {marker('op_marker1')}"
    [listed] = [
        a for a in await adapter.list_appointments(AppointmentQuery(patient_id=booked.patient_id)) if a.id == booked.id
    ]
    assert (listed.notes, listed.operation_id) == ("Running late", "op_marker1")


async def test_a_booking_without_notes_carries_only_the_marker_and_one_without_an_operation_none(env: Env) -> None:
    adapter = env.adapter()
    marked = await adapter.book(await operation(env, at(3, 10), "op_marker2"))
    assert env.emulator.appointments[marked.id].memo == marker("op_marker2")
    assert marked.notes is None

    plain = await adapter.book(await booking(adapter, at(3, 14)))
    assert env.emulator.appointments[plain.id].memo is None
    assert plain.operation_id is None


# ---------------------------------------------------------------------------------------------- late creates


async def test_a_late_create_is_adopted_once_by_its_marker(env: Env) -> None:
    adapter = env.adapter()
    command = await operation(env, at(4, 10), "op_late1", notes="first visit")
    await fault(env, "apply_late", delay_ms=int(PATIENCE * 1000 / 3))

    booked = await adapter.book(command)

    assert (booked.operation_id, booked.notes, booked.start) == ("op_late1", "first visit", command.start)
    await asyncio.sleep(PATIENCE)
    assert [a.id for a in active(env)] == [booked.id]
    assert posts(env) == 1


async def test_a_late_create_is_not_confused_with_the_same_clients_other_booking(env: Env) -> None:
    """While the create's answer is missing, the same client gets another booking at that minute with that clinician
    (another operation, created first). The adapter takes only the booking carrying its own marker; the other came
    first, so the race rule withdraws ours and the other stays, alone and untouched."""
    adapter = env.adapter()
    command = await operation(env, at(4, 11), "op_late2")
    await fault(env, "apply_late", delay_ms=int(PATIENCE * 1000 / 3))

    task = asyncio.create_task(adapter.book(command))
    await until_posted(env)
    other = other_booking(
        env, command, memo=marker("op_someone_else"), created=env.emulator._now() - dt.timedelta(seconds=5)
    )
    with pytest.raises(SlotUnavailable):
        await task

    assert [a.id for a in active(env)] == [other.id]
    [mine] = [a for a in env.emulator.appointments.values() if a.id != other.id]
    assert mine.memo == marker("op_late2")
    assert RACE_NOTE in (mine.cancel_reason or "")
    assert other.cancel_reason is None
    assert posts(env) == 1


async def test_a_create_landing_after_patience_is_unknown_and_find_booking_picks_it_by_marker(env: Env) -> None:
    adapter = env.adapter()
    command = await operation(env, at(4, 12), "op_late3")
    await fault(env, "apply_late", delay_ms=int(PATIENCE * 1000 * 2))

    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)
    assert caught.value.operation_id == "op_late3"
    assert await adapter.find_booking(command) is None  # not landed yet

    await asyncio.sleep(PATIENCE * 1.5)
    other = other_booking(env, command, memo=marker("op_someone_else"), created=env.emulator._now())
    found = await adapter.find_booking(command)
    assert found is not None
    assert found.id != other.id
    assert (found.operation_id, found.start, found.status) == ("op_late3", command.start, AppointmentStatus.BOOKED)
    assert await adapter.find_booking(msgspec.structs.replace(command, operation_id="op_never_sent")) is None
    assert posts(env) == 1


async def test_find_booking_takes_an_unmarked_booking_only_when_none_at_that_minute_is_marked(env: Env) -> None:
    adapter = env.adapter()
    command = await operation(env, at(5, 10), "op_find1")
    unmarked = other_booking(env, command, memo="walk-in", created=env.emulator._now())
    found = await adapter.find_booking(command)
    assert found is not None
    assert found.id == unmarked.id  # nothing there is marked: SimplePractice may be dropping `memo`

    other_booking(env, command, memo=marker("op_someone_else"), created=env.emulator._now())
    assert await adapter.find_booking(command) is None  # `memo` is kept, so ours would carry the marker
    plain = await adapter.find_booking(msgspec.structs.replace(command, operation_id=None))
    assert plain is not None
    assert plain.id == unmarked.id


class DropsMemo(httpx.AsyncBaseTransport):
    """Between the adapter and the emulator: removes `memo` from appointment creates, as a SimplePractice that
    ignores the attribute would (UNCONFIRMED whether it keeps it)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == APPOINTMENTS:
            body = msgspec.json.decode(await request.aread())
            body["data"]["attributes"].pop("memo", None)
            request = httpx.Request(
                "POST", request.url, headers=[(k, v) for k, v in request.headers.items() if k != "content-length"],
                content=msgspec.json.encode(body),
            )  # fmt: skip
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_late_create_is_still_adopted_when_simplepractice_drops_memo(env: Env) -> None:
    async with httpx.AsyncClient(transport=DropsMemo(), timeout=5) as http:
        adapter = env.adapter(http=http)
        command = await operation(env, at(5, 12), "op_nomemo")
        await fault(env, "apply_late", delay_ms=int(PATIENCE * 1000 / 3))
        booked = await adapter.book(command)
    assert booked.operation_id is None
    assert env.emulator.appointments[booked.id].memo is None
    await asyncio.sleep(PATIENCE)
    assert [a.id for a in active(env)] == [booked.id]
    assert posts(env) == 1


# ---------------------------------------------------------------------------------------------- race check fails


async def test_a_booking_whose_race_check_cannot_run_is_withdrawn(env: Env) -> None:
    adapter = env.adapter()
    command = await operation(env, at(6, 10), "op_race1")
    await fault(env, "error_5xx", method="GET", status=503, count=1000, armed_by="POST")

    with pytest.raises(Unavailable, match="could not confirm the slot was free; the booking was withdrawn"):
        await adapter.book(command)

    assert active(env) == []
    [record] = env.emulator.appointments.values()
    assert RACE_NOTE in (record.cancel_reason or "")


async def test_a_withdrawal_that_fails_too_is_unknown_with_the_operation(env: Env) -> None:
    adapter = env.adapter()
    command = await operation(env, at(6, 11), "op_race2")
    await fault(env, "error_5xx", method="GET", status=503, count=1000, armed_by="POST")
    await fault(env, "error_5xx", method="PATCH", status=503, count=1000)

    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(command)

    assert caught.value.operation_id == "op_race2"
    [record] = active(env)  # still there, and said so: a person must look
    assert record.id in caught.value.message


async def test_a_move_whose_race_check_cannot_run_is_moved_back(env: Env) -> None:
    adapter = env.adapter()
    booked = await adapter.book(await operation(env, at(6, 12), "op_race3", notes="as booked"))
    await fault(env, "error_5xx", method="GET", status=503, count=1000, armed_by="PATCH")

    with pytest.raises(Unavailable, match="could not confirm the new slot was free; the appointment was moved back"):
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=at(6, 15), notes="moved"))

    [record] = active(env)
    assert (record.id, record.start) == (booked.id, booked.start)
    assert record.memo == f"as booked {marker('op_race3')}"


async def test_racers_whose_race_check_cannot_run_leave_at_most_one(env: Env) -> None:
    adapter = env.adapter()
    first = await operation(env, at(7, 10), "op_racer0")
    racers = [first]
    for n in range(1, 4):
        client = await adapter.create_patient(NewPatient(first_name=f"Racer{n}", last_name="Test"))
        racers.append(msgspec.structs.replace(first, patient_id=client.id, operation_id=f"op_racer{n}"))
    await fault(env, "error_5xx", method="GET", status=503, count=1000, armed_by="POST")

    results = await asyncio.gather(*(adapter.book(c) for c in racers), return_exceptions=True)

    assert len(active(env)) <= 1, results
    assert sum(1 for r in results if not isinstance(r, BaseException)) <= 1, results


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_a_refusal_quoting_a_client_leaks_nothing(
    env: Env, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = env.adapter()
    command = await booking(adapter, at(8, 10))
    caplog.set_level(logging.DEBUG)
    failures: list[AdapterError] = []
    for method, path, call in (
        ("POST", APPOINTMENTS, adapter.book(command)),
        ("POST", "/frontend/clients", adapter.create_patient(NewPatient(first_name="John", last_name="Doe"))),
        ("GET", APPOINTMENTS, adapter.list_appointments(AppointmentQuery(patient_id=command.patient_id))),
    ):
        await env.control(
            "faults", {"kind": "reject", "method": method, "path_prefix": path, "status": status, "message": QUOTING}
        )
        with pytest.raises(AdapterError) as caught:
            await call
        failures.append(caught.value)
        await env.http.delete(f"{env.base_url}/_emulator/faults")

    raw = [x for x in env.emulator.exchanges if x.status == status]
    assert raw
    assert all(b"John Doe" in x.response_body for x in raw)  # the emulator did quote the client
    for failure in failures:
        assert failure.emr_status == status
        assert failure.emr_message == f"HTTP {status}"
        said = " ".join(str(x) for x in (failure, failure.message, failure.emr_message, vars(failure)))
        for datum in (*CLIENT_DATA, "already has"):
            assert datum not in said, (datum, said)
            assert datum not in caplog.text, (datum, caplog.text)


def test_error_pointers_are_kept_only_when_shaped_like_names() -> None:
    body = {
        "errors": [
            {"status": "422", "code": "taken", "title": QUOTING, "source": {"pointer": "/data/attributes/startTime"}},
            {"status": "422", "code": "John Doe is busy", "source": {"pointer": "/data/attributes/John Doe"}},
            {"status": "422", "detail": QUOTING, "source": {"parameter": "filter[timeRange]"}},
            {"status": "422", "source": {"parameter": "john@example.com"}},
        ]
    }
    response = httpx.Response(
        422, content=msgspec.json.encode(body), headers={"content-type": "application/vnd.api+json"}
    )
    failure = error_for(response)
    assert failure.emr_message == "HTTP 422; code taken; fields: /data/attributes/startTime, filter[timeRange]"
    assert "John" not in failure.message
    assert "john@" not in failure.message

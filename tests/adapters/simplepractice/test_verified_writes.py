"""Every booking and reschedule is checked against what SimplePractice stored: its answer when that is the whole
record, else a read-back. No public capture shows any clinician-app write, so this is what keeps a wrong guess from
leaving a client booked at a time nobody asked for."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapters.errors import ContractChanged, WriteMismatch
from adapters.simplepractice.emulator import AppointmentRec
from schemas.appointments import Appointment, AppointmentStatus
from schemas.commands import RescheduleCommand
from schemas.verify import ProbeStatus
from tests.adapters.simplepractice.conftest import ZONE, Env, booking

APPOINTMENTS = "/frontend/appointments"


def at(days: int, hour: int) -> dt.datetime:
    return dt.datetime.combine(dt.date.today() + dt.timedelta(days=days), dt.time(hour), ZoneInfo(ZONE))


def active(env: Env) -> list[AppointmentRec]:
    with env.emulator._lock:
        return [a for a in env.emulator.appointments.values() if a.active()]


async def fault(env: Env, kind: str, *, method: str = "POST", count: int = 1, **options: object) -> None:
    await env.control(
        "faults", {"kind": kind, "method": method, "path_prefix": APPOINTMENTS, "count": count, **options}
    )


async def booked(env: Env) -> Appointment:
    adapter = env.adapter()
    done = await adapter.book(await booking(adapter, at(4, 10)))
    assert done.start == at(4, 10)
    return done


# ---------------------------------------------------------------------------------------------- MISSTORE


async def test_a_booking_stored_an_hour_off_is_cancelled_and_names_the_zone_setting(env: Env) -> None:
    adapter = env.adapter()
    command = await booking(adapter, at(3, 12))
    await fault(env, "misstore", shift_minutes=60)

    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)

    assert caught.value.differences == [("start", 60), ("end", 60)]
    assert caught.value.undone
    assert "time_zone" in caught.value.settings["start"]
    assert "time_zone" in caught.value.message
    assert active(env) == []  # nothing at the misread time, nothing at the asked one
    [record] = env.emulator.appointments.values()
    assert record.start == command.start + dt.timedelta(hours=1)
    assert "Cancelled automatically by the EMR Gateway" in (record.cancel_reason or "")


async def test_a_booking_stored_with_another_length_is_cancelled(env: Env) -> None:
    adapter = env.adapter()
    await fault(env, "misstore", length_minutes=5)
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(await booking(adapter, at(3, 12)))
    assert caught.value.differences == [("end", 5 - 50)]
    assert active(env) == []


@pytest.mark.parametrize("misreads", [1, 2, 50], ids=["move-only", "move-and-way-back", "systematic"])
async def test_a_reschedule_stored_off_is_moved_back(env: Env, misreads: int) -> None:
    original = await booked(env)
    await fault(env, "misstore", method="PATCH", count=misreads, shift_minutes=-180)

    with pytest.raises(WriteMismatch) as caught:
        await env.adapter().reschedule(RescheduleCommand(appointment_id=original.id, start=at(5, 14)))

    assert caught.value.undone, caught.value.message
    assert ("start", -180) in caught.value.differences
    [record] = active(env)
    assert (record.id, record.start, record.end) == (original.id, original.start, original.end)
    again = await env.adapter().get_appointment(original.id)
    assert (again.status, again.start, again.end) == (AppointmentStatus.BOOKED, original.start, original.end)


async def test_a_correct_reschedule_is_not_undone(env: Env) -> None:
    original = await booked(env)
    moved = await env.adapter().reschedule(RescheduleCommand(appointment_id=original.id, start=at(5, 14)))
    assert (moved.start, moved.end - moved.start) == (at(5, 14), dt.timedelta(minutes=50))
    [record] = active(env)
    assert record.start == at(5, 14)


# ---------------------------------------------------------------------------------------------- answer or read-back


def reads_of(env: Env, appointment_id: str) -> int:
    return sum(1 for x in env.emulator.exchanges if x.method == "GET" and x.path == f"{APPOINTMENTS}/{appointment_id}")


async def test_a_whole_answer_is_compared_without_a_read_back(env: Env) -> None:
    done = await booked(env)
    assert reads_of(env, done.id) == 0


@pytest.mark.parametrize("dropped", ["endTime", "attributes"])
async def test_an_answer_that_is_not_the_whole_record_is_read_back(env: Env, dropped: str) -> None:
    await fault(env, "reshape", drop_field=dropped)
    done = await booked(env)
    assert reads_of(env, done.id) == 1
    assert done.end - done.start == dt.timedelta(minutes=50)


class NoContentToPatch(httpx.AsyncBaseTransport):
    """Between the adapter and the emulator: a PATCH answered `204 No Content`, as JSON:API allows for an update."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method != "PATCH" or response.status_code != 200:
            return response
        await response.aread()
        return httpx.Response(204, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_move_answered_without_content_is_read_back_and_verified(env: Env) -> None:
    original = await booked(env)
    async with httpx.AsyncClient(transport=NoContentToPatch(), timeout=5) as http:
        adapter = env.adapter(http=http)
        moved = await adapter.reschedule(RescheduleCommand(appointment_id=original.id, start=at(5, 14)))
        assert moved.start == at(5, 14)
        assert reads_of(env, original.id) == 2  # before the move, and the read-back after it

        await fault(env, "misstore", method="PATCH", shift_minutes=45)
        with pytest.raises(WriteMismatch) as caught:
            await adapter.reschedule(RescheduleCommand(appointment_id=original.id, start=at(6, 9)))
    assert ("start", 45) in caught.value.differences
    [record] = active(env)
    assert record.start == at(5, 14)


async def test_a_read_back_still_sees_a_misstore(env: Env) -> None:
    adapter = env.adapter()
    command = await booking(adapter, at(3, 12))
    await fault(env, "reshape", drop_field="endTime")
    await fault(env, "misstore", shift_minutes=30)
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)
    assert ("start", 30) in caught.value.differences
    assert active(env) == []


async def test_an_answer_naming_no_record_is_reconciled_not_sent_again(env: Env) -> None:
    await fault(env, "reshape", drop_field="id")
    done = await booked(env)
    posts = [x for x in env.emulator.exchanges if x.method == "POST" and x.path == APPOINTMENTS]
    assert len(posts) == 1
    assert [a.id for a in active(env)] == [done.id]


async def test_a_record_that_does_not_name_its_client_fails_verification(env: Env) -> None:
    """The `client` relationship is thin evidence: if SimplePractice names the client another way, no booking can be
    confirmed, so each is undone and reported rather than trusted."""
    adapter = env.adapter()
    command = await booking(adapter, at(3, 12))
    await fault(env, "reshape", method="GET", drop_field="client", count=1000)
    await env.control("faults", {"kind": "reshape", "method": "POST", "drop_field": "client", "count": 1})
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)
    assert caught.value.differences == [("patient", None)]
    assert active(env) == []


# ---------------------------------------------------------------------------------------------- locations verify


async def test_verify_passes_on_the_emulator(env: Env) -> None:
    await booked(env)
    report = await env.adapter().verify()
    assert report.ok, [p for p in report.probes if p.status is ProbeStatus.FAILED]
    by_name = {p.name: p for p in report.probes}
    assert {"clients", "client read", "appointment fields"} <= set(by_name)
    assert all(p.status is ProbeStatus.OK for p in by_name.values()), by_name
    assert by_name["appointment fields"].detail == "1 appointment(s) name their end, clinician and client"


async def test_verify_names_a_field_the_emr_no_longer_sends(env: Env) -> None:
    adapter = env.adapter()
    await env.control("faults", {"kind": "reshape", "drop_field": "firstName", "count": 1000})
    with pytest.raises(ContractChanged) as caught:
        await adapter.list_practitioners()
    assert caught.value.path == "$.data[0].attributes.firstName"

    report = await adapter.verify()
    assert not report.ok
    failed = {p.name: p for p in report.probes if p.status is ProbeStatus.FAILED}
    assert failed["practitioners"].field_path == "$.data[0].attributes.firstName"
    assert failed["practitioners"].seen == "missing required field"
    assert failed["clients"].field_path == "$.data[0].attributes.firstName"


async def test_verify_reports_appointments_that_do_not_name_their_client(env: Env) -> None:
    await booked(env)
    await fault(env, "reshape", method="GET", drop_field="client", count=1000)
    report = await env.adapter().verify()
    assert not report.ok
    [failed] = [p for p in report.probes if p.status is ProbeStatus.FAILED]
    assert (failed.name, failed.field_path) == ("appointment fields", "$.data[].relationships.client")
    assert failed.seen == "missing on 1 of 1 appointment(s)"

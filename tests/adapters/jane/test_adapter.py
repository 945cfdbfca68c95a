"""Jane-specific behaviour over real HTTP: the two-step booking and its released hold, the staff session and its
CSRF token, the openings endpoint's 7-day limit, holds that lapse, location isolation, the change feed."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.emulation import FaultKind
from adapters.errors import AuthFailed, NotFound, Unavailable
from schemas.appointments import AppointmentStatus
from schemas.commands import AvailabilityQuery
from tests.adapters.jane.conftest import Rig


async def test_a_failed_book_step_releases_the_hold(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter)
    rig.fault(FaultKind.ERROR_5XX, "PUT", "/admin/api/v3/appointments/")
    with pytest.raises(Unavailable):
        await adapter.book(command)
    await rig.recorded("DELETE", "/admin/api/v2/appointments/")
    methods = [(e.method, e.path.split("/")[-1], e.status) for e in rig.emulator.traffic.exchanges if e.method != "GET"]
    assert [m for m, _, _ in methods[-3:]] == ["POST", "PUT", "DELETE"]  # hold, failed book, release
    assert rig.emulator.holds() == []
    assert rig.emulator.stats().appointments == 0
    booked = await adapter.book(command)  # the slot is free again
    assert booked.status is AppointmentStatus.BOOKED


async def test_two_steps_reserved_then_booked_with_offsets_and_the_browser_tab(rig: Rig) -> None:
    adapter = rig.adapter()
    booked = await adapter.book(await rig.command(adapter))
    writes = [e for e in rig.emulator.traffic.exchanges if e.method in ("POST", "PUT") and "appointments" in e.path]
    hold_request = msgspec.json.decode(writes[0].request_body)
    assert hold_request["book"] is False
    assert hold_request["browser_tab_id"] == adapter.tab
    assert hold_request["appointment"]["start_at"].endswith(("+10:00", "+11:00"))  # Melbourne wall time with offset
    assert msgspec.json.decode(writes[0].response_body)["state"] == "reserved"
    assert writes[1].path == f"/admin/api/v3/appointments/{booked.id}/book"
    assert msgspec.json.decode(writes[1].response_body)["state"] == "booked"
    assert all(e.request_header("x-requested-with") == "XMLHttpRequest" for e in writes)


async def test_an_expired_session_is_auth_failed_everywhere(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter)
    rig.emulator.expire_sessions()
    for attempt in (adapter.check(), adapter.book(command), adapter.get_appointment("5001")):
        with pytest.raises(AuthFailed) as caught:
            await attempt
        assert "the Jane session must be renewed" in caught.value.message
    fresh = rig.adapter()
    with pytest.raises(AuthFailed, match="must be renewed"):
        await fresh.check()


async def test_a_rotated_csrf_token_is_read_again(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter)
    rig.emulator.rotate_csrf()
    booked = await adapter.book(command)
    assert booked.status is AppointmentStatus.BOOKED
    refused = [e for e in rig.emulator.traffic.exchanges if e.status == 422]
    assert len(refused) == 1  # the stale token, once; the write was not applied then


async def test_availability_beyond_seven_days_is_split(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter, days_ahead=1)
    start = command.start.replace(hour=0)
    query = AvailabilityQuery(
        practitioner_id=command.practitioner_id,
        service_id=command.service_id,
        start_from=start,
        start_to=start + dt.timedelta(days=10),
    )
    slots = await adapter.availability(query)
    days = {s.start.astimezone(ZoneInfo(rig.seed.time_zone)).date() for s in slots}
    assert len(days) == 10
    calls = [e for e in rig.emulator.traffic.exchanges if e.path == "/api/v2/openings"]
    assert len(calls) == 2
    assert all(e.status == 200 for e in calls)

    too_long = await rig.http.get(
        f"{rig.base_url}/api/v2/openings",
        params={"location_id": "1", "treatment_id": command.service_id, "start_date": "2030-01-01", "num_days": "8"},
    )
    assert too_long.status_code == 422
    no_location = await rig.http.get(
        f"{rig.base_url}/api/v2/openings", params={"treatment_id": command.service_id, "start_date": "2030-01-01"}
    )
    assert no_location.status_code == 404


async def test_an_unbooked_hold_lapses_and_frees_the_slot(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter)
    hold = await adapter._hold(int(command.practitioner_id), command.start, command.start + dt.timedelta(minutes=30))
    assert [h.id for h in rig.emulator.holds()] == [hold.record.id]
    rig.clock.now += 601
    assert rig.emulator.holds() == []
    with pytest.raises(NotFound):
        await adapter.get_appointment(str(hold.record.id))
    assert (await adapter.book(command)).status is AppointmentStatus.BOOKED


async def test_cancel_of_a_hold_is_refused_by_the_emulator(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter)
    hold = await adapter._hold(int(command.practitioner_id), command.start, command.start + dt.timedelta(minutes=30))
    token = await adapter.client.csrf_token()
    response = await rig.http.put(
        f"{rig.base_url}/admin/api/v2/appointments/{hold.record.id}/cancel",
        content=b'{"cancelled_reason":"Other","browser_tab_id":"x"}',
        headers={**adapter.client._headers, "X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert response.status_code == 422


async def test_another_locations_appointment_is_not_found(rig: Rig) -> None:
    first, second = rig.adapter(0), rig.adapter(1)
    booked = await first.book(await rig.command(first))
    with pytest.raises(NotFound):
        await second.get_appointment(booked.id)
    assert await second.list_locations() != await first.list_locations()


async def test_changes_since_reports_booked_appointments_and_their_patients(rig: Rig) -> None:
    adapter = rig.adapter()
    start = await adapter.changes_since(None)
    assert (start.patients, start.appointments) == ([], [])
    rig.clock.now += 5
    booked = await adapter.book(await rig.command(adapter))
    changes = await adapter.changes_since(start.cursor)
    assert [a.id for a in changes.appointments] == [booked.id]
    assert [p.id for p in changes.patients] == [booked.patient_id]
    assert changes.cursor >= start.cursor

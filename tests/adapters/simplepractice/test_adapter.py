"""SimplePractice-specific behaviour over real HTTP: the emulator on loopback, the adapter built as the gateway does."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.errors import AuthFailed, InvalidReference, NotFound, RateLimited, Rejected
from schemas.appointments import AppointmentStatus
from schemas.commands import AppointmentQuery, AvailabilityQuery, NewPatient
from schemas.patients import PatientQuery
from tests.adapters.simplepractice.conftest import ZONE, Env, booking


def next_dst_change(zone: ZoneInfo) -> dt.date:
    """The first local day from tomorrow whose UTC offset differs from the day before."""
    day = dt.datetime.now(zone).date() + dt.timedelta(days=1)
    for _ in range(400):
        before = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), zone).utcoffset()
        if dt.datetime.combine(day, dt.time(12), zone).utcoffset() != before:
            return day
        day += dt.timedelta(days=1)
    raise AssertionError("no DST change within a year")


async def test_services_are_cpt_codes_and_book_by_code(env: Env) -> None:
    adapter = env.adapter()
    [service] = await adapter.list_services()
    assert (service.id, service.code, service.name, service.duration_minutes) == (
        "90791",
        "90791",
        "Psychiatric Diagnostic Evaluation",
        50,
    )
    [clinician] = await adapter.list_practitioners()
    assert clinician.email == "therapist@example.com"
    [office] = await adapter.list_locations()
    assert office.name == "Main Street Office"

    start = dt.datetime.combine(dt.date.today() + dt.timedelta(days=3), dt.time(10), ZoneInfo(ZONE))
    booked = await adapter.book(await booking(adapter, start))
    assert (booked.service_id, booked.status, booked.end - booked.start) == (
        "90791",
        AppointmentStatus.BOOKED,
        dt.timedelta(minutes=50),
    )
    # The write went out as the JSON:API document writes.py describes, with the office's wall time and offset.
    [sent] = [x for x in env.emulator.exchanges if x.method == "POST" and x.path == "/frontend/appointments"]
    assert sent.request_header("content-type") == "application/vnd.api+json"
    body = msgspec.json.decode(sent.request_body)
    assert body["data"]["type"] == "appointments"
    assert body["data"]["attributes"]["cptCodes"] == [{"code": "90791"}]
    assert body["data"]["attributes"]["startTime"] == start.isoformat()
    assert body["data"]["relationships"]["client"]["data"]["type"] == "clients"


async def test_phone_lookup_and_e164(env: Env) -> None:
    adapter = env.adapter()
    [found] = await adapter.find_patients(PatientQuery(phone="+12125550147"))
    assert found.phones == ["+12125550147"]
    created = await adapter.create_patient(NewPatient(first_name="Ana", last_name="Lima", phone="+1 646 555 0199"))
    assert [p.id for p in await adapter.find_patients(PatientQuery(first_name="Ana", last_name="Lima"))] == [created.id]


async def test_html_catch_all_is_an_error_never_success(env: Env) -> None:
    raw = await env.http.get(f"{env.base_url}/frontend/no-such-endpoint")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/html")

    # A location whose API base points at a path SimplePractice does not serve: every answer is the HTML page.
    lost = env.adapter(base_url=f"{env.base_url}/frontend/v2")
    with pytest.raises(Rejected, match="instead of a JSON:API document"):
        await lost.check()
    command = await booking(env.adapter(), dt.datetime.now(ZoneInfo(ZONE)) + dt.timedelta(days=2))
    with pytest.raises(Rejected, match="JSON:API"):
        await lost.book(command)
    assert env.emulator.stats().appointments == 0


async def test_required_headers_are_checked(env: Env) -> None:
    portal = await env.http.get(f"{env.base_url}/client-portal-api/slots", headers={"Api-Version": "2020-01-01"})
    assert portal.status_code == 400
    assert portal.json()["errors"][0]["title"] == "Application build version is missing"
    frontend = await env.http.get(f"{env.base_url}/frontend/offices", headers={"Accept": "application/vnd.api+json"})
    assert frontend.status_code == 400


async def test_session_expiry_is_auth_failed_everywhere(env: Env) -> None:
    adapter = env.adapter()
    start = dt.datetime.now(ZoneInfo(ZONE)) + dt.timedelta(days=2)
    command = await booking(adapter, start)
    await env.control("session/expire")
    with pytest.raises(AuthFailed, match="sign in to SimplePractice again"):
        await adapter.check()
    with pytest.raises(AuthFailed):
        await adapter.book(command)
    with pytest.raises(AuthFailed):
        await adapter.list_appointments(AppointmentQuery(patient_id=command.patient_id))
    with pytest.raises(AuthFailed):
        await env.adapter().availability(
            AvailabilityQuery(practitioner_id=command.practitioner_id, service_id="90791", start_from=start,
                              start_to=start + dt.timedelta(hours=4))
        )  # fmt: skip
    await env.control("session/restore")
    await adapter.check()


async def test_stale_csrf_token_refuses_writes_only(env: Env) -> None:
    _, good = env.emulator.location_config(env.base_url)
    stale = msgspec.json.encode({**msgspec.json.decode(good), "csrf_token": "stale-token-123"})
    adapter = env.adapter(credentials=stale)
    command = await booking(adapter, dt.datetime.now(ZoneInfo(ZONE)) + dt.timedelta(days=2))
    with pytest.raises(AuthFailed, match="CSRF"):
        await adapter.book(command)
    assert env.emulator.stats().appointments == 0


async def test_unknown_client_is_an_invalid_reference(env: Env) -> None:
    adapter = env.adapter()
    command = await booking(adapter, dt.datetime.now(ZoneInfo(ZONE)) + dt.timedelta(days=2))
    with pytest.raises(InvalidReference) as caught:
        await adapter.book(msgspec.structs.replace(command, patient_id="123"))
    assert caught.value.field == "patient_id"


async def test_rate_limit_carries_retry_after(env: Env) -> None:
    env.emulator.rate_limiter.limit = 0
    with pytest.raises(RateLimited) as caught:
        await env.adapter().check()
    assert caught.value.retry_after >= 1


async def test_an_office_sees_only_its_own_appointments(env: Env) -> None:
    main, video = env.adapter(0), env.adapter(1)
    booked = await main.book(await booking(main, dt.datetime.now(ZoneInfo(ZONE)) + dt.timedelta(days=2)))
    with pytest.raises(NotFound):
        await video.get_appointment(booked.id)
    assert await video.list_appointments(AppointmentQuery(patient_id=booked.patient_id)) == []
    assert [a.id for a in await main.list_appointments(AppointmentQuery(patient_id=booked.patient_id))] == [booked.id]


async def test_times_across_a_dst_change(env: Env) -> None:
    zone = ZoneInfo(ZONE)
    day = next_dst_change(zone)
    adapter = env.adapter()
    before = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(10), zone)
    after = dt.datetime.combine(day, dt.time(10), zone)
    assert before.utcoffset() != after.utcoffset()
    first = await adapter.book(await booking(adapter, before))
    second = await adapter.book(await booking(adapter, after))
    assert (first.start, second.start) == (before, after)
    assert second.start - first.start != dt.timedelta(days=1)  # a wall-clock day, not 24 hours
    assert (await adapter.get_appointment(second.id)).start.astimezone(zone).hour == 10

    slots = await adapter.availability(
        AvailabilityQuery(practitioner_id=second.practitioner_id, service_id="90791",
                          start_from=dt.datetime.combine(day, dt.time(0), zone),
                          start_to=dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zone))
    )  # fmt: skip
    local = [s.start.astimezone(zone) for s in slots]
    assert local[0].time() == dt.time(9)  # opening hour in local time, whatever the offset
    assert after not in [s.start for s in slots]


async def test_changes_since_polls_clients_and_appointments(env: Env) -> None:
    adapter = env.adapter()
    first = await adapter.changes_since(None)
    assert (first.patients, first.appointments) == ([], [])
    booked = await adapter.book(await booking(adapter, dt.datetime.now(ZoneInfo(ZONE)) + dt.timedelta(days=2)))
    created = await adapter.create_patient(NewPatient(first_name="Kim", last_name="Park", email="kim@example.com"))
    changes = await adapter.changes_since(first.cursor)
    assert booked.id in [a.id for a in changes.appointments]
    assert created.id in [p.id for p in changes.patients]

    await env.control(f"appointments/{booked.id}/attendance", {"status": "No Show"})
    later = await adapter.changes_since(changes.cursor)
    [seen] = [a for a in later.appointments if a.id == booked.id]
    assert seen.status is AppointmentStatus.NOSHOW

"""The Practice Better facts of evidence-2026-11 §3, over real HTTP: the emulator serves what the integrators saw
(`sessionDate` as the account's wall time, `duration` in seconds, 400 on a duplicate e-mail, `emailAddress`
required) and the adapter works against it, or notices and undoes what it could not get right."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.emulation import Fault, FaultKind
from adapters.errors import InvalidReference, Rejected, WriteMismatch
from adapters.practicebetter.settings import FALLBACK_UNIT
from schemas.appointments import AppointmentStatus
from schemas.commands import BookCommand, NewPatient
from schemas.patients import PatientQuery
from tests.adapters.practicebetter.conftest import PB, SEEDED_EMAIL
from tests.contract.conftest import SLOW_MS

SESSIONS = "/consultant/sessions"
RECORDS = "/consultant/records"
MELBOURNE = ZoneInfo("Australia/Melbourne")


def _future(days: int, hour: int) -> dt.datetime:
    day = dt.datetime.now(MELBOURNE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=MELBOURNE)


def _sent(pb: PB, method: str, path: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(e.request_body) for e in pb.emulator.exchanges if e.method == method and e.path == path]


async def _book(pb: PB, start: dt.datetime) -> BookCommand:
    practitioner, service, patient = await pb.ids()
    return BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=start)


# ---------------------------------------------------------------------------------------------- sessionDate


async def _bearer(pb: PB) -> dict[str, str]:
    _, credentials = pb.emulator.location_config(pb.base_url)
    creds = msgspec.json.decode(credentials)
    form = {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
    token = (await pb.http.post(f"{pb.base_url}/oauth2/token", data=form)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def _raw_create(pb: PB, session_date: str, **extra: object) -> httpx.Response:
    """A create sent straight to the emulator, as another integrator would send it."""
    practitioner, service, patient = await pb.ids()
    body = {
        "clientRecordId": patient,
        "asConsultantId": practitioner,
        "serviceId": service,
        "serviceType": "face",
        "sessionDate": session_date,
        "duration": 1800,
        "ignoreConflict": True,
        "notify": False,
        **extra,
    }
    return await pb.http.post(f"{pb.base_url}{SESSIONS}", json=body, headers=await _bearer(pb))


@pytest.mark.parametrize(
    ("pb_emulator", "sent", "stored"),
    [
        # The account's zone is the seed's (Melbourne, AEST +10 in June): the `Z` and `timeZone` are ignored.
        ({}, "2027-06-01T10:00:00Z", "2027-06-01T00:00:00.000Z"),
        ({}, "2027-06-01T10:00:00", "2027-06-01T00:00:00.000Z"),
        # The integrator's account, in US Eastern (EDT -4 in June).
        ({"wall_zone": "America/New_York"}, "2027-06-01T10:00:00Z", "2027-06-01T14:00:00.000Z"),
    ],
    indirect=["pb_emulator"],
    ids=["trailing-z", "naive", "eastern-account"],
)
async def test_emulator_reads_session_date_as_the_accounts_wall_time(pb: PB, sent: str, stored: str) -> None:
    answer = await _raw_create(pb, sent, timeZone="Central Standard Time")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["sessionDate"], answer.json()["endDate"]) == (
        stored,
        stored.replace("00:00.000", "30:00.000"),
    )


@pytest.mark.parametrize("offset", ["-05:00", "+00:00", "+10:00"])
async def test_emulator_answers_500_to_an_explicit_offset(pb: PB, offset: str) -> None:
    answer = await _raw_create(pb, f"2027-06-01T10:00:00{offset}")
    assert answer.status_code == 500
    assert pb.emulator.stats().appointments == 0


async def test_default_settings_send_wall_time_in_the_locations_zone(pb: PB) -> None:
    """No settings at all: wall time in the location's zone (no practice-zone endpoint is evidenced), and the
    unit read off an existing session; the session lands at the asked instant."""
    await pb.adapter().book(await _book(pb, _future(2, 9)))  # an existing session to read the unit from
    command = await _book(pb, _future(3, 11))
    booked = await pb.adapter(defaults=True).book(command)
    assert (booked.start, booked.end - booked.start) == (command.start, dt.timedelta(minutes=30))
    last = _sent(pb, "POST", SESSIONS)[-1]
    assert (last["sessionDate"], last["duration"]) == (command.start.strftime("%Y-%m-%dT%H:%M:%S"), 1800)


async def test_the_old_utc_default_is_undone_not_left_hours_off(pb: PB) -> None:
    """`sessionDate` with `Z` is read as the account's wall time: the session lands the zone's offset early. The
    stored instant differs from the asked one, so the booking is cancelled and the caller told which setting."""
    command = await _book(pb, _future(3, 12))
    with pytest.raises(WriteMismatch) as caught:
        await pb.adapter(session_date_mode="utc").book(command)
    offset = command.start.utcoffset()
    assert offset is not None
    early = -int(offset.total_seconds() // 60)
    assert dict(caught.value.differences) == {"start": early, "end": early}
    assert caught.value.undone
    assert "session_date_mode" in caught.value.settings["start"]
    assert pb.emulator.stats().active_appointments == 0


@pytest.mark.parametrize("pb_emulator", [{"wall_zone": "America/New_York"}], indirect=True)
async def test_a_timed_out_create_read_in_another_zone_is_found_and_undone_not_sent_twice(pb: PB) -> None:
    """The account reads wall time in US Eastern, the location is configured for Melbourne: the session lands
    hours away. A create whose answer is lost is looked up by the instant Practice Better stored, found, verified
    and cancelled, instead of being sent again."""
    command = await _book(pb, _future(3, 12))
    adapter = pb.adapter(session_date_zone=None)
    pb.emulator.faults.add(Fault(kind=FaultKind.TIMEOUT_AFTER_APPLY, method="POST", delay_ms=SLOW_MS))
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)
    assert caught.value.undone
    shift = dict(caught.value.differences)["start"]
    assert shift != 0
    assert dict(caught.value.differences) == {"start": shift, "end": shift}
    assert (pb.emulator.stats().appointments, pb.emulator.stats().active_appointments) == (1, 0)  # sent once


@pytest.mark.parametrize("pb_emulator", [{"wall_zone": "America/New_York"}], indirect=True)
async def test_the_account_zone_setting_books_at_the_asked_instant(pb: PB) -> None:
    command = await _book(pb, _future(3, 12))
    booked = await pb.adapter(session_date_zone="America/New_York").book(command)
    assert booked.start == command.start
    assert _sent(pb, "POST", SESSIONS)[-1]["sessionDate"] == command.start.astimezone(
        ZoneInfo("America/New_York")
    ).strftime("%Y-%m-%dT%H:%M:%S")


# ---------------------------------------------------------------------------------------------- duration


@pytest.mark.parametrize(
    ("pb_emulator", "sent"), [({}, 1800), ({"duration_unit": "minutes"}, 30)], indirect=["pb_emulator"]
)
async def test_auto_reads_the_unit_off_an_existing_session(pb: PB, sent: int) -> None:
    await pb.adapter().book(await _book(pb, _future(2, 9)))  # configured as the account shows: an existing session
    reads = pb.requests("GET", SESSIONS)
    adapter = pb.adapter(duration_unit="auto")
    for hour in (11, 14):
        booked = await adapter.book(await _book(pb, _future(3, hour)))
        assert booked.end - booked.start == dt.timedelta(minutes=30)
    assert [body["duration"] for body in _sent(pb, "POST", SESSIONS)[1:]] == [sent, sent]
    assert pb.requests("GET", SESSIONS) == reads + 1  # learned once per adapter instance


async def test_auto_on_an_account_without_sessions_falls_back_then_learns(pb: PB) -> None:
    """No session to read the unit from: minutes. Against seconds that is a 30-second session, caught by the
    stored end and cancelled; that session then shows the unit, and the next booking is right."""
    assert FALLBACK_UNIT == "minutes"
    adapter = pb.adapter(duration_unit="auto")
    command = await _book(pb, _future(3, 12))
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)
    assert dict(caught.value.differences) == {"end": -30}
    assert caught.value.settings == {"end": "settings.duration_unit"}
    booked = await adapter.book(command)
    assert booked.end - booked.start == dt.timedelta(minutes=30)
    assert [body["duration"] for body in _sent(pb, "POST", SESSIONS)] == [30, 1800]


@pytest.mark.parametrize(
    ("pb_emulator", "configured", "stored", "minutes_off"),
    [
        ({}, "minutes", dt.timedelta(seconds=30), -30),
        ({"duration_unit": "minutes"}, "seconds", dt.timedelta(hours=30), 1770),
    ],
    indirect=["pb_emulator"],
    ids=["minutes-sent-to-seconds", "seconds-sent-to-minutes"],
)
async def test_a_wrong_unit_shows_in_the_stored_end_and_is_undone(
    pb: PB, configured: str, stored: dt.timedelta, minutes_off: int
) -> None:
    adapter = pb.adapter(duration_unit=configured)
    command = await _book(pb, _future(3, 12))
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)
    assert dict(caught.value.differences) == {"end": minutes_off}
    cancelled = await adapter.get_appointment(caught.value.appointment_id)
    assert cancelled.status is AppointmentStatus.CANCELLED
    assert cancelled.end - cancelled.start == stored  # Practice Better's own `endDate`, not `duration` re-read


# ---------------------------------------------------------------------------------------------- clients


@pytest.mark.parametrize("pb_emulator", [{}, {"duplicate_status": 409}, {"duplicate_status": 500}], indirect=True)
async def test_a_duplicate_email_returns_the_existing_client(pb: PB) -> None:
    adapter = pb.adapter()
    [seeded] = await adapter.find_patients(PatientQuery(email=SEEDED_EMAIL))
    again = await adapter.create_patient(NewPatient(first_name="Jane", last_name="Citizen", email=SEEDED_EMAIL))
    assert again.id == seeded.id
    [create] = [e for e in pb.emulator.exchanges if e.method == "POST" and e.path == RECORDS]
    assert create.status == pb.emulator.duplicate_status  # sent once, never again after the refusal


async def test_a_refused_create_of_a_client_that_does_not_exist_stays_refused(pb: PB) -> None:
    pb.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, method="POST", path_prefix=RECORDS, status=400))
    with pytest.raises(Rejected) as caught:
        await pb.adapter().create_patient(NewPatient(first_name="New", last_name="Client", email="new@example.com"))
    assert caught.value.emr_status == 400


async def test_a_client_without_email_is_refused_before_anything_is_sent(pb: PB) -> None:
    with pytest.raises(InvalidReference) as caught:
        await pb.adapter().create_patient(NewPatient(first_name="No", last_name="Email", phone="+61 400 111 222"))
    assert caught.value.field == "patient.email"
    assert pb.emulator.traffic.requests == 0


async def test_emulator_requires_an_email_to_create_a_client(pb: PB) -> None:
    answer = await pb.http.post(
        f"{pb.base_url}{RECORDS}", json={"profile": {"firstName": "No", "lastName": "Email"}}, headers=await _bearer(pb)
    )
    assert answer.status_code == 400
    assert "emailAddress" in answer.json()["message"]

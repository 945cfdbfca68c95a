"""Practice Better specifics over real HTTP: OAuth token handling, the request budget, the wire format under each
setting, 409/461/204, the client index and full-replace updates, pagination, isolation and the change feed."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.emulation import Fault, FaultKind
from adapters.errors import NotFound, RateLimited
from adapters.pacing import Grant, LocalBudget
from adapters.practicebetter.adapter import PracticeBetterAdapter
from schemas.commands import AvailabilityQuery, BookCommand, NewPatient
from schemas.patients import PatientQuery
from tests.adapters.practicebetter.conftest import PB

SEEDED_EMAIL = "jane.citizen@example.com"
TOKEN = "/oauth2/token"


async def _ids(pb: PB) -> tuple[str, str, str]:
    adapter = pb.adapter()
    practitioner = (await adapter.list_practitioners())[0].id
    service = min(await adapter.list_services(), key=lambda s: s.duration_minutes).id
    [patient] = await adapter.find_patients(PatientQuery(email=SEEDED_EMAIL))
    return practitioner, service, patient.id


def _future(days: int, hour: int) -> dt.datetime:
    zone = ZoneInfo("Australia/Melbourne")
    day = dt.datetime.now(zone).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=zone)


async def test_concurrent_first_requests_mint_one_token(pb: PB) -> None:
    adapter = pb.adapter()
    await asyncio.gather(*(adapter.list_practitioners() for _ in range(8)))
    assert pb.requests("POST", TOKEN) == 1
    await pb.adapter().list_services()  # a fresh adapter instance (the gateway rebuilds them) reuses the token
    assert pb.requests("POST", TOKEN) == 1


async def test_a_401_re_mints_the_token_once(pb: PB) -> None:
    adapter = pb.adapter()
    await adapter.list_practitioners()
    pb.emulator.revoke_tokens()
    assert await adapter.list_practitioners()
    assert pb.requests("POST", TOKEN) == 2


@pytest.mark.parametrize("pb_emulator", [{"token_lifetime": 30}], indirect=True)
async def test_a_token_about_to_expire_is_not_reused(pb: PB) -> None:
    adapter = pb.adapter()
    await adapter.list_practitioners()
    await adapter.list_practitioners()
    assert pb.requests("POST", TOKEN) == 2


async def test_token_request_is_client_credentials_form(pb: PB) -> None:
    await pb.adapter().list_practitioners()
    [exchange] = [e for e in pb.emulator.exchanges if e.path == TOKEN]
    assert exchange.request_header("content-type") == "application/x-www-form-urlencoded"
    assert b"grant_type=client_credentials" in exchange.request_body
    api = [e for e in pb.emulator.exchanges if e.path != TOKEN]
    assert all((e.request_header("authorization") or "").startswith("Bearer ") for e in api)


async def test_retry_after_pauses_the_practice_without_sending(pb: PB) -> None:
    adapter = pb.adapter(paced=True)
    await adapter.list_practitioners()
    pb.emulator.faults.add(Fault(kind=FaultKind.RATE_LIMIT, retry_after=30))
    with pytest.raises(RateLimited) as first:
        await adapter.list_services()
    assert first.value.retry_after == 30
    sent = pb.emulator.traffic.requests
    with pytest.raises(RateLimited) as second:
        await pb.adapter(paced=True).list_practitioners()  # another instance of the same practice honours it too
    assert 1 <= second.value.retry_after <= 30
    assert pb.emulator.traffic.requests == sent


def test_budget_allows_a_burst_of_20_then_the_sustained_rate() -> None:
    now = [0.0]
    budget = LocalBudget(clock=lambda: now[0])
    [limit, daily] = PracticeBetterAdapter.rate_limits
    assert [budget.reserve_now("k", limit, 1.0) for _ in range(20)] == [Grant(True, 0.0)] * 20
    held = budget.reserve_now("k", limit, 1.0)
    assert held.granted
    assert held.wait == pytest.approx(1 / 4.5)
    now[0] += 10.0  # refilled (capped at the burst)
    assert [budget.reserve_now("k", limit, 0.0) for _ in range(20)] == [Grant(True, 0.0)] * 20
    assert not budget.reserve_now("k", limit, 0.0).granted  # no waiting allowed: refused, nothing taken
    # 10,000 a day: never more than burst + rate x 1 day.
    assert daily.burst + daily.per_second * 86_400 <= 10_000


@pytest.mark.parametrize(
    ("pb_emulator", "sent_date", "sent_duration"),
    [
        # The default: wall time in the account's zone (here the location's, Melbourne: AEDT, +11), seconds.
        ({}, "2027-03-14T18:30:00", 1800),
        ({"duration_unit": "minutes", "session_date_mode": "utc"}, "2027-03-14T07:30:00Z", 30),
        # An account in America/New_York, which moved to EDT at 02:00 that morning: 07:30Z is 03:30 wall time.
        ({"wall_zone": "America/New_York"}, "2027-03-14T03:30:00", 1800),
    ],
    indirect=["pb_emulator"],
    ids=["seconds-wall_time", "minutes-utc", "seconds-wall_time-new_york"],
)
async def test_session_wire_format_follows_the_settings(pb: PB, sent_date: str, sent_duration: int) -> None:
    practitioner, service, patient = await _ids(pb)
    start = dt.datetime(2027, 3, 14, 7, 30, tzinfo=dt.UTC)
    booked = await pb.adapter().book(
        BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=start)
    )
    assert (booked.start, booked.end - booked.start) == (start, dt.timedelta(minutes=30))
    [create] = [e for e in pb.emulator.exchanges if e.method == "POST" and e.path == "/consultant/sessions"]
    body = msgspec.json.decode(create.request_body)
    assert (body["sessionDate"], body["duration"]) == (sent_date, sent_duration)
    assert (body["ignoreConflict"], body["asConsultantId"], body["serviceType"]) == (False, practitioner, "face")


async def test_other_practice_records_and_sessions_are_not_found(pb: PB) -> None:
    practitioner, service, patient = await _ids(pb)
    booked = await pb.adapter().book(
        BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_future(2, 10))
    )
    other = pb.adapter(business_index=1)
    with pytest.raises(NotFound):
        await other.get_appointment(booked.id)
    with pytest.raises(NotFound):
        await other.get_patient(patient)  # Practice Better answers 461 Resource Access Denied
    assert any(e.status == 461 for e in pb.emulator.exchanges)


async def test_a_day_without_slots_is_204_and_empty(pb: PB) -> None:
    practitioner, service, _ = await _ids(pb)
    pb.emulator.seed.open_weekdays = []
    query = AvailabilityQuery(
        practitioner_id=practitioner, service_id=service, start_from=_future(1, 0), start_to=_future(3, 0)
    )
    assert await pb.adapter().availability(query) == []
    for _ in range(20):  # a 204 (no body) can be recorded just after the client has it
        slot_calls = [e for e in pb.emulator.exchanges if e.path == "/consultant/availability/slots"]
        if len(slot_calls) >= 3:
            break
        await asyncio.sleep(0.05)
    assert [e.status for e in slot_calls] == [204, 204, 204]  # one call per local day


async def test_creating_an_existing_client_returns_it_and_fills_gaps(pb: PB) -> None:
    adapter = pb.adapter()
    first = await adapter.create_patient(
        NewPatient(first_name="Ana", last_name="Lopez", email="ana@example.com", date_of_birth=dt.date(1990, 1, 2))
    )
    again = await adapter.create_patient(
        NewPatient(first_name="Ana", last_name="Lopez", email="ANA@example.com", phone="+61 400 555 666")
    )
    assert again.id == first.id
    assert again.phones == ["+61400555666"]
    assert again.date_of_birth == dt.date(1990, 1, 2)  # PUT replaces the whole record: the adapter sent it all
    [put] = [e for e in pb.emulator.exchanges if e.method == "PUT"]
    assert msgspec.json.decode(put.request_body)["profile"]["dateOfBirth"] == "1990-01-02"
    assert any(e.status == 400 for e in pb.emulator.exchanges)  # a duplicate e-mail, as the production booker saw


async def test_lookup_pages_records_incrementally(pb: PB) -> None:
    adapter = pb.adapter()
    assert await adapter.find_patients(PatientQuery(email="nobody@example.com")) == []
    await adapter.create_patient(NewPatient(first_name="Li", last_name="Wei", email="li@example.com"))
    found = await adapter.find_patients(PatientQuery(email="li@example.com", first_name="li"))
    assert [p.email for p in found] == ["li@example.com"]
    lists = [e for e in pb.emulator.exchanges if e.method == "GET" and e.path == "/consultant/records"]
    assert "modified_gte" not in lists[0].query
    assert all("modified_gte=" in e.query for e in lists[1:])
    [by_name] = await adapter.find_patients(PatientQuery(first_name="LI", last_name=" wei"))
    assert by_name.email == "li@example.com"
    assert await adapter.find_patients(PatientQuery(phone="+61412345678")) != []  # the seeded client's mobile


async def test_lookup_walks_every_page(pb: PB) -> None:
    pb.emulator.records.clear()
    company = pb.emulator.company_ids()[0]
    for n in range(230):
        pb.emulator.create_record(
            pb.emulator.companies[company],
            {"profile": {"firstName": "P", "lastName": str(n), "emailAddress": f"p{n}@example.com"}},
        )
    [oldest] = await pb.adapter().find_patients(PatientQuery(email="p0@example.com"))
    assert oldest.last_name == "0"
    pages = [e for e in pb.emulator.exchanges if e.path == "/consultant/records" and e.method == "GET"]
    assert len(pages) == 3
    assert "before_id=" in pages[-1].query


async def test_changes_since_reports_new_clients_and_sessions(pb: PB) -> None:
    practitioner, service, patient = await _ids(pb)
    adapter = pb.adapter()
    start = await adapter.changes_since(None)
    assert (start.patients, start.appointments) == ([], [])
    created = await adapter.create_patient(NewPatient(first_name="New", last_name="Client", email="n@example.com"))
    booked = await adapter.book(
        BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_future(3, 11))
    )
    changes = await adapter.changes_since(start.cursor)
    assert created.id in [p.id for p in changes.patients]
    assert [a.id for a in changes.appointments] == [booked.id]
    assert changes.cursor >= start.cursor


async def test_seeded_patients_are_per_practice(pb: PB) -> None:
    [mine] = await pb.adapter().find_patients(PatientQuery(email=SEEDED_EMAIL))
    [theirs] = await pb.adapter(business_index=1).find_patients(PatientQuery(email=SEEDED_EMAIL))
    assert mine.id != theirs.id

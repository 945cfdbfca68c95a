"""Halaxy specifics over real HTTP: the token's two lifetimes, identification and content types, paging, the request
budget and retry-after, the cancel setting, attendance codes, isolation between clinics, the change feed, notes."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.errors import (
    ContractChanged,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    SlotUnavailable,
    Unsupported,
)
from adapters.halaxy import mapping
from adapters.halaxy import wire as hx
from adapters.halaxy.adapter import HalaxyAdapter
from adapters.halaxy.emulator import DURATION_URL, FrontDeskBooking, PatientEdit
from adapters.tokens import TokenCache
from schemas.appointments import AppointmentStatus, CancelReason
from schemas.commands import AppointmentQuery, AvailabilityQuery, BookCommand, CancelCommand, RescheduleCommand
from schemas.patients import PatientQuery
from tests.adapters.halaxy.conftest import HX, TOKEN

ZONE = ZoneInfo("Australia/Melbourne")


def _at(days: int, hour: int, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(ZONE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE)


async def test_concurrent_first_requests_mint_one_token_with_a_json_body(hx: HX) -> None:
    adapter = hx.adapter()
    await asyncio.gather(*(adapter.list_practitioners() for _ in range(6)))
    await hx.adapter().list_services()  # a fresh instance (the gateway rebuilds them) reuses the token
    minted = [e for e in hx.emulator.exchanges if e.path == TOKEN]
    assert len(minted) == 1
    assert minted[0].request_header("content-type") == "application/json"
    assert set(msgspec.json.decode(minted[0].request_body)) == {"grant_type", "client_id", "client_secret"}


async def test_the_token_is_re_minted_before_fifteen_minutes_though_it_says_an_hour(hx: HX) -> None:
    now = [0.0]
    start = hx.emulator.clock()
    hx.emulator.clock = lambda: start + now[0]
    adapter = hx.adapter(tokens=TokenCache(clock=lambda: now[0]))
    await adapter.check()
    now[0] = 13 * 60 + 50
    await adapter.check()
    assert hx.requests("POST", TOKEN) == 1
    now[0] = 14 * 60 + 1  # a minute before the documented 15: a new one, and no 401 on the way
    await adapter.check()
    assert hx.requests("POST", TOKEN) == 2
    assert not [e for e in hx.emulator.exchanges if e.status == 401]


async def test_trusting_expires_in_would_cost_a_refusal_every_quarter_hour(hx: HX) -> None:
    """Why the cap exists: with `expires_in` (3600) believed, the token dies at 15 minutes and a 401 re-mints it."""
    now = [0.0]
    start = hx.emulator.clock()
    hx.emulator.clock = lambda: start + now[0]
    adapter = hx.adapter(tokens=TokenCache(clock=lambda: now[0]), token_lifetime_seconds=3600)
    await adapter.check()
    now[0] = 16 * 60
    await adapter.check()
    assert hx.requests("POST", TOKEN) == 2
    assert len([e for e in hx.emulator.exchanges if e.status == 401]) == 1


async def test_every_request_identifies_the_vendor_and_speaks_fhir_json(hx: HX) -> None:
    adapter = hx.adapter(vendor="Acme Clinic Sync", contact_email="ops@acme.example")
    practitioner, service, patient = await hx.ids(adapter)
    booked = await adapter.book(
        BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_at(2, 10))
    )
    await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=_at(2, 11)))
    await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.OTHER))
    api = [e for e in hx.emulator.exchanges if e.path.startswith("/main/")]
    assert {e.request_header("user-agent") for e in api} == {"Acme Clinic Sync (ops@acme.example)"}
    assert {e.request_header("accept") for e in api if e.path != TOKEN} == {"application/fhir+json"}
    types = {(e.method, e.request_header("content-type")) for e in api if e.method in ("POST", "PATCH")}
    assert types == {
        ("POST", "application/json"),  # the token (docs/authentication)
        ("POST", "application/fhir+json"),  # $book
        ("PATCH", "application/merge-patch+json"),
    }


async def test_searches_follow_next_links_to_the_end(hx: HX) -> None:
    for n in range(120):
        hx.emulator.create_patient({"resourceType": "Patient", "name": [{"family": "Paged", "given": [f"P{n}"]}]})
    adapter = hx.adapter()
    found = await adapter.find_patients(PatientQuery(last_name="Paged"))
    assert len({p.id for p in found}) == 120
    pages = [e for e in hx.emulator.exchanges if e.path == "/main/Patient"]
    assert len(pages) == 3  # 50 a page, as the SDK fixture pages
    assert "page=2" in pages[1].query
    assert "page=3" in pages[2].query
    assert len(await adapter.get_patients([p.id for p in found])) == 120


async def test_availability_reads_every_page_of_find_and_next_asks_for_the_first(hx: HX) -> None:
    adapter = hx.adapter()
    practitioner, service, _ = await hx.ids(adapter)
    query = AvailabilityQuery(
        practitioner_id=practitioner, service_id=service, start_from=_at(2, 0), start_to=_at(5, 0)
    )
    slots = await adapter.availability(query)
    assert len(slots) == 3 * 31  # 09:00 to 16:30 every 15 minutes, three days
    assert len([e for e in hx.emulator.exchanges if e.path == "/main/Appointment/$find"]) == 2
    best = await adapter.next_available(query)
    assert best is not None
    assert best.start == slots[0].start
    assert "show=first-available" in hx.emulator.exchanges[-1].query


def test_the_budget_stays_inside_five_hundred_a_minute() -> None:
    [limit] = HalaxyAdapter.rate_limits
    assert limit.burst + limit.per_second * 60 <= 500


@pytest.mark.parametrize("hx_emulator", [{"rate_limit": 3}], indirect=True)
async def test_a_429_is_rate_limited_with_halaxys_retry_after(hx: HX) -> None:
    adapter = hx.adapter()
    for _ in range(3):
        await adapter.check()
    with pytest.raises(RateLimited) as caught:
        await adapter.check()
    assert 55 <= caught.value.retry_after <= 60


async def test_a_status_patch_halaxy_ignores_is_reported_not_taken_for_a_cancel(hx: HX) -> None:
    adapter = hx.adapter(cancel_style="status")
    practitioner, service, patient = await hx.ids(adapter)
    booked = await adapter.book(
        BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_at(3, 10))
    )
    with pytest.raises(Rejected) as caught:
        await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.SICK))
    assert "cancel_style" in caught.value.message
    assert (await adapter.get_appointment(booked.id)).status is AppointmentStatus.BOOKED
    cancelled = await hx.adapter().cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.SICK))
    assert cancelled.status is AppointmentStatus.CANCELLED  # the default, the SDK's recipe


@pytest.mark.parametrize("hx_emulator", [{"status_field": True}], indirect=True)
async def test_a_server_that_honours_fhir_status_cancels_with_it(hx: HX) -> None:
    adapter = hx.adapter(cancel_style="status")
    practitioner, service, patient = await hx.ids(adapter)
    booked = await adapter.book(
        BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_at(3, 11))
    )
    cancelled = await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.WORK))
    assert (cancelled.status, cancelled.cancel_reason) == (AppointmentStatus.CANCELLED, CancelReason.WORK)
    patch = next(e for e in hx.emulator.exchanges if e.method == "PATCH")
    assert msgspec.json.decode(patch.request_body) == {"status": "cancelled"}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("booked", AppointmentStatus.BOOKED),
        ("confirmed", AppointmentStatus.BOOKED),
        ("attended", AppointmentStatus.FULFILLED),
        ("cancelled", AppointmentStatus.CANCELLED),
        ("cancelled (no charge)", AppointmentStatus.CANCELLED),
        ("Non-Attendance", AppointmentStatus.NOSHOW),
    ],
)
def test_attendance_codes_decide_the_status_over_a_fhir_status(code: str, status: AppointmentStatus) -> None:
    body = {
        "resourceType": "Appointment",
        "id": "1",
        "status": "booked",
        "start": "2026-01-01T09:00:00+11:00",
        "end": "2026-01-01T09:30:00+11:00",
        "participant": [
            {
                "actor": {"reference": "/main/Patient/7", "type": "Patient"},
                "modifierExtension": [{"url": hx.PARTICIPANT_STATUS_URL, "valueCoding": {"code": code}}],
            },
            {"actor": {"reference": "/main/PractitionerRole/PR-1", "type": "PractitionerRole"}},
        ],
    }
    appointment = msgspec.json.decode(msgspec.json.encode(body), type=hx.Appointment)
    assert mapping.status_of(appointment) is status


async def test_a_conflict_halaxy_reports_is_a_taken_slot(hx: HX, monkeypatch: pytest.MonkeyPatch) -> None:
    hx.emulator.refuse_overlaps = True
    adapter = hx.adapter()
    practitioner, service, patient = await hx.ids(adapter)
    command = BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_at(4, 10))
    await adapter.book(command)

    async def nothing(*args: object, **kwargs: object) -> list[object]:
        return []

    monkeypatch.setattr(adapter, "_overlapping", nothing)  # as if another booking landed after the check
    with pytest.raises(SlotUnavailable) as caught:
        await adapter.book(msgspec.structs.replace(command, start=_at(4, 10, 15)))
    assert caught.value.emr_status == 422
    assert "conflict" in (caught.value.emr_message or "")
    assert "already has" not in (caught.value.emr_message or "")  # Halaxy's prose is never carried


async def test_another_clinics_appointments_are_not_this_locations(hx: HX) -> None:
    north, south = hx.adapter(0), hx.adapter(1)
    practitioner, service, patient = await hx.ids(south)
    booked = await south.book(
        BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_at(2, 9))
    )
    with pytest.raises(NotFound):
        await north.get_appointment(booked.id)
    assert await north.list_appointments(AppointmentQuery(patient_id=patient)) == []
    assert [a.id for a in await south.list_appointments(AppointmentQuery(patient_id=patient))] == [booked.id]
    assert {p.id for p in await north.list_practitioners()}.isdisjoint({p.id for p in await south.list_practitioners()})


async def test_notes_dropped_by_book_are_written_once_and_read_back(hx: HX) -> None:
    adapter = hx.adapter()
    practitioner, service, patient = await hx.ids(adapter)
    booked = await adapter.book(
        BookCommand(
            patient_id=patient,
            practitioner_id=practitioner,
            service_id=service,
            start=_at(2, 13),
            notes="bring the referral",
            operation_id="op_notes",
        )
    )
    assert booked.notes == "bring the referral"
    assert booked.operation_id == "op_notes"
    assert (await adapter.get_appointment(booked.id)).notes == "bring the referral"
    assert hx.requests("PATCH", f"/main/Appointment/{booked.id}") == 1


async def test_moving_to_another_practitioner_is_unsupported(hx: HX) -> None:
    adapter = hx.adapter()
    practitioners = await adapter.list_practitioners()
    _, service, patient = await hx.ids(adapter)
    booked = await adapter.book(
        BookCommand(patient_id=patient, practitioner_id=practitioners[0].id, service_id=service, start=_at(2, 14))
    )
    with pytest.raises(Unsupported):
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, practitioner_id=practitioners[1].id))


async def test_the_change_feed_reports_the_clinics_changes_once_the_cursor_passes_them(hx: HX) -> None:
    north = hx.adapter(0)
    first = await north.changes_since(None)
    assert (first.patients, first.appointments) == ([], [])
    await asyncio.sleep(1.1)  # Halaxy stamps to the second
    practitioner, service, patient = await hx.ids(north)
    south_role = (await hx.adapter(1).list_practitioners())[0].id
    hx.emulator.edit_patient(patient, PatientEdit(phone="+61400000009"))
    here = hx.emulator.front_desk_book(
        FrontDeskBooking(
            practitioner_role_id=practitioner, patient_id=patient, healthcare_service_id=service, start=_at(3, 9)
        )
    )
    hx.emulator.front_desk_book(
        FrontDeskBooking(
            practitioner_role_id=south_role, patient_id=patient, healthcare_service_id=service, start=_at(3, 12)
        )
    )
    changed = await north.changes_since(first.cursor)
    assert [p.id for p in changed.patients] == [patient]
    assert "+61400000009" in changed.patients[0].phones
    assert [a.id for a in changed.appointments] == [here.id]  # not the south clinic's
    feed = [e.query for e in hx.emulator.exchanges if e.path in ("/main/Patient", "/main/Appointment")][-2:]
    assert all("_lastUpdated=gt" in q for q in feed)


async def test_the_duration_extension_setting_and_what_verify_observes(hx: HX) -> None:
    adapter = hx.adapter()
    [checked] = [s for s in await adapter.observed_settings() if s.setting == "duration_extension_url"]
    assert checked.observed == DURATION_URL
    assert checked.agrees is None  # unset: any quantity in minutes is read
    assert (await hx.adapter(duration_extension_url=DURATION_URL).list_services())[0].duration_minutes == 30
    with pytest.raises(ContractChanged) as caught:
        await hx.adapter(duration_extension_url="https://example.com/other").list_services()
    assert caught.value.path.endswith("extension")


# ---------------------------------------------------------------------------------------------- review fixes


async def test_a_group_session_nobody_joined_neither_stops_the_feed_nor_frees_its_time(hx: HX) -> None:
    """A group session with no patient yet is no appointment to show, but it still occupies the practitioner."""
    north = hx.adapter()
    practitioner, service, patient = await hx.ids(north)
    first = await north.changes_since(None)
    await asyncio.sleep(1.1)  # Halaxy stamps to the second
    hx.emulator.front_desk_book(
        FrontDeskBooking(
            practitioner_role_id=practitioner, patient_id=None, healthcare_service_id=service, start=_at(3, 10)
        )
    )
    theirs = hx.emulator.front_desk_book(
        FrontDeskBooking(
            practitioner_role_id=practitioner, patient_id=patient, healthcare_service_id=service, start=_at(3, 12)
        )
    )
    changed = await north.changes_since(first.cursor)
    assert [a.id for a in changed.appointments] == [theirs.id]  # the feed goes on, past the session
    listed = await north.list_appointments(AppointmentQuery(practitioner_id=practitioner))
    assert [a.id for a in listed] == [theirs.id]
    command = BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_at(3, 10))
    with pytest.raises(SlotUnavailable):
        await north.book(command)  # the session holds 10:00
    booked = await north.book(msgspec.structs.replace(command, start=_at(3, 14)))  # the rest of the day is bookable
    assert booked.status is AppointmentStatus.BOOKED


def _feed_hook(hx: HX, *, crowded: bool) -> tuple[httpx.AsyncClient, set[str]]:
    """An HTTP client that, once the change feed has read its first Patient page, edits the first patient of that
    page in Halaxy's screens (and, with `crowded`, does it again after the first page of a one-second window walk):
    a record updated between two pages."""
    fired: set[str] = set()

    async def hook(response: httpx.Response) -> None:
        request = response.request
        if request.url.path != "/main/Patient" or "page" in request.url.params:
            return
        bounds = request.url.params.get_list("_lastUpdated")
        stage = "first" if bounds and "first" not in fired else None
        if crowded and stage is None and "crowded" not in fired and _one_second(bounds):
            stage = "crowded"
        if stage is None:
            return
        await response.aread()
        entries = response.json().get("entry", [])
        if len(entries) < 50:
            return
        fired.add(stage)
        hx.emulator.edit_patient(entries[0]["resource"]["id"], PatientEdit(given="Moved"))

    return httpx.AsyncClient(timeout=hx.http.timeout, event_hooks={"response": [hook]}), fired


def _one_second(bounds: list[str]) -> bool:
    """`_lastUpdated=gt…&_lastUpdated=lte…` one second apart: a window the feed cannot narrow further."""
    if len(bounds) != 2 or not (bounds[0].startswith("gt") and bounds[1].startswith("lte")):
        return False
    low, high = dt.datetime.fromisoformat(bounds[0][2:]), dt.datetime.fromisoformat(bounds[1][3:])
    return (high - low).total_seconds() <= 1


async def _created(hx: HX, count: int, at: float, step: float) -> tuple[list[str], str]:
    """`count` patients created in the past (`step` seconds apart from `at`), and a cursor from before them."""
    real = hx.emulator.clock
    made = []
    for n in range(count):
        hx.emulator.clock = lambda n=n: at + n * step  # type: ignore[misc]
        made.append(
            hx.emulator.create_patient({"resourceType": "Patient", "name": [{"family": "Feed", "given": [f"F{n}"]}]}).id
        )
    hx.emulator.clock = real
    return made, mapping.instant(dt.datetime.fromtimestamp(at - 10, dt.UTC))


@pytest.mark.parametrize("hx_emulator", [{"search_order": "updated"}], indirect=True)
async def test_a_record_updated_between_two_pages_of_the_feed_is_not_skipped(hx: HX) -> None:
    made, cursor = await _created(hx, 60, time.time() - 600, 1.0)  # one a second, ten minutes ago
    client, fired = _feed_hook(hx, crowded=False)
    async with client as http:
        adapter = HX(emulator=hx.emulator, base_url=hx.base_url, http=http).adapter()
        first = await adapter.changes_since(cursor)
        second = await adapter.changes_since(first.cursor)
    seen = {p.id for p in [*first.patients, *second.patients]}
    assert set(made) <= seen  # none shifted past the page it was on
    assert fired == {"first"}


@pytest.mark.parametrize("hx_emulator", [{"search_order": "updated"}], indirect=True)
async def test_a_crowded_second_that_moves_while_walked_is_read_again(hx: HX) -> None:
    made, cursor = await _created(hx, 60, time.time() - 600, 0.0)  # an import: sixty in one second
    client, fired = _feed_hook(hx, crowded=True)
    async with client as http:
        adapter = HX(emulator=hx.emulator, base_url=hx.base_url, http=http).adapter()
        first = await adapter.changes_since(cursor)
        second = await adapter.changes_since(first.cursor)
    seen = {p.id for p in [*first.patients, *second.patients]}
    assert set(made) <= seen
    assert fired == {"first", "crowded"}
    # The one-second window moved while its pages were walked: the cursor stayed at it and the next poll read that
    # second again, whatever the first walk may have missed there.
    assert set(made) <= {p.id for p in second.patients}


async def test_another_clinics_role_is_read_again_once_not_on_every_notification(hx: HX) -> None:
    north, south = hx.adapter(0), hx.adapter(1)
    _, service, patient = await hx.ids(south)
    theirs = []
    for role in (await south.list_practitioners())[:2]:
        command = BookCommand(patient_id=patient, practitioner_id=role.id, service_id=service, start=_at(2, 9))
        theirs.append((await south.book(command)).id)
    await north.list_practitioners()
    before = hx.requests("GET", "/main/PractitionerRole")
    for _ in range(3):
        for appointment_id in theirs:
            with pytest.raises(NotFound):
                await north.get_appointment(appointment_id)
    assert hx.requests("GET", "/main/PractitionerRole") - before == 2  # once per foreign role, not once per read


async def test_a_withdrawal_halaxy_ignores_says_the_booking_stands(hx: HX, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lost-race cancel answered but not cancelled: the caller must not hear "slot taken" while it stands."""
    adapter = hx.adapter(cancel_style="status")  # Halaxy ignores a top-level status: the patch changes nothing
    practitioner, service, patient = await hx.ids(adapter)
    rival = hx.emulator.front_desk_book(
        FrontDeskBooking(
            practitioner_role_id=practitioner, patient_id=patient, healthcare_service_id=service, start=_at(4, 11)
        )
    )
    real = adapter._overlapping
    calls = [0]

    async def first_misses(*args: Any, **kwargs: Any) -> list[mapping.Busy]:
        calls[0] += 1
        return [] if calls[0] == 1 else await real(*args, **kwargs)

    monkeypatch.setattr(adapter, "_overlapping", first_misses)  # as if the rival landed just after the check
    with pytest.raises(OutcomeUnknown) as caught:
        await adapter.book(
            BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=_at(4, 11))
        )
    assert "stands" in caught.value.message
    mine = [a for a in hx.emulator.appointments.values() if a.start == _at(4, 11) and a.id != rival.id]
    assert [a.attendance for a in mine] == ["booked"]  # what the error says: it stands

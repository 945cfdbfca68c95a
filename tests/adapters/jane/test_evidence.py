"""Issue 14 for Jane, over real HTTP against the emulator serving what the evidence shows (evidence-2026-11 §4):
the public catalog's `scheduled_duration` minutes and `all_treatment_ids` (the booking page's older fields as
fallbacks), the book step carrying the whole reserved record, every booking and move compared with what Jane stored,
and `locations verify` naming what it can and cannot observe."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from adapters.emulation import FaultKind
from adapters.errors import ContractChanged, InvalidReference, WriteMismatch
from adapters.jane import mapping, wire
from adapters.jane.emulator import Stored
from schemas.appointments import AppointmentStatus
from schemas.commands import BookCommand, RescheduleCommand
from schemas.verify import ProbeStatus, SettingCheck
from tests.adapters.jane.conftest import Rig

HOLD = "/admin/api/v2/appointments"
BOOK = "/admin/api/v3/appointments/"
MOVE = "/admin/api/v2/appointments/"


def _json(body: bytes) -> Any:
    return msgspec.json.decode(body)


def _active(rig: Rig) -> list[Stored]:
    return [a for a in rig.emulator.appointments.values() if a.state == "booked"]


def _by_setting(checks: list[SettingCheck]) -> dict[str, SettingCheck]:
    return {c.setting: c for c in checks}


# ------------------------------------------------------------------------------------------------ catalog


async def test_the_public_treatments_list_has_the_evidenced_shape(rig: Rig) -> None:
    treatments = await rig.http.get(f"{rig.base_url}/api/v2/treatments")
    [first, *_] = _json(treatments.content)["treatments"]
    assert set(first) >= {"id", "name", "price", "scheduled_duration", "book_online", "discipline_id"}
    assert set(first) >= {"staff_member_id", "location_ids", "capacity", "online_only"}
    assert "treatment_duration" not in first
    [staff, *_] = _json((await rig.http.get(f"{rig.base_url}/api/v2/staff_members")).content)
    assert set(staff) >= {"id", "all_treatment_ids", "allow_online_booking", "professional_name", "location_ids"}
    assert "treatment_ids" not in staff


@pytest.mark.parametrize("shape", ["evidenced", "legacy"])
async def test_services_have_minutes_and_practitioners_in_either_shape(rig: Rig, legacy_rig: Rig, shape: str) -> None:
    used = rig if shape == "evidenced" else legacy_rig
    adapter = used.adapter()
    services = await adapter.list_services()
    practitioners = {p.id for p in await adapter.list_practitioners()}
    assert sorted(s.duration_minutes for s in services) == sorted(s.duration_minutes for s in used.seed.services)
    assert all(s.practitioner_ids and set(s.practitioner_ids) == practitioners for s in services)


async def test_the_end_of_a_booking_is_the_treatments_scheduled_duration(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter)
    service = next(s for s in await adapter.list_services() if s.id == command.service_id)
    booked = await adapter.book(command)
    assert booked.end - booked.start == dt.timedelta(minutes=service.duration_minutes)
    [hold] = [e for e in rig.emulator.traffic.exchanges if e.method == "POST" and e.path == HOLD]
    sent = _json(hold.request_body)["appointment"]
    length = dt.datetime.fromisoformat(sent["end_at"]) - dt.datetime.fromisoformat(sent["start_at"])
    assert length == dt.timedelta(minutes=service.duration_minutes)


async def test_a_staff_member_without_full_name_is_named_from_the_other_fields(rig: Rig) -> None:
    adapter = rig.adapter()
    rig.fault(FaultKind.RESHAPE, "GET", "/api/v2/staff_members", drop_field="full_name")
    names = [p.name for p in await adapter.list_practitioners()]
    assert names == [s.professional_name for s in rig.emulator.staff.values()]


def test_the_name_falls_back_in_order() -> None:
    full = wire.StaffMember(id=7, full_name="A B", professional_name="Dr A", first_name="A", last_name="B")
    assert mapping.staff_name(full) == "A B"
    assert mapping.staff_name(msgspec.structs.replace(full, full_name=None)) == "Dr A"
    assert mapping.staff_name(wire.StaffMember(id=7, first_name="A", last_name="B")) == "A B"
    assert mapping.staff_name(wire.StaffMember(id=7)) == "Staff member 7"


def test_a_staff_scoped_treatment_is_linked_to_its_staff_member() -> None:
    treatment = wire.Treatment(id=117, name="T", scheduled_duration=30, staff_member_id=27)
    staff = [wire.StaffMember(id=27), wire.StaffMember(id=23, all_treatment_ids=[117]), wire.StaffMember(id=5)]
    service = mapping.service_of(treatment, staff)
    assert (service.duration_minutes, service.practitioner_ids) == (30, ["27", "23"])
    old = wire.Treatment(id=1, name="T", treatment_duration=2700)
    assert mapping.service_of(old, [wire.StaffMember(id=5, treatment_ids=[1])]).practitioner_ids == ["5"]
    assert old.minutes == 45


async def test_a_treatment_without_any_length_is_a_contract_change(rig: Rig) -> None:
    adapter = rig.adapter()
    rig.fault(FaultKind.RESHAPE, "GET", "/api/v2/treatments", drop_field="scheduled_duration")
    with pytest.raises(ContractChanged) as caught:
        await adapter.list_services()
    assert (caught.value.path, caught.value.problem) == ("$.treatments[0].scheduled_duration", "missing required field")


# ------------------------------------------------------------------------------------------------ book step


async def test_the_book_step_sends_the_whole_reserved_record_with_the_patient(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter)
    booked = await adapter.book(command)
    exchanges = list(rig.emulator.traffic.exchanges)
    [hold] = [e for e in exchanges if e.method == "POST" and e.path == HOLD]
    [book] = [e for e in exchanges if e.method == "PUT" and e.path == f"{BOOK}{booked.id}/book"]
    reserved = _json(hold.response_body)
    sent = _json(book.request_body)
    assert sent["book"] is True
    assert sent["browser_tab_id"] == adapter.tab
    record = sent["appointment"]
    chosen = ("treatment_id", "patient_id", "patient")
    assert {k: v for k, v in record.items() if k not in chosen} == {
        k: v for k, v in reserved.items() if k not in chosen
    }
    assert (reserved["treatment_id"], reserved["patient_id"]) == (None, None)
    assert {"location_name", "booker_type", "capacity", "break"} <= set(record)  # members the adapter does not read
    assert (record["treatment_id"], record["patient_id"]) == (int(command.service_id), int(command.patient_id))
    assert record["patient"]["id"] == record["patient_id"]
    assert record["patient"]["email"] == "jane.citizen@example.com"  # the patient's own record, as Jane holds it
    # Verification reads the booking back after the book step.
    after = exchanges[exchanges.index(book) + 1 :]
    assert [(e.method, e.path, e.query) for e in after] == [
        ("GET", f"{BOOK}{booked.id}", "booking_type=one_on_one_booking")
    ]


async def test_the_emulator_refuses_a_book_step_without_the_patient(rig: Rig) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter)
    start = command.start
    hold = await adapter._hold(int(command.practitioner_id), start, start + dt.timedelta(minutes=30))
    subset = {
        "id": hold.record.id,
        "location_id": hold.record.location_id,
        "staff_member_id": hold.record.staff_member_id,
        "start_at": hold.record.start_at.isoformat(),
        "end_at": hold.record.end_at.isoformat(),
        "treatment_id": int(command.service_id),
        "patient_id": int(command.patient_id),
    }
    headers = {
        **adapter.client._headers,
        "X-CSRF-Token": await adapter.client.csrf_token(),
        "Content-Type": "application/json",
    }
    body = {"book": True, "appointment": subset, "browser_tab_id": adapter.tab}
    refused = await rig.http.put(
        f"{rig.base_url}{BOOK}{hold.record.id}/book", content=msgspec.json.encode(body), headers=headers
    )
    assert (refused.status_code, _json(refused.content)) == (422, {"errors": {"patient": ["can't be blank"]}})
    assert [h.id for h in rig.emulator.holds()] == [hold.record.id]  # still only a hold


async def test_an_unknown_patient_is_refused_before_any_hold(rig: Rig) -> None:
    adapter = rig.adapter()
    command = msgspec.structs.replace(await rig.command(adapter), patient_id="999999")
    with pytest.raises(InvalidReference) as caught:
        await adapter.book(command)
    assert caught.value.field == "patient_id"
    assert not any(e.method == "POST" and e.path == HOLD for e in rig.emulator.traffic.exchanges)


# ------------------------------------------------------------------------------------------------ verified writes


@pytest.mark.parametrize(
    ("method", "prefix", "options", "expected"),
    [
        ("POST", HOLD, {"shift_minutes": 60}, [("start", 60), ("end", 60)]),
        ("PUT", BOOK, {"shift_minutes": -600}, [("start", -600), ("end", -600)]),
        ("PUT", BOOK, {"length_minutes": 1}, [("end", -29)]),
    ],
    ids=["hold-zone", "book-zone", "book-unit"],
)
async def test_a_booking_stored_differently_is_cancelled(
    rig: Rig, method: str, prefix: str, options: dict[str, int], expected: list[tuple[str, int]]
) -> None:
    adapter = rig.adapter()
    command = await rig.command(adapter, days_ahead=3, hour=12)
    service = next(s for s in await adapter.list_services() if s.id == command.service_id)
    assert service.duration_minutes == 30  # the shortest seeded service; `expected` counts on it
    rig.fault(FaultKind.MISSTORE, method, prefix, **options)
    with pytest.raises(WriteMismatch) as caught:
        await adapter.book(command)
    mismatch = caught.value
    assert mismatch.undone
    assert mismatch.differences == expected
    assert mismatch.settings == {name: adapter.write_settings[name] for name, _ in expected}
    assert _active(rig) == []  # neither at the stored time nor at the asked one
    [cancelled] = rig.emulator.appointments.values()
    assert cancelled.state == "cancelled"


async def _booked(rig: Rig) -> tuple[Any, BookCommand]:
    adapter = rig.adapter()
    command = await rig.command(adapter, days_ahead=4)
    return await adapter.book(command), command


@pytest.mark.parametrize("misreads", [1, 2], ids=["move-only", "move-and-way-back"])
async def test_a_reschedule_stored_differently_is_moved_back(rig: Rig, misreads: int) -> None:
    booked, _ = await _booked(rig)
    adapter = rig.adapter()
    rig.fault(FaultKind.MISSTORE, "PUT", MOVE, shift_minutes=120, count=misreads)
    with pytest.raises(WriteMismatch) as caught:
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=booked.start + dt.timedelta(days=1)))
    assert caught.value.undone
    assert caught.value.differences == [("start", 120), ("end", 120)]
    [active] = _active(rig)
    assert (active.id, active.start_at, active.end_at) == (int(booked.id), booked.start, booked.end)
    again = await adapter.get_appointment(booked.id)
    assert (again.status, again.start, again.end) == (AppointmentStatus.BOOKED, booked.start, booked.end)


async def test_a_reschedule_reads_the_move_back(rig: Rig) -> None:
    booked, _ = await _booked(rig)
    adapter = rig.adapter()
    moved = await adapter.reschedule(
        RescheduleCommand(appointment_id=booked.id, start=booked.start + dt.timedelta(hours=2))
    )
    assert moved.start == booked.start + dt.timedelta(hours=2)
    exchanges = list(rig.emulator.traffic.exchanges)
    [move] = [e for e in exchanges if e.method == "PUT" and e.path == f"{MOVE}{booked.id}"]
    after = exchanges[exchanges.index(move) + 1 :]
    assert [(e.method, e.path) for e in after] == [("GET", f"{BOOK}{booked.id}")]


# ------------------------------------------------------------------------------------------------ locations verify


async def test_verify_passes_on_the_emulator(rig: Rig) -> None:
    await _booked(rig)  # something for the appointment read and the patient probes to look at
    report = await rig.adapter().verify()
    assert report.ok, [p for p in report.probes if p.status is ProbeStatus.FAILED]
    statuses = {p.name: p.status for p in report.probes}
    assert set(statuses.values()) == {ProbeStatus.OK}
    assert {"calendar changes", "patient lookup", "patient record"} <= set(statuses)
    services = next(p for p in report.probes if p.name == "services")
    assert services.detail is not None
    assert services.detail.endswith("2 service(s), 2 linked to practitioners")


async def test_verify_names_a_treatment_field_jane_no_longer_sends(rig: Rig) -> None:
    rig.fault(FaultKind.RESHAPE, "GET", "/api/v2/treatments", drop_field="scheduled_duration", count=1000)
    report = await rig.adapter().verify()
    assert not report.ok
    [broken] = [p for p in report.probes if p.field_path is not None]
    assert (broken.name, broken.status, broken.seen) == ("services", ProbeStatus.FAILED, "missing required field")
    assert broken.field_path == "$.treatments[0].scheduled_duration"
    lengths = _by_setting(report.settings)["treatment length"]
    assert (lengths.agrees, lengths.observed) == (False, "missing required field at $.treatments[0].scheduled_duration")


async def test_observed_settings_on_the_evidenced_catalog(rig: Rig) -> None:
    adapter = rig.adapter()
    checks = _by_setting(await adapter.observed_settings())
    assert checks["treatment length"].observed == "scheduled_duration on 2 of 2 treatment(s)"
    assert checks["practitioner-service link"].observed == (
        "all_treatment_ids on 2 of 2 staff member(s), treatment_ids on 0"
    )
    assert checks["practitioner name"].observed == "full_name on 2 of 2 staff member(s), 0 with no name field"
    assert all(checks[s].agrees is True for s in ("treatment length", "practitioner-service link", "practitioner name"))
    calendar = checks["staff calendar list"]
    assert (calendar.agrees, calendar.observed) == (None, "answers and decodes; no appointment in the next 7 days")
    for unobserved in ("staff reschedule", "staff cancel", "patient create body"):
        assert (checks[unobserved].observed, checks[unobserved].agrees) == (None, None)
    assert "no public capture" in checks["staff cancel"].source
    assert "no public capture" in checks["staff reschedule"].source

    await adapter.book(await rig.command(adapter, days_ahead=1))
    calendar = _by_setting(await adapter.observed_settings())["staff calendar list"]
    assert (calendar.agrees, calendar.observed) == (
        True,
        "answers and decodes; 0 of 1 appointment(s) outside the asked location or dates",
    )


async def test_observed_settings_on_the_booking_pages_catalog(legacy_rig: Rig) -> None:
    checks = _by_setting(await legacy_rig.adapter().observed_settings())
    assert (checks["treatment length"].agrees, checks["treatment length"].observed) == (
        True,
        "scheduled_duration on 0 of 2 treatment(s), treatment_duration on 2",
    )
    assert (checks["practitioner-service link"].agrees, checks["practitioner-service link"].observed) == (
        True,
        "all_treatment_ids on 0 of 2 staff member(s), treatment_ids on 2",
    )


async def test_observed_settings_notice_staff_without_treatments_and_a_calendar_ignoring_its_dates(rig: Rig) -> None:
    adapter = rig.adapter()
    booked, _ = await _booked(rig)  # four days ahead
    far = await adapter.book(await rig.command(adapter, days_ahead=12))

    def ignores_dates(params: dict[str, str]) -> list[Stored]:
        return sorted(rig.emulator.appointments.values(), key=lambda a: a.id)

    rig.emulator.calendar = ignores_dates  # type: ignore[method-assign]
    rig.fault(FaultKind.RESHAPE, "GET", "/api/v2/staff_members", drop_field="all_treatment_ids")
    checks = _by_setting(await adapter.observed_settings())
    link = checks["practitioner-service link"]
    assert (link.agrees, link.observed) == (False, "all_treatment_ids on 0 of 2 staff member(s), treatment_ids on 0")
    calendar = checks["staff calendar list"]
    assert (calendar.agrees, calendar.observed) == (
        False,
        "answers and decodes; 1 of 2 appointment(s) outside the asked location or dates",
    )
    assert {booked.id, far.id} == {str(a.id) for a in rig.emulator.appointments.values()}


async def test_verify_names_a_staff_field_jane_no_longer_sends(rig: Rig) -> None:
    """`id` is the member the staff list's wire type requires (evidenced as the only non-optional one)."""
    adapter = rig.adapter()
    rig.fault(FaultKind.RESHAPE, "GET", "/api/v2/staff_members", drop_field="id", count=1000)
    with pytest.raises(ContractChanged) as caught:
        await adapter.list_practitioners()
    assert (caught.value.path, caught.value.problem) == ("$[0].id", "missing required field")
    report = await adapter.verify()
    failed = {p.name: p.field_path for p in report.probes if p.status is ProbeStatus.FAILED}
    assert failed == {"practitioners": "$[0].id", "services": "$[0].id"}
    link = _by_setting(report.settings)["practitioner-service link"]
    assert (link.agrees, link.observed) == (False, "missing required field at $[0].id")

"""Write verification and `locations verify` for Practice Better, in each behaviour the emulator can show: a
misstored create or move is undone and reported, `verify()` passes on a healthy account and names a field the
account stopped sending, and `observed_settings()` says what the account shows about the uncertain settings."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from adapters.emulation import Fault, FaultKind
from adapters.errors import ContractChanged, WriteMismatch
from schemas.appointments import Appointment, AppointmentStatus
from schemas.commands import AppointmentQuery, BookCommand, RescheduleCommand
from schemas.verify import ProbeStatus, SettingCheck
from tests.adapters.practicebetter.conftest import MODES, PB

MELBOURNE = ZoneInfo("Australia/Melbourne")
EMULATOR_MODES = [{"duration_unit": unit, "session_date_mode": mode} for unit, mode in MODES]
MODE_IDS = [f"{unit}-{mode}" for unit, mode in MODES]


def _future(days: int, hour: int) -> dt.datetime:
    day = dt.datetime.now(MELBOURNE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=MELBOURNE)


async def _command(pb: PB, start: dt.datetime) -> BookCommand:
    practitioner, service, patient = await pb.ids()
    return BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=start)


async def _active(pb: PB, patient_id: str) -> list[Appointment]:
    listed = await pb.adapter().list_appointments(AppointmentQuery(patient_id=patient_id))
    return [a for a in listed if a.status is not AppointmentStatus.CANCELLED]


@pytest.mark.parametrize("pb_emulator", EMULATOR_MODES, ids=MODE_IDS, indirect=True)
@pytest.mark.parametrize(
    ("shift", "length", "expected"),
    [(60, None, {"start": 60, "end": 60}), (0, 1, {"end": -29})],
    ids=["zone", "unit"],
)
async def test_a_misstored_booking_is_cancelled_and_reported(
    pb: PB, shift: int, length: int | None, expected: dict[str, int]
) -> None:
    command = await _command(pb, _future(3, 12))
    pb.emulator.faults.add(Fault(kind=FaultKind.MISSTORE, shift_minutes=shift, length_minutes=length))
    with pytest.raises(WriteMismatch) as caught:
        await pb.adapter().book(command)
    assert dict(caught.value.differences) == expected
    assert caught.value.undone
    assert set(caught.value.settings) == set(expected)
    assert not await _active(pb, command.patient_id)  # neither at the wrong time nor at the asked one
    assert pb.emulator.stats().active_appointments == 0


@pytest.mark.parametrize("pb_emulator", EMULATOR_MODES, ids=MODE_IDS, indirect=True)
@pytest.mark.parametrize("misreads", [1, 2], ids=["move", "move-and-way-back"])
async def test_a_misstored_reschedule_is_moved_back(pb: PB, misreads: int) -> None:
    command = await _command(pb, _future(4, 10))
    adapter = pb.adapter()
    booked = await adapter.book(command)
    pb.emulator.faults.add(Fault(kind=FaultKind.MISSTORE, method="PUT", shift_minutes=-90, count=misreads))
    with pytest.raises(WriteMismatch) as caught:
        await adapter.reschedule(RescheduleCommand(appointment_id=booked.id, start=_future(5, 14)))
    assert dict(caught.value.differences)["start"] == -90
    assert caught.value.undone
    [active] = await _active(pb, command.patient_id)
    assert (active.id, active.start, active.end) == (booked.id, booked.start, booked.end)


async def test_verify_passes_on_a_healthy_account(pb: PB) -> None:
    adapter = pb.adapter(paced=True)  # behind the practice's budget, as the gateway runs it
    practitioner, service, patient = await pb.ids(adapter)
    start = _future(2, 10)
    await adapter.book(BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=start))
    writes = [e for e in pb.emulator.exchanges if e.method != "GET" and e.path != "/oauth2/token"]
    report = await pb.adapter(paced=True).verify()
    failed = [p for p in report.probes if p.status is ProbeStatus.FAILED]
    assert report.ok, failed
    probes = {p.name: p for p in report.probes}
    assert probes["client records"].status is ProbeStatus.OK
    assert probes["appointment read"].status is ProbeStatus.OK
    assert probes["appointments"].detail == "1 appointment(s) in the next 7 days"
    assert [e for e in pb.emulator.exchanges if e.method != "GET" and e.path != "/oauth2/token"] == writes  # reads


@pytest.mark.parametrize(
    ("field", "path", "probe"),
    [
        ("endDate", None, "appointments"),
        ("id", "/company/administration/members", "authentication"),  # `check()` reads the team
        ("id", "/consultant/records", "client records"),
    ],
)
async def test_verify_names_a_field_the_account_stopped_sending(
    pb: PB, field: str, path: str | None, probe: str
) -> None:
    await pb.adapter().book(await _command(pb, _future(2, 10)))
    pb.emulator.faults.add(Fault(kind=FaultKind.RESHAPE, drop_field=field, path_prefix=path, count=1000))
    report = await pb.adapter(paced=True).verify()
    assert not report.ok
    [broken] = [p for p in report.probes if p.name == probe]
    assert broken.status is ProbeStatus.FAILED
    assert broken.field_path is not None
    assert broken.field_path.endswith(f".{field}")
    assert broken.seen == "missing required field"


async def test_a_reshaped_session_list_is_a_contract_change(pb: PB) -> None:
    command = await _command(pb, _future(2, 10))
    await pb.adapter().book(command)
    pb.emulator.faults.add(Fault(kind=FaultKind.RESHAPE, drop_field="sessionDate", count=1000))
    with pytest.raises(ContractChanged) as caught:
        await pb.adapter().list_appointments(AppointmentQuery(patient_id=command.patient_id))
    assert caught.value.path == "$.items[0].sessionDate"


def _checks(found: list[SettingCheck]) -> dict[str, SettingCheck]:
    return {c.setting: c for c in found}


@pytest.mark.parametrize("pb_emulator", EMULATOR_MODES, ids=MODE_IDS, indirect=True)
async def test_observed_settings_read_the_unit_off_an_existing_session(pb: PB) -> None:
    unit = pb.emulator.duration_unit
    other = "minutes" if unit == "seconds" else "seconds"
    empty = _checks(await pb.adapter(duration_unit="auto").observed_settings())
    assert (empty["duration_unit"].observed, empty["duration_unit"].agrees) == (None, None)

    await pb.adapter().book(await _command(pb, _future(2, 10)))
    for configured, agrees in (("auto", True), (unit, True), (other, False)):
        seen = _checks(await pb.adapter(duration_unit=configured).observed_settings())["duration_unit"]
        assert (seen.observed, seen.agrees) == (unit, agrees), configured
        assert seen.source.startswith("evidence-2026-11 §3.2")
    report = await pb.adapter(duration_unit=other, paced=True).verify()
    assert not report.ok  # a unit the account contradicts fails `locations verify`

    checks = _checks(await pb.adapter().observed_settings())
    mode = pb.emulator.session_date_mode
    assert (checks["session_date_mode"].configured, checks["session_date_mode"].agrees) == (mode, None)
    if mode == "wall_time":
        assert checks["session_date_zone"].configured == "Australia/Melbourne (the location's time zone)"
    else:
        assert "session_date_zone" not in checks

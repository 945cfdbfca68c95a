"""The shapes of `availabilities` integrators report all give the same bookable starts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.nookal import mapping, wire

ZONE = ZoneInfo("Australia/Sydney")
DAY = "2026-12-01"

SHAPES = {
    "status words per cell": {DAY: {"09:00": "available", "09:15": "available", "09:30": "unavailable",
                                    "09:45": "available", "10:00": "available"}},
    "schedule codes per cell": {DAY: {"09:00": 0, "09:15": "0", "09:30": 1, "09:45": 0, "10:00": 0}},
    "free times per date": {DAY: ["09:00", "09:15", "09:45", "10:00"]},
    "slot objects": [{"date": DAY, "startTime": t} for t in ("09:00:00", "09:15:00", "09:45:00", "10:00:00")],
    "v3 range": {"range": {"slots": [{"date": DAY, "startTime": t} for t in ("09:00", "09:15", "09:45", "10:00")]}},
}  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_thirty_minute_slots_need_two_free_cells(shape: object) -> None:
    cells = mapping.free_cells(
        msgspec.Raw(msgspec.json.encode({"availabilities": shape})[len('{"availabilities":') : -1])
    )
    starts = mapping.bookable_starts(cells, 30, ZONE)
    local = [s.astimezone(ZONE).strftime("%H:%M") for s in starts]
    assert local == ["09:00", "09:45"]
    assert starts[0] == dt.datetime(2026, 12, 1, 9, 0, tzinfo=ZONE).astimezone(dt.UTC)


def test_wall_clock_round_trip_across_a_dst_change() -> None:
    # Sydney goes forward at 02:00 on 2026-10-04: 01:30 is +10:00, 03:30 is +11:00.
    before = mapping.instant("2026-10-04", "01:30", ZONE)
    after = mapping.instant("2026-10-04", "03:30:00", ZONE)
    assert before == dt.datetime(2026, 10, 3, 15, 30, tzinfo=dt.UTC)
    assert after == dt.datetime(2026, 10, 3, 16, 30, tzinfo=dt.UTC)
    assert mapping.wall(after, ZONE) == ("2026-10-04", "03:30:00")


def test_change_cursor_near_clocks_going_back_asks_from_an_hour_earlier() -> None:
    # Sydney goes back at 03:00 on 2026-04-05: 02:00-03:00 happens twice.
    cursor = dt.datetime(2026, 4, 5, 2, 30, tzinfo=ZONE).astimezone(dt.UTC)
    assert mapping.since_stamp(cursor, ZONE) == "2026-04-05 01:30:00"
    ordinary = dt.datetime(2026, 5, 5, 2, 30, tzinfo=ZONE).astimezone(dt.UTC)
    assert mapping.since_stamp(ordinary, ZONE) == "2026-05-05 02:30:00"


def test_loose_values() -> None:
    assert [mapping.flag(v) for v in ("1", 1, True, "true")] == [True] * 4
    assert [mapping.flag(v) for v in ("0", 0, None, "", False)] == [False] * 5
    assert mapping.ids("1, 2") == {"1", "2"}
    assert mapping.ids([1, "2", None]) == {"1", "2"}


@pytest.mark.parametrize(
    ("raw", "notes", "operation_id"),
    [
        ("Knee review [egw:op_abc-1]", "Knee review", "op_abc-1"),
        ("[egw:op_abc-1]", None, "op_abc-1"),
        ("Knee review", "Knee review", None),
        (None, None, None),
    ],
)
def test_the_gateways_marker_is_read_and_hidden_from_callers(
    raw: str | None, notes: str | None, operation_id: str | None
) -> None:
    a = wire.Appointment(
        ID="7", patientID="3", appointmentDate=DAY, appointmentStartTime="09:00:00", appointmentEndTime="09:30:00",
        practitionerID="2", appointmentTypeID="4", Notes=raw,
    )  # fmt: skip
    mapped = mapping.appointment_of(a, ZONE, "loc")
    assert (mapped.notes, mapped.operation_id) == (notes, operation_id)

"""Quiet change-feed polls stay quiet on a busy SimplePractice calendar (issue 17): clients newest first, the near
window whole, one far slice a poll. What a user notices: how many requests a poll costs, how soon a change near now
and a change months ahead are reported, and that a cursor stored by an older version still works. Real HTTP against
the emulator, which serves `/frontend/appointments` by time range only, 50 a page, as the captures show."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest

from adapters.errors import Rejected
from adapters.simplepractice import feed
from adapters.simplepractice.adapter import LIST_AHEAD, LIST_BACK, SimplePracticeAdapter
from schemas.appointments import AppointmentStatus
from schemas.changes import ChangeSet
from tests.adapters.simplepractice.conftest import ZONE, Env

LONG_AGO = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)  # when the seeded calendar was last touched


def fill(env: Env, per_day: int) -> dict[int, list[str]]:
    """`per_day` appointments a day at 09:00 local onwards, two weeks back to six months ahead, last changed long
    ago (and the seeded client too); their ids by day offset from today."""
    em = env.emulator
    with em._lock:
        for client in em.clients.values():
            client.updated_at = LONG_AGO
    [client_id] = list(em.clients)
    today = dt.date.today()
    days: dict[int, list[str]] = {}
    for offset in range(-14, 181):
        nine = dt.datetime.combine(today + dt.timedelta(days=offset), dt.time(9), ZoneInfo(ZONE))
        days[offset] = env.add_appointments(per_day, client_id=client_id, first=nine, updated=LONG_AGO)
    return days


async def poll(env: Env, adapter: SimplePracticeAdapter, cursor: str) -> tuple[ChangeSet, int]:
    """One poll and the requests SimplePractice received for it."""
    before = env.emulator.stats().requests
    changes = await adapter.changes_since(cursor)
    return changes, env.emulator.stats().requests - before


async def cancel(env: Env, appointment_id: str) -> None:
    """The clinic cancelling in SimplePractice's own screens."""
    await env.control(f"appointments/{appointment_id}/attendance", {"status": "Canceled"})


def pass_bound(env: Env) -> int:
    """The documented bound on one pass: about E / 40 polls for E evenly spread calendar entries, plus the first
    pass's settling."""
    return math.ceil(len(env.emulator.appointments) / feed.SLICE_TARGET) + 8


@pytest.mark.parametrize(("per_day", "cost"), [(5, 3), (40, 5)])
async def test_a_quiet_poll_costs_clients_near_window_pages_and_one_slice(env: Env, per_day: int, cost: int) -> None:
    fill(env, per_day)  # 5 a day: 15 in the near window, one page; 40 a day: 120, three pages
    adapter = env.adapter()
    cursor = (await adapter.changes_since(None)).cursor
    for _ in range(6):
        changes, requests = await poll(env, adapter, cursor)
        assert requests == cost  # 1 (clients) + ceil(near / 50) + 1 (far slice)
        assert (changes.patients, changes.appointments) == ([], [])  # nothing changed: nothing reported
        cursor = changes.cursor


async def test_the_old_feed_read_the_whole_window_on_every_poll(env: Env) -> None:
    """The figure the walk replaces: the same calendar listed whole costs 20 requests (975 entries / 50)."""
    fill(env, 5)
    now = dt.datetime.now(dt.UTC)
    before = env.emulator.stats().requests
    await env.adapter()._calendar(now - feed.CHANGE_BACK, now + feed.CHANGE_AHEAD)
    assert env.emulator.stats().requests - before == 20


async def test_a_change_near_now_is_reported_at_the_next_poll_and_then_not_again(env: Env) -> None:
    days = fill(env, 5)
    adapter = env.adapter()
    cursor = (await adapter.changes_since(None)).cursor
    tomorrow = days[1][0]
    await cancel(env, tomorrow)

    changes, _ = await poll(env, adapter, cursor)
    [seen] = [a for a in changes.appointments if a.id == tomorrow]
    assert seen.status is AppointmentStatus.CANCELLED

    # Only what is stamped at the cursor may come again (`>=`); it stops once the cursor moves past it.
    again, _ = await poll(env, adapter, changes.cursor)
    assert {a.id for a in again.appointments} <= {tomorrow}
    await _next_second()
    later = days[0][1]
    await cancel(env, later)
    moved, _ = await poll(env, adapter, again.cursor)
    assert later in {a.id for a in moved.appointments}
    after, _ = await poll(env, adapter, moved.cursor)
    assert {a.id for a in after.appointments} <= {later}


async def test_a_cancellation_100_days_ahead_is_reported_within_one_pass(env: Env) -> None:
    days = fill(env, 5)
    adapter = env.adapter()
    cursor = (await adapter.changes_since(None)).cursor
    for _ in range(3):  # the walk is under way; the far change may land behind it
        cursor = (await adapter.changes_since(cursor)).cursor
    far = days[100][2]
    await cancel(env, far)

    for _ in range(pass_bound(env)):
        changes, requests = await poll(env, adapter, cursor)
        assert requests == 3
        cursor = changes.cursor
        if any(a.id == far and a.status is AppointmentStatus.CANCELLED for a in changes.appointments):
            break
    else:
        pytest.fail(f"a cancellation 100 days ahead was not reported within {pass_bound(env)} polls")
    reported_again, _ = await poll(env, adapter, cursor)
    assert far not in {a.id for a in reported_again.appointments}  # not twice in a row


async def test_a_pass_over_an_even_calendar_takes_about_e_over_40_polls(env: Env) -> None:
    fill(env, 5)  # 975 entries: ~25 polls
    adapter = env.adapter()
    cursor = (await adapter.changes_since(None)).cursor
    ends: list[int] = []
    for polls in range(1, 3 * pass_bound(env)):
        cursor = (await adapter.changes_since(cursor)).cursor
        if feed.parse(cursor, dt.datetime.now(dt.UTC)).walk.at is None:
            ends.append(polls)
            if len(ends) == 2:
                break
    first, second = ends[0], ends[1] - ends[0]
    assert first <= pass_bound(env)
    assert second <= math.ceil(len(env.emulator.appointments) / feed.SLICE_TARGET) + 2


@pytest.mark.parametrize("style", ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S+00:00"])
async def test_a_cursor_stored_by_an_older_version_still_works(env: Env, style: str) -> None:
    days = fill(env, 5)
    adapter = env.adapter()
    stored = dt.datetime.now(dt.UTC).strftime(style)  # what the feed before the walk kept: a bare RFC 3339 time
    near, far = days[1][3], days[100][3]
    await cancel(env, near)
    await cancel(env, far)

    changes, requests = await poll(env, adapter, stored)
    assert requests == 3
    assert near in {a.id for a in changes.appointments}
    assert changes.cursor.partition("|")[1] == "|"  # the walk's state travels on from here

    seen = {a.id for a in changes.appointments}
    cursor = changes.cursor
    for _ in range(pass_bound(env)):
        if far in seen:
            break
        changes, _ = await poll(env, adapter, cursor)
        seen |= {a.id for a in changes.appointments}
        cursor = changes.cursor
    assert far in seen


@pytest.mark.parametrize("cursor", ["yesterday", "2026-11-01T00:00:00Z|{not json", '2026-11-01T00:00:00Z|{"floor":1}'])
async def test_a_cursor_no_version_wrote_is_refused(env: Env, cursor: str) -> None:
    with pytest.raises(Rejected):
        await env.adapter().changes_since(cursor)


async def _next_second() -> None:
    """SimplePractice stamps changes to the second: the next change must fall in a later one."""
    await asyncio.sleep(1.05 - dt.datetime.now().microsecond / 1e6)


async def test_a_bare_cursor_older_than_a_day_reads_the_whole_window_once(env: Env) -> None:
    """A location not polled for a day (here a year): caught up in one poll, the way the feed before the walk read
    the calendar every poll; the polls after it are quiet again."""
    fill(env, 5)
    adapter = env.adapter()
    office = next(iter(env.emulator.offices))
    now = dt.datetime.now(dt.UTC)
    watched = {
        a.id
        for a in env.emulator.appointments.values()
        if a.office_id == office and now - feed.CHANGE_BACK <= a.start < now + feed.CHANGE_AHEAD
    }
    changes, requests = await poll(env, adapter, (now - dt.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert {a.id for a in changes.appointments} == watched
    assert requests == 1 + 20  # the clients (one page), the window's 975 entries at 50 a page
    quiet, requests = await poll(env, adapter, changes.cursor)
    assert requests == 3
    since = feed.parse(changes.cursor, now).since  # only what is stamped in the cursor's second comes again
    assert all(a.updated_at is not None and a.updated_at < since + dt.timedelta(seconds=1) for a in quiet.appointments)


async def test_the_full_listing_reads_what_a_clients_own_listing_covers(env: Env) -> None:
    """`sync --full` (the 2000-01-01 cursor): ten years back to two ahead, the span `list_appointments` reads for
    one client, so the gateway's snapshots from stored facts count what a client's own listing would."""
    fill(env, 5)
    adapter = env.adapter()
    office = next(iter(env.emulator.offices))
    now = dt.datetime.now(dt.UTC)
    span = (now - LIST_BACK, now + LIST_AHEAD)
    inside = [a for a in env.emulator.appointments.values() if span[0] <= a.start < span[1]]
    listed = {a.id for a in inside if a.office_id == office}
    changes, requests = await poll(env, adapter, "2000-01-01T00:00:00Z")
    assert {a.id for a in changes.appointments} == listed
    assert requests == 1 + math.ceil(len(inside) / 50)  # the clients, then every entry of the span at 50 a page
    assert SimplePracticeAdapter.full_listing_complete
    _, requests = await poll(env, adapter, changes.cursor)
    assert requests == 3


@pytest.mark.parametrize(("last_poll_days_ago", "reported"), [(3, True), (0, False)])
async def test_an_appointment_reaching_the_near_window_before_the_walk_is_checked_as_the_walk_would(
    env: Env, last_poll_days_ago: int, reported: bool
) -> None:
    """Changed while it was months ahead and the walk had not come to it yet, then time brought it near: the near
    window (which reports changes since the cursor) must not drop it. Time is moved by the cursor's `polled`."""
    days = fill(env, 5)
    now = dt.datetime.now(dt.UTC)
    began = now - dt.timedelta(minutes=5)
    tomorrow = days[1][0]
    await cancel(env, tomorrow)
    walk = feed.Walk(
        floor=began, cycle=began, polled=now - dt.timedelta(days=last_poll_days_ago), at=now + dt.timedelta(days=100)
    )
    cursor = feed.render(now + dt.timedelta(seconds=5), walk)  # the change is older than the cursor
    changes, _ = await poll(env, env.adapter(), cursor)
    assert (tomorrow in {a.id for a in changes.appointments}) is reported

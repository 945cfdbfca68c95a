"""Quiet change-feed polls stay quiet on a busy Practice Better account (issue 17): records since the cursor, the
newest-created page of sessions, the near window, one page of a walk over every session. What a user notices: what a
poll costs against the 10,000 requests a day, how soon a change near now, a change months ahead and a new booking
months ahead are reported, and that a cursor stored by an older version still works. Real HTTP against the emulator,
which lists sessions newest created first with the swagger's filters only (no "modified since")."""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import httpx
import pytest

from adapters.emulation import Fault, FaultKind
from adapters.errors import Rejected
from adapters.practicebetter import feed, wire
from adapters.practicebetter.adapter import PracticeBetterAdapter
from adapters.practicebetter.emulator import PracticeBetterEmulator, SessionRec
from schemas.appointments import AppointmentStatus
from schemas.changes import ChangeSet
from schemas.verify import ProbeStatus
from tests.adapters.practicebetter.conftest import PB

UNLIMITED: dict[str, Any] = {"rate_per_second": 1e6, "burst": 10**6}  # many polls in a row, not a rate test
LONG_AGO = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)  # when the seeded account was last touched
SESSIONS = 1000

pytestmark = pytest.mark.parametrize("pb_emulator", [UNLIMITED], indirect=True)


def fill(em: PracticeBetterEmulator, count: int = SESSIONS) -> dict[int, str]:
    """`count` sessions of the first practice, one a day-slot from a day back to six months ahead, created in a
    shuffled order long ago (so far-ahead sessions sit on every page of a pass); ids by day offset (first of the
    day). The practice's client records are last changed long ago too."""
    company = em.companies[em.company_ids()[0]]
    consultant = next(m.id for m in company.members.values() if m.is_practitioner)
    service = next(iter(company.services))
    records = [r for r in em.records.values() if r.company_id == company.id]
    starts = [
        dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        + dt.timedelta(hours=n * 181 * 24 // count)
        - dt.timedelta(days=1)
        for n in range(count)
    ]
    random.Random(17).shuffle(starts)
    by_day: dict[int, str] = {}
    today = dt.datetime.now(dt.UTC).date()
    with em._lock:
        for record in records:
            record.modified = LONG_AGO
        for n, start in enumerate(starts):
            created = LONG_AGO + dt.timedelta(seconds=n)
            session = SessionRec(
                em._new_id(), company.id, records[n % len(records)].id, consultant, service, "face", start, 3000,
                created, created,
            )  # fmt: skip
            em.sessions[session.id] = session
            by_day.setdefault((start.date() - today).days, session.id)
    return by_day


async def poll(pb: PB, adapter: PracticeBetterAdapter, cursor: str) -> tuple[ChangeSet, int]:
    """One poll and the API requests Practice Better received for it (token mints aside: about one an hour)."""
    em = pb.emulator
    before = em.stats().requests - em.token_requests
    changes = await adapter.changes_since(cursor)
    return changes, em.stats().requests - em.token_requests - before


def walk_of(cursor: str) -> feed.Walk:
    return feed.parse(cursor, dt.datetime.now(dt.UTC)).walk


async def practice_cancels(pb: PB, session_id: str) -> None:
    response = await pb.http.post(f"{pb.base_url}/_emulator/sessions/{session_id}/cancel")
    assert response.status_code == 204, response.text


def pass_polls(pb: PB) -> int:
    """The documented bound on one pass: ceil(S / 100) polls, S the sessions dated from a day back on."""
    return math.ceil(len(pb.emulator.sessions) / 100)


async def test_a_quiet_poll_costs_four_requests_and_reports_nothing(pb: PB) -> None:
    fill(pb.emulator)
    adapter = pb.adapter()
    cursor = (await adapter.changes_since(None)).cursor
    costs: list[tuple[bool, int]] = []
    for _ in range(pass_polls(pb) + 2):  # a whole pass and the start of the next
        at_pass_start = feed.SEPARATOR not in cursor or walk_of(cursor).before is None
        changes, requests = await poll(pb, adapter, cursor)
        assert (changes.patients, changes.appointments) == ([], [])  # nothing changed: nothing reported
        costs.append((at_pass_start, requests))
        cursor = changes.cursor
    # records + newest sessions + the near window (~16 sessions, one page) + a walk page, which at a pass's start
    # is the newest-sessions page itself
    assert costs == [(start, 3 if start else 4) for start, _ in costs]
    assert sum(1 for start, _ in costs if start) == 2  # the pass took pass_polls(pb) polls
    assert pb.emulator.token_requests == 1


async def test_with_session_webhooks_a_quiet_poll_costs_two_requests(pb: PB) -> None:
    fill(pb.emulator)
    adapter = pb.adapter(session_webhooks=True)
    cursor = (await adapter.changes_since(None)).cursor
    for _ in range(pass_polls(pb) + 2):
        changes, requests = await poll(pb, adapter, cursor)
        assert requests == 2  # records and one page of the walk
        assert changes.appointments == []
        cursor = changes.cursor


async def test_the_old_feed_listed_every_session_on_every_poll(pb: PB) -> None:
    """The figure the walk replaces: sessions from a day back, listed whole, are 10 requests (1,000 / 100)."""
    fill(pb.emulator)
    adapter = pb.adapter()
    await adapter.client.token()
    before = pb.emulator.stats().requests
    await adapter.client.list("consultant/sessions", wire.Session, [("date_gte", "2000-01-01T00:00:00Z")])
    assert pb.emulator.stats().requests - before == 10


async def test_a_change_near_now_is_reported_at_the_next_poll_and_not_again(pb: PB) -> None:
    days = fill(pb.emulator)
    adapter = pb.adapter()
    cursor = (await adapter.changes_since(None)).cursor
    tomorrow = days[1]
    await practice_cancels(pb, tomorrow)

    changes, _ = await poll(pb, adapter, cursor)
    [seen] = [a for a in changes.appointments if a.id == tomorrow]
    assert seen.status is AppointmentStatus.CANCELLED
    # Only what is stamped within the cursor's second may come again (`>=`), and nothing else.
    for _ in range(3):
        changes, _ = await poll(pb, adapter, changes.cursor)
        assert {a.id for a in changes.appointments} <= {tomorrow}


async def test_a_cancellation_100_days_ahead_is_reported_within_one_pass(pb: PB) -> None:
    days = fill(pb.emulator)
    adapter = pb.adapter()
    cursor = (await adapter.changes_since(None)).cursor
    for _ in range(4):  # the walk is under way: the session may be on a page it has already read
        cursor = (await adapter.changes_since(cursor)).cursor
    far = days[100]
    await practice_cancels(pb, far)

    for _ in range(pass_polls(pb)):
        changes, requests = await poll(pb, adapter, cursor)
        assert requests <= 4
        cursor = changes.cursor
        if any(a.id == far and a.status is AppointmentStatus.CANCELLED for a in changes.appointments):
            break
    else:
        pytest.fail(f"a cancellation 100 days ahead was not reported within {pass_polls(pb)} polls")
    changes, _ = await poll(pb, adapter, cursor)
    assert far not in {a.id for a in changes.appointments}  # not twice in a row


async def test_a_session_booked_100_days_ahead_is_reported_at_the_next_poll(pb: PB) -> None:
    fill(pb.emulator)
    adapter = pb.adapter()
    cursor = (await adapter.changes_since(None)).cursor
    for _ in range(4):
        cursor = (await adapter.changes_since(cursor)).cursor
    em = pb.emulator
    company = em.companies[em.company_ids()[0]]
    practitioner, service, patient = await pb.ids(adapter)
    when = dt.datetime.now(dt.UTC) + dt.timedelta(days=100)
    booked = em.create_session(  # the client booking through Practice Better's own portal
        company,
        {
            "clientRecordId": patient,
            "serviceId": service,
            "serviceType": "face",
            "sessionDate": when.strftime("%Y-%m-%dT%H:%M:%S"),
            "duration": 1800,
            "asConsultantId": practitioner,
            "ignoreConflict": True,
        },
    )
    changes, requests = await poll(pb, adapter, cursor)
    assert booked.id in {a.id for a in changes.appointments}
    assert requests == 4


@pytest.mark.parametrize("style", ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S+00:00"])
async def test_a_cursor_stored_by_an_older_version_still_works(pb: PB, style: str) -> None:
    days = fill(pb.emulator)
    adapter = pb.adapter()
    stored = dt.datetime.now(dt.UTC).strftime(style)  # what the feed before the walk kept: a bare RFC 3339 time
    near, far = days[1], days[100]
    await practice_cancels(pb, near)
    await practice_cancels(pb, far)

    changes, requests = await poll(pb, adapter, stored)
    assert requests == 3  # records, the pass's first page, the near window
    assert near in {a.id for a in changes.appointments}
    assert walk_of(changes.cursor).before is not None  # the walk's state travels on from here
    seen = {a.id for a in changes.appointments}
    cursor = changes.cursor
    for _ in range(pass_polls(pb)):
        if far in seen:
            break
        changes, _ = await poll(pb, adapter, cursor)
        seen |= {a.id for a in changes.appointments}
        cursor = changes.cursor
    assert far in seen


class RefusesBeforeId(httpx.AsyncBaseTransport):
    """Between the adapter and the emulator: refuses `before_id` on sessions, as an id Practice Better no longer
    knows (a session deleted in between) might be."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refusing = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refusing and request.url.path == "/consultant/sessions" and "before_id" in request.url.params:
            return httpx.Response(400, json={"message": "The value 'before_id' is not valid."})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_walk_that_cannot_resume_starts_its_pass_over_without_losing_changes(pb: PB) -> None:
    fill(pb.emulator)
    transport = RefusesBeforeId()
    async with httpx.AsyncClient(transport=transport, timeout=5) as http:
        adapter = PB(emulator=pb.emulator, base_url=pb.base_url, http=http).adapter()
        cursor = (await adapter.changes_since(None)).cursor
        for _ in range(3):
            cursor = (await adapter.changes_since(cursor)).cursor
        stuck = walk_of(cursor)
        assert stuck.before is not None
        transport.refusing = True
        changes = await adapter.changes_since(cursor)
        restarted = walk_of(changes.cursor)
        assert restarted.before is None
        assert (restarted.floor, restarted.cycle) == (stuck.floor, stuck.cycle)  # the pass is not counted as done


@pytest.mark.parametrize("cursor", ["yesterday", "2026-11-01T00:00:00Z|{not json", '2026-11-01T00:00:00Z|{"floor":1}'])
async def test_a_cursor_no_version_wrote_is_refused(pb: PB, cursor: str) -> None:
    with pytest.raises(Rejected):
        await pb.adapter().changes_since(cursor)


async def test_a_bare_cursor_older_than_a_day_lists_every_session_once(pb: PB) -> None:
    """The full listing's cursor (2000-01-01), or a location not polled for a day: caught up in one poll, the way
    the feed before the walk listed sessions every poll; the polls after it are quiet again."""
    fill(pb.emulator)
    adapter = pb.adapter()
    changes, requests = await poll(pb, adapter, "2000-01-01T00:00:00Z")
    company = pb.emulator.company_ids()[0]
    mine = {s.id for s in pb.emulator.sessions.values() if s.company_id == company}
    assert {a.id for a in changes.appointments} == mine
    assert requests == 1 + 10  # the records (one page), then 1,000 sessions at 100 a page
    quiet, requests = await poll(pb, adapter, changes.cursor)
    assert requests == 3  # a pass starts: records, its first page, the near window
    since = feed.parse(changes.cursor, dt.datetime.now(dt.UTC)).since  # only what is stamped in its second again
    assert all(a.updated_at is not None and a.updated_at < since + dt.timedelta(seconds=1) for a in quiet.appointments)


@pytest.mark.parametrize(("last_poll_days_ago", "reported"), [(3, True), (0, False)])
async def test_a_session_reaching_the_near_window_before_the_walk_is_checked_as_the_walk_would(
    pb: PB, last_poll_days_ago: int, reported: bool
) -> None:
    """Changed while it was months ahead and the walk had not come to it yet, then time brought it near: the near
    window (which reports changes since the cursor) must not drop it. Time is moved by the cursor's `polled`."""
    days = fill(pb.emulator)
    now = dt.datetime.now(dt.UTC)
    began = now - dt.timedelta(minutes=5)
    tomorrow = days[1]
    await practice_cancels(pb, tomorrow)
    walk = feed.Walk(  # at the end of a pass: the walk's page holds nothing more
        floor=began,
        cycle=began,
        polled=now - dt.timedelta(days=last_poll_days_ago),
        start=now - dt.timedelta(days=1),
        before=min(pb.emulator.sessions),
    )
    cursor = feed.render(now + dt.timedelta(seconds=5), walk)  # the change is older than the cursor
    changes, _ = await poll(pb, pb.adapter(), cursor)
    assert (tomorrow in {a.id for a in changes.appointments}) is reported


async def test_with_session_webhooks_the_walk_still_finds_a_change_near_now(pb: PB) -> None:
    """A delivery lost: the walk reads every session once a pass, near ones included."""
    days = fill(pb.emulator)
    adapter = pb.adapter(session_webhooks=True)
    cursor = (await adapter.changes_since(None)).cursor
    await practice_cancels(pb, days[1])
    seen: set[str] = set()
    for _ in range(pass_polls(pb) + 1):
        changes, _ = await poll(pb, adapter, cursor)
        seen |= {a.id for a in changes.appointments}
        cursor = changes.cursor
    assert days[1] in seen


async def test_locations_verify_says_whether_sessions_carry_the_feeds_stamps(pb: PB) -> None:
    fill(pb.emulator, 30)
    healthy = {p.name: p for p in (await pb.adapter().verify()).probes}
    assert healthy["session change stamps"].status is ProbeStatus.OK
    pb.emulator.faults.add(
        Fault(kind=FaultKind.RESHAPE, drop_field="dateModified", path_prefix="/consultant/sessions", count=1000)
    )
    stripped = {p.name: p for p in (await pb.adapter().verify()).probes}
    assert stripped["session change stamps"].status is ProbeStatus.FAILED
    assert stripped["session change stamps"].field_path == "$.items[].dateModified"

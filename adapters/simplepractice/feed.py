"""The change feed's cursor and its walk over the calendar (why: `SimplePracticeAdapter.changes_since`).

The cursor is `<since>|<walk as JSON>`: `since` (RFC 3339) bounds what the clients and the near window report; the
walk is where the next far slice starts, how long it is, and which changes it reports. A bare RFC 3339 time (what
the first poll returns and what versions before the walk stored) is read as a walk about to begin, or, when
more than a day old, as a catch-up (`catching_up`).

Why nothing is missed: the near window reports what changed since the cursor, on every poll. Every other stretch of
the watched window is read once per pass, reporting what changed since the previous pass began (`floor`): a change
made after the pass read that stretch is after `floor` for the next pass. An appointment that reaches the near
window before the walk reaches it is checked against `floor` on the poll it enters (`entered`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from adapters.errors import Rejected
from adapters.stamps import parse_time, whole_second

CHANGE_BACK = timedelta(days=14)  # the feed watches appointments starting from two weeks ago ...
CHANGE_AHEAD = timedelta(days=180)  # ... to six months ahead
NEAR_BACK = timedelta(days=1)  # the near window, read whole on every poll and left out of the walk
NEAR_AHEAD = timedelta(days=2)
FIRST_SLICE = timedelta(days=2)  # a walk's first far slice; later ones are fitted to the calendar's density
MIN_SLICE = timedelta(hours=1)  # a full page at this length reads the slice's every page instead of halving again
SLICE_TARGET = 40  # calendar entries a slice is fitted to hold: one page of 50 with room for a busier stretch
CATCH_UP = timedelta(days=1)  # a bare cursor older than this is caught up by reading the whole window at once
SEPARATOR = "|"


class Walk(msgspec.Struct, frozen=True, kw_only=True):
    """One pass of far slices over [now - CHANGE_BACK, now + CHANGE_AHEAD] outside the near window, one a poll."""

    floor: datetime  # far slices report appointments changed at or after this: when the previous pass began
    cycle: datetime  # when this pass began (the next pass's floor)
    polled: datetime  # when the poll that wrote this cursor ran (where the near window ended then, less NEAR_AHEAD)
    at: datetime | None = None  # where the next slice starts; None: at the window's start
    width: int = int(FIRST_SLICE.total_seconds())  # the next slice's length, seconds


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    since: datetime
    walk: Walk
    bare: bool = False  # a bare RFC 3339 time: the first poll, a full listing, or a version before the walk


def parse(cursor: str, now: datetime) -> Cursor:
    """The cursor this adapter returned, or a bare RFC 3339 time: a pass beginning now that reports every change
    since that time (as if the last poll ran then)."""
    head, separator, tail = cursor.partition(SEPARATOR)
    try:
        since = parse_time(head.strip())
        if not separator:
            return Cursor(since=since, walk=Walk(floor=since, cycle=whole_second(now), polled=since), bare=True)
        walk = msgspec.json.decode(tail, type=Walk)
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise Rejected("the change cursor is not one this adapter returned (nor an RFC 3339 time)") from None
    stamps = (walk.floor, walk.cycle, walk.polled, walk.at)
    if any(stamp is not None and stamp.tzinfo is None for stamp in stamps) or walk.width <= 0:
        raise Rejected("the change cursor's walk is not one this adapter wrote")
    return Cursor(since=since, walk=walk)


def render(since: datetime, walk: Walk) -> str:
    fields = msgspec.structs.replace(
        walk,
        floor=whole_second(walk.floor),
        cycle=whole_second(walk.cycle),
        polled=whole_second(walk.polled),
        at=whole_second(walk.at) if walk.at is not None else None,
    )
    stamp = whole_second(since).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp}{SEPARATOR}{msgspec.json.encode(fields).decode()}"


def catching_up(cursor: Cursor, now: datetime) -> bool:
    """A bare cursor from more than a day ago (a full listing from 2000-01-01, a location not polled for a day):
    the whole window is read at once, as the feed before the walk read it on every poll."""
    return cursor.bare and cursor.since < now - CATCH_UP


def caught_up(now: datetime) -> Walk:
    """The walk after the whole window was read in this poll: a pass starts, reporting what changes from now on."""
    return Walk(floor=now, cycle=now, polled=now)


def window(now: datetime) -> tuple[datetime, datetime]:
    return now - CHANGE_BACK, now + CHANGE_AHEAD


def near(now: datetime) -> tuple[datetime, datetime]:
    return now - NEAR_BACK, now + NEAR_AHEAD


def entered(start: datetime, walk: Walk) -> bool:
    """Whether an appointment starting at `start` came into the near window since the last poll (the walk may not
    have read it yet, so it is checked against `floor` rather than `since`)."""
    return start >= walk.polled + NEAR_AHEAD


def next_slice(walk: Walk, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the far slice to read now: from where the walk stands (never before the window, which moves
    on with time) for `width`, cut at the window's end, stepping over the near window. What the near window left
    behind since the walk's last slice ended before it is read by the next pass."""
    low, high = window(now)
    near_low, near_high = near(now)
    start = low if walk.at is None or walk.at < low or walk.at >= high else walk.at
    if start >= near_low - MIN_SLICE and start < near_high:
        start = near_high
    end = min(start + timedelta(seconds=walk.width), high)
    if start < near_low < end:
        end = near_low
    return start, end


def after_slice(
    walk: Walk, start: datetime, end: datetime, entries: int, complete: bool, now: datetime, reach: datetime | None
) -> Walk:
    """The walk after reading [start, end): a slice that filled its page and was not read whole is read again at
    half the length, or shorter, up to the latest start on that page (`reach`: where a page sorted by start time
    ended; nothing relies on that order but the length); a read one moves the walk on, its next length fitted to
    `SLICE_TARGET` (at most halved or doubled per step); a slice ending at the window's end ends the pass."""
    low, high = window(now)
    shortest = int(MIN_SLICE.total_seconds())
    if not complete:
        width = walk.width // 2
        if reach is not None:
            width = min(width, int((reach - start).total_seconds()))
        return msgspec.structs.replace(walk, at=start, width=max(shortest, width), polled=now)
    factor = min(2.0, max(0.5, SLICE_TARGET / max(entries, 1)))
    most = int((high - low).total_seconds())
    width = min(most, max(shortest, int(walk.width * factor)))
    if end >= high:
        return Walk(floor=walk.cycle, cycle=now, polled=now, at=None, width=width)
    return msgspec.structs.replace(walk, at=end, width=width, polled=now)

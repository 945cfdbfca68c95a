"""The change feed's cursor and its walk over the sessions (why: `PracticeBetterAdapter.changes_since`).

The cursor is `<since>|<walk as JSON>`: `since` (RFC 3339) bounds what the client records, the new-session scan and
the near window report; the walk is where the next page of the pass over every session starts and which changes it
reports. A bare RFC 3339 time (what the first poll returns and what versions before the walk stored) is read as a
walk about to begin, or, when more than a day old, as a catch-up (`catching_up`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import msgspec

from adapters.errors import Rejected
from adapters.stamps import parse_time, whole_second

FEED_LOOKBACK = timedelta(days=1)  # the near window and every pass start a day back (the daily sweep covers older)
NEAR_AHEAD = timedelta(days=2)  # the near window, read whole on every poll, ends this far ahead
CATCH_UP = timedelta(days=1)  # a bare cursor older than this is caught up by listing every session at once
SEPARATOR = "|"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Walk(msgspec.Struct, frozen=True, kw_only=True):
    """One pass over the sessions starting at or after `start`, a page of 100 per poll, newest created first
    (`before_id` walks older); then the next pass from a day before its own beginning.

    A page reports what changed at or after `floor`, the start of the previous pass: every session was on some
    page of that pass (so read after `floor`), and changes before then were reported by it or an earlier one.
    Sessions created during a pass sort before its cursor and are left to the next pass: the new-session scan
    reports them at once. Sessions in the near window are the near window's to report (against the cursor), and
    one that came into it since the last poll, which the walk may not have reached, against `floor` (`entered`).
    """

    floor: datetime  # walk pages report sessions changed at or after this
    cycle: datetime  # when this pass began (the next pass's floor)
    polled: datetime  # when the poll that wrote this cursor ran (where the near window ended then, less NEAR_AHEAD)
    start: datetime  # the pass lists sessions whose date is at or after this (`date_gte`), fixed for the pass
    before: str | None = None  # the next page holds sessions older than this id; None: the pass's first page


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    since: datetime
    walk: Walk
    bare: bool = False  # a bare RFC 3339 time: the first poll, a full listing, or a version before the walk


def new_pass(floor: datetime, now: datetime) -> Walk:
    return Walk(floor=floor, cycle=whole_second(now), polled=now, start=whole_second(now - FEED_LOOKBACK))


def catching_up(cursor: Cursor, now: datetime) -> bool:
    """A bare cursor from more than a day ago (a full listing from 2000-01-01, a location not polled for a day):
    every session from a day before it is listed at once, as the feed before the walk listed them on every poll."""
    return cursor.bare and cursor.since < now - CATCH_UP


def near(now: datetime) -> tuple[datetime, datetime]:
    return now - FEED_LOOKBACK, now + NEAR_AHEAD


def entered(start: datetime, walk: Walk) -> bool:
    """Whether a session starting at `start` came into the near window since the last poll."""
    return start >= walk.polled + NEAR_AHEAD


def parse(cursor: str, now: datetime) -> Cursor:
    """The cursor this adapter returned, or a bare RFC 3339 time: a pass beginning now that reports every change
    since that time, over the sessions from a day before it (as the feed before the walk read them)."""
    head, separator, tail = cursor.partition(SEPARATOR)
    try:
        since = parse_time(head.strip())
        if not separator:
            start = whole_second(min(since, now) - FEED_LOOKBACK)
            walk = Walk(floor=since, cycle=whole_second(now), polled=since, start=start)
            return Cursor(since=since, walk=walk, bare=True)
        walk = msgspec.json.decode(tail, type=Walk)
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise Rejected("the change cursor is not one this adapter returned (nor an RFC 3339 time)") from None
    if any(stamp.tzinfo is None for stamp in (walk.floor, walk.cycle, walk.polled, walk.start)):
        raise Rejected("the change cursor's walk carries a time without an offset")
    if walk.before is not None and not _ID.match(walk.before):
        raise Rejected("the change cursor's walk names no Practice Better session id")
    return Cursor(since=since, walk=walk)


def render(since: datetime, walk: Walk) -> str:
    fields = msgspec.structs.replace(
        walk,
        floor=whole_second(walk.floor),
        cycle=whole_second(walk.cycle),
        polled=whole_second(walk.polled),
        start=whole_second(walk.start),
    )
    stamp = whole_second(since).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp}{SEPARATOR}{msgspec.json.encode(fields).decode()}"

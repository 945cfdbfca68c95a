"""Small per-location charts drawn on the server as inline SVG (no JavaScript): EMR requests and events per hour over
the last 24 hours. This module computes the geometry; the template draws it (so every text is escaped) with a
<title> and <desc> for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from gateway.storage.activity import Hour, hour_of

HOURS = 24
WIDTH = 240
BAND = 26  # each series' band height
GAP = 6
BAR = WIDTH / HOURS


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    x: float
    y: float
    width: float
    height: float
    hour: datetime
    value: int


class Series(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    css: str  # the CSS class that colours it (no inline style: the console's CSP forbids it)
    total: int
    peak: int
    top: float  # where the band starts
    bars: list[Bar]


class Chart(msgspec.Struct, frozen=True, kw_only=True):
    width: int
    height: int
    band: int  # each series' band height
    title: str
    description: str
    series: list[Series]


def _series(name: str, css: str, values: list[tuple[datetime, int]], top: float) -> Series:
    peak = max((v for _, v in values), default=0)
    bars = []
    for index, (hour, value) in enumerate(values):
        if value <= 0:
            continue
        height = max(1.0, BAND * value / peak)
        bars.append(
            Bar(x=round(index * BAR + 0.5, 2), y=round(top + BAND - height, 2), width=round(BAR - 1, 2),
                height=round(height, 2), hour=hour, value=value)
        )  # fmt: skip
    return Series(name=name, css=css, total=sum(v for _, v in values), peak=peak, top=top, bars=bars)


def hourly_chart(hours: Sequence[Hour], now: datetime, *, label: str) -> Chart:
    """The last 24 hours up to `now`'s hour, oldest on the left; hours with nothing are gaps."""
    last = hour_of(now)
    slots = [last - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    by_hour = {hour_of(h.hour): h for h in hours}
    requests = [(slot, by_hour[slot].emr_requests if slot in by_hour else 0) for slot in slots]
    events = [(slot, by_hour[slot].events if slot in by_hour else 0) for slot in slots]
    top = _series("EMR requests", "series-requests", requests, 0)
    bottom = _series("events", "series-events", events, BAND + GAP)
    return Chart(
        width=WIDTH,
        height=2 * BAND + GAP,
        band=BAND,
        title=f"{label}: EMR requests and events per hour, last 24 hours",
        description=(
            f"{top.total} EMR requests (at most {top.peak} in an hour) and {bottom.total} events "
            f"(at most {bottom.peak} in an hour) in the last 24 hours."
        ),
        series=[top, bottom],
    )

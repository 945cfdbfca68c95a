"""`emr-gateway sync LOCATION [--full] [--json]`: one sync of a location now, with progress.

`--full` lists every patient and appointment through the change feed at the EMR's paced rate (the first sync of a
location, or to rebuild its stored facts); without it, the change feed from the stored cursor ("Sync now").
Progress goes to stderr as a bar with an ETA on a terminal, as plain lines otherwise; with `--json`, every line on
stdout is one JSON object: `progress` per EMR request, `listed` when the EMR's part is read, then `done` with the
counts. Nothing here prints patient data: the EMR's records are counted, never shown.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from functools import cache
from typing import TYPE_CHECKING, Any, TextIO

import httpx
import msgspec

from gateway.commands import CommandError, Subparsers, actor, database_url, load_keyring, open_store

if TYPE_CHECKING:
    from adapters.pacing import RateLimit
    from gateway.sync.full import SyncResult

PLAIN_EVERY_SECONDS = 2.0  # plain lines go to logs: one every few seconds is enough


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "sync", help="sync one location now: its change feed, or with --full every record at the EMR's rate"
    )
    p.add_argument("location", metavar="LOCATION", help="location id (loc_…)")
    p.add_argument(
        "--full",
        action="store_true",
        help="list every patient and appointment (first sync; afterwards snapshots come from stored facts)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object a line on stdout: progress, then the result")
    p.set_defaults(handler=run)


# ----------------------------------------------------------------------------------------------- what is printed


class Progress(msgspec.Struct, kw_only=True, tag_field="event", tag="progress"):
    requests: int  # EMR requests sent so far (the estimate's own included)
    expected: int | None  # what the listing will send; None: unknown (not estimated, or the EMR cannot tell)
    eta_seconds: float | None  # until the listing's last request
    elapsed_seconds: float
    paced_per_second: float  # the budget for these credentials after its burst (EGW_EMR_RATE_LIMITS applies)


class Listed(msgspec.Struct, kw_only=True, tag_field="event", tag="listed"):
    """The EMR's part is read; storing follows (a few seconds per thousand records)."""

    patients: int
    appointments: int
    requests: int
    elapsed_seconds: float


def pace_seconds(requests: int, limits: tuple[RateLimit, ...]) -> float:
    """How long `requests` take at the paced rate from a full bucket: the burst at once, then `per_second`."""
    return max((max(0, requests - limit.burst) / limit.per_second for limit in limits), default=0.0)


class Eta:
    """Expected requests over the EMR's paced rate; the observed rate wins where the EMR answers slower than the
    budget allows (latency, or other processes spending the same budget)."""

    def __init__(self, limits: tuple[RateLimit, ...]) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.expected: int | None = None
        self.sent = 0
        self.per_second = min((limit.per_second for limit in limits), default=math.inf)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def seconds(self) -> float | None:
        if self.expected is None:
            return None
        remaining = max(0, self.expected - self.sent)
        if remaining == 0:
            return 0.0
        elapsed = self.elapsed()
        paced = max(0.0, pace_seconds(self.expected, self.limits) - elapsed)
        observed = remaining * elapsed / self.sent if self.sent > 0 else 0.0
        return max(paced, observed)

    def progress(self) -> Progress:
        eta = self.seconds()
        return Progress(
            requests=self.sent,
            expected=self.expected,
            eta_seconds=round(eta, 1) if eta is not None else None,
            elapsed_seconds=round(self.elapsed(), 3),
            paced_per_second=self.per_second,
        )


def summary(result: SyncResult) -> str:
    kind = "full listing" if result.full else "change feed"
    complete = "; facts complete" if result.facts_complete else ""
    return (
        f"{result.location_id}: {kind}: {result.patients} patients, {result.appointments} appointments, "
        f"{result.events} events, {result.requests} EMR requests in {result.seconds:.1f} s{complete}"
    )


@cache
def _done_type() -> type[SyncResult]:
    """The result with `"event": "done"` first, built once (the sync engine is imported only when it runs)."""
    from gateway.sync.full import SyncResult

    class Done(SyncResult, kw_only=True, tag_field="event", tag="done"):
        pass

    return Done


def _write(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


class Reporter:
    """Told of each request (`sent`, from the counting transport) and of the sync's steps (a SyncObserver);
    the base prints nothing until the result."""

    def __init__(self, eta: Eta, location_id: str) -> None:
        self.eta = eta
        self.location_id = location_id

    def estimated(self, requests: int | None) -> None:
        self.eta.expected = requests

    def sent(self, requests: int) -> None:
        self.eta.sent = requests

    def listed(self, patients: int, appointments: int) -> None:
        pass

    def close(self) -> None:
        """Called before an error's line too, so the line does not land inside a bar."""

    def finished(self, result: SyncResult) -> None:
        _write(sys.stdout, summary(result))


class JsonLines(Reporter):
    """`--json`: each step and the result, one JSON object a line on stdout, for scripts."""

    def sent(self, requests: int) -> None:
        super().sent(requests)
        _write(sys.stdout, msgspec.json.encode(self.eta.progress()).decode())

    def listed(self, patients: int, appointments: int) -> None:
        step = Listed(
            patients=patients,
            appointments=appointments,
            requests=self.eta.sent,
            elapsed_seconds=round(self.eta.elapsed(), 3),
        )
        _write(sys.stdout, msgspec.json.encode(step).decode())

    def finished(self, result: SyncResult) -> None:
        done = _done_type()(**msgspec.structs.asdict(result))
        _write(sys.stdout, msgspec.json.encode(done).decode())


class PlainLines(Reporter):
    """No terminal (a log, a pipe): a progress line every few seconds on stderr, the summary on stdout."""

    def __init__(self, eta: Eta, location_id: str) -> None:
        super().__init__(eta, location_id)
        self.last = -math.inf

    def sent(self, requests: int) -> None:
        super().sent(requests)
        now = time.monotonic()
        if now - self.last < PLAIN_EVERY_SECONDS and requests != self.eta.expected:
            return
        self.last = now
        p = self.eta.progress()
        of = f"/{p.expected}" if p.expected is not None else ""
        eta = f", ETA {p.eta_seconds:.0f} s" if p.eta_seconds is not None else f", paced at {p.paced_per_second:g}/s"
        _write(sys.stderr, f"sync {self.location_id}: EMR requests {requests}{of}, {p.elapsed_seconds:.0f} s{eta}")

    def listed(self, patients: int, appointments: int) -> None:
        _write(sys.stderr, f"sync {self.location_id}: read {patients} patients, {appointments} appointments; storing")


def _width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


class Bar(Reporter):
    """A terminal: tqdm's bar on stderr, with our ETA (expected requests at the paced rate), not tqdm's own."""

    KNOWN = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} EMR requests [{elapsed}{postfix}]"
    UNKNOWN = "{desc}: {n_fmt} EMR requests [{elapsed}{postfix}]"

    def __init__(self, eta: Eta, location_id: str) -> None:
        super().__init__(eta, location_id)
        self.bar: Any = None  # tqdm ships no type information
        self.storing: str | None = None  # after the listing: what is being stored, in place of the ETA

    def _open(self) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped]

        self.close()
        width = _width()
        self.bar = tqdm(
            total=self.eta.expected,
            initial=self.eta.sent,
            desc=f"sync {self.location_id}",
            file=sys.stderr,
            bar_format=self.KNOWN if self.eta.expected is not None else self.UNKNOWN,
            dynamic_ncols=width > 0,
            ncols=None if width > 0 else 80,  # a terminal that reports no size (a fresh pty) would get no bar
        )
        self._postfix()
        self.bar.refresh()

    def _postfix(self) -> None:
        seconds = self.eta.seconds()
        if self.storing is not None:
            self.bar.set_postfix_str(self.storing, refresh=False)
        elif seconds is None:
            self.bar.set_postfix_str(f"paced at {self.eta.per_second:g}/s", refresh=False)
        else:
            self.bar.set_postfix_str(f"ETA {self.bar.format_interval(seconds)}", refresh=False)

    def estimated(self, requests: int | None) -> None:
        super().estimated(requests)
        self._open()

    def sent(self, requests: int) -> None:
        super().sent(requests)
        if self.bar is None:
            return  # an estimate's own requests: the bar opens when it is known
        if self.bar.total is not None and requests > self.bar.total:
            self.bar.total = requests  # the catalog's few reads come after the listing
        self._postfix()
        self.bar.update(requests - self.bar.n)

    def listed(self, patients: int, appointments: int) -> None:
        self.storing = f"storing {patients + appointments} records"
        if self.bar is not None:
            self._postfix()
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ----------------------------------------------------------------------------------------------- the sync


async def _sync(args: argparse.Namespace) -> SyncResult:
    # Imported here: the adapter registry and the sync engine are only this command's.
    from adapters.base import Capability
    from adapters.errors import AdapterError
    from adapters.registry import get_adapter_class
    from adapters.transport import EMRTransport
    from gateway.config import load_config
    from gateway.emr import EMRPacing
    from gateway.sync.full import CountingTransport, sync_location

    config = load_config()
    store = await open_store(database_url(), load_keyring())
    try:
        location = await store.get_location(args.location)
        if location is None:
            raise CommandError(f"no location {args.location!r} (see `emr-gateway locations list`)", 2)
        try:
            cls = get_adapter_class(location.emr)
        except KeyError:
            raise CommandError(f"location {location.id} uses {location.emr!r}, an EMR not installed here", 2) from None
        if Capability.CHANGES_SINCE not in cls.capabilities:
            raise CommandError(f"{cls.display_name} has no change feed: there is nothing to sync", 2)
        eta = Eta(EMRPacing.for_config(config, store).limits_for(cls))
        kind = JsonLines if args.json else Bar if sys.stderr.isatty() else PlainLines
        reporter = kind(eta, location.id)
        counter = CountingTransport(EMRTransport(), on_request=reporter.sent)
        timeout = httpx.Timeout(config.emr_timeout_seconds, connect=config.emr_connect_timeout_seconds)
        try:
            async with httpx.AsyncClient(timeout=timeout, transport=counter, follow_redirects=False) as http:
                result = await sync_location(
                    store, http, config, location, full=args.full, counter=counter, observer=reporter
                )
        except AdapterError as exc:
            raise CommandError(f"the sync failed ({type(exc).__name__}): {exc.message}") from None
        except httpx.HTTPError as exc:
            raise CommandError(f"the sync failed: cannot reach the EMR ({type(exc).__name__})") from None
        finally:
            reporter.close()
        action = "location.sync_full" if args.full else "location.sync"
        await store.audit(location_id=location.id, actor=actor(), action=action, target=location.id)
        reporter.finished(result)
        return result
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    asyncio.run(_sync(args))
    return 0

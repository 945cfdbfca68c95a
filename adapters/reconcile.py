"""Writes are never blindly retried: one mechanism every adapter uses when a write's outcome is unclear.

A write that timed out, lost its connection, or got a gateway error from a proxy (502/504: the EMR behind it may
still finish) may have been applied — now or later. The adapter keeps asking the EMR whether it landed (`landed`)
for `patience` seconds (twice the request timeout by default, long enough for a slow EMR to finish behind a load
balancer), adopts it when it appears, and otherwise answers `OutcomeUnknown` with the operation id, which the
gateway's reconciler keeps watching. A create is never sent again (a late original would make two); an update or a
cancel, which lands the same way twice, may be sent once more after the EMR confirmed the first did not land.
A 503 (the EMR itself refusing) is looked up once and otherwise reported as nothing written.

A booking that two callers raced into one slot is settled once written (`settle_race`): the earlier-created one
(`race_key`) keeps the time and the later is withdrawn.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from adapters.errors import AdapterError, OutcomeUnknown, SlotUnavailable, Unavailable

T = TypeVar("T")

DEFAULT_PATIENCE = 40.0
# Statuses that can come from a proxy while the EMR behind it still finishes the write.
AMBIGUOUS_STATUSES = frozenset({500, 502, 504})
# Where a record with no creation stamp sorts: after every stamped one.
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


class AmbiguousWrite(Exception):
    """A write may have been applied by the EMR but no usable answer came back; reconcile before anything else."""

    def __init__(self, cause: str, *, emr_status: int | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.emr_status = emr_status


def unknown(emr: str, what: str, cause: str, operation_id: str | None = None) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"the {what} was sent to {emr} but no answer came back ({cause}) and it has not appeared since",
        operation_id=operation_id or str(uuid.uuid4()),
    )


async def watch(landed: Callable[[], Awaitable[T | None]], patience: float, *, first_look: bool = True) -> T | None:
    """Ask `landed` until it finds the write or `patience` seconds pass; raises if the EMR cannot be asked at all.

    Looks at once, then at growing intervals (a late apply is most likely soon after the timeout)."""
    deadline = time.monotonic() + max(0.0, patience)
    delay = max(0.05, min(1.0, patience / 20))
    failures = 0
    if not first_look:
        await asyncio.sleep(delay)
    while True:
        try:
            found = await landed()
            failures = 0
        except AdapterError:
            failures += 1
            if failures >= 3 or time.monotonic() >= deadline:
                raise
            found = None
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 5.0)


async def reconciled(
    write: Callable[[], Awaitable[T]],
    landed: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    emr: str,
    patience: float = DEFAULT_PATIENCE,
    resend: bool = False,
    operation_id: str | None = None,
) -> T:
    """Send `write`; if its outcome is unclear, watch for it with `landed` (result if visible, None if the EMR
    confirms it is not, raises if it cannot tell). `resend`: only for writes that land the same way twice (a move
    to the same time, a cancel), one more send after the first was confirmed absent for the whole patience."""
    attempts = 2 if resend else 1
    cause = "no answer"
    for _attempt in range(attempts):
        try:
            return await write()
        except AmbiguousWrite as exc:
            cause = exc.cause
        except Unavailable as exc:
            if exc.emr_status is None or exc.emr_status < 500:
                raise  # nothing was sent
            if exc.emr_status not in AMBIGUOUS_STATUSES:
                # The EMR itself refused (503): look once, but do not wait for a late apply or send again.
                try:
                    found = await landed()
                except AdapterError:
                    raise unknown(emr, what, f"{emr} answered {exc.emr_status}", operation_id) from None
                if found is not None:
                    return found
                raise
            cause = f"{emr} answered {exc.emr_status}"
        try:
            found = await watch(landed, patience)
        except AdapterError:
            raise unknown(emr, what, cause, operation_id) from None
        if found is not None:
            return found
    if resend:  # sent twice, absent both times for the whole patience: an idempotent write that did not happen
        raise Unavailable(f"{emr} did not answer the {what} twice ({cause}); checked, nothing was written")
    # A create absent for the whole patience may still land late: only the gateway's reconciler can settle it.
    raise unknown(emr, what, cause, operation_id)


# ------------------------------------------------------------------------------------------------ racing bookings


def race_key(created_at: datetime | None, ident: str) -> tuple[datetime, int, str]:
    """The order of bookings that raced into one slot: the earlier-created keeps it, then the lower id (ids compared
    as numbers where they are: "10" is after "9"); an unstamped one sorts last."""
    return (created_at or FAR_FUTURE, len(ident), ident)


def withdrawal_failed(appointment_id: str, detail: str | None = None) -> OutcomeUnknown:
    """The new booking of a lost race could not be withdrawn: it stands beside the other one."""
    what = detail or f"withdrawing the new appointment {appointment_id} failed"
    return OutcomeUnknown(
        f"a double booking was detected and {what}; the booking stands and it needs a person to look at it",
        operation_id=str(uuid.uuid4()),
    )


async def settle_race(
    *,
    lost: Callable[[], Awaitable[bool]],
    withdraw: Callable[[], Awaitable[None]],
    emr: str,
    appointment_id: str,
    slot: str = "slot",
) -> None:
    """Once a booking is written, look again (`lost`: did an earlier-created rival take the same time?). A lost race
    withdraws the booking and answers SlotUnavailable, so exactly one of two racing bookings survives. A look that
    fails withdraws too, answering Unavailable: an unverifiable race check is not "no conflict". `withdraw` raises
    on failure (an `OutcomeUnknown` of its own is passed on; any other failure becomes `withdrawal_failed`)."""
    try:
        conflicted = await lost()
    except AdapterError:
        await _withdrawn(withdraw, appointment_id)
        raise Unavailable(
            f"{emr} could not confirm the {slot} was still free after booking; the booking was withdrawn"
        ) from None
    if conflicted:
        await _withdrawn(withdraw, appointment_id)
        raise SlotUnavailable(f"the {slot} was taken at the same moment; the new booking was cancelled")


async def _withdrawn(withdraw: Callable[[], Awaitable[None]], appointment_id: str) -> None:
    try:
        await withdraw()
    except OutcomeUnknown:
        raise
    except (AdapterError, AmbiguousWrite):
        raise withdrawal_failed(appointment_id) from None

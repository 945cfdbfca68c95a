"""Writes are never blindly retried: one mechanism every adapter uses when a write's outcome is unclear.

A write that timed out or lost its connection may have been applied. The adapter asks the EMR whether it landed
(`landed`) before sending it once more; if that question cannot be answered, the outcome is unknown and the caller
gets an operation id to quote. A 5xx answer to a write is looked up too, but never re-sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from adapters.errors import AdapterError, OutcomeUnknown, Unavailable

T = TypeVar("T")


class AmbiguousWrite(Exception):
    """A write may have been applied by the EMR but no usable answer came back; reconcile before anything else."""

    def __init__(self, cause: str, *, emr_status: int | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.emr_status = emr_status


def unknown(emr: str, what: str, cause: str) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"the {what} was sent to {emr} but no answer came back ({cause}) and checking failed",
        operation_id=str(uuid.uuid4()),
    )


async def reconciled(
    write: Callable[[], Awaitable[T]],
    landed: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    emr: str,
) -> T:
    """Send `write`; if its outcome is unclear, return what `landed` finds, else send it (once) again.

    `landed` returns the result if the write is visible, None if the EMR confirms it is not, and raises if it cannot
    tell. Gives up with Unavailable after two unclear attempts that were both confirmed not to have landed.
    """
    cause = "no answer"
    for _attempt in range(2):
        try:
            return await write()
        except AmbiguousWrite as exc:
            cause = exc.cause
        except Unavailable as exc:
            if exc.emr_status is None or exc.emr_status < 500:
                raise  # nothing was sent
            # A 5xx to a write may still have applied it: look, but do not try again.
            try:
                result = await landed()
            except AdapterError:
                raise unknown(emr, what, f"{emr} answered {exc.emr_status}") from None
            if result is not None:
                return result
            raise
        try:
            result = await landed()
        except AdapterError:
            raise unknown(emr, what, cause) from None
        if result is not None:
            return result
    raise Unavailable(f"{emr} did not answer the {what} twice ({cause}); checked, nothing was written")

"""Verify what was written: every create and reschedule is compared with what the EMR stored, and undone if it differs.

Our adapters for Practice Better, Jane and SimplePractice rest on evidence that can be wrong (a zone, a unit, a
field the EMR ignores). A wrong guess must not become a patient booked at the wrong time: after a write the adapter
hands back what it asked for (`Asked`, in normalized terms: instants and ids, computed from the command and the
catalog, never from the wire format) and what the EMR says it stored (`Appointment`, mapped from the EMR's own
absolute fields: its instants, its end, its ids). They must agree to the minute; otherwise the write is undone and
the caller gets `WriteMismatch` (502 `emr_write_mismatch`), naming the fields, the minutes and the settings that
govern them, never a value that could identify a patient.

Undoing: a booking is cancelled (moving it to the asked time would resend through the same misreading, and a
"success" after a correction we cannot prove invites a retry that books twice). A reschedule is moved back to where
it was, verified; if the EMR misreads the way back too, it is moved back by the difference it showed (and plainly once
more); if that also fails, it is cancelled, so nothing is left at a time nobody asked for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

import msgspec

from adapters.errors import AdapterError, WriteMismatch
from schemas.appointments import Appointment, AppointmentStatus, CancelReason
from schemas.commands import CancelCommand, RescheduleCommand

TOLERANCE = timedelta(seconds=59)  # "correct to the minute": EMRs may drop seconds
MISMATCH_NOTE = "Cancelled automatically by the EMR Gateway: the EMR stored another time or length than was asked."


class Asked(msgspec.Struct, frozen=True, kw_only=True):
    """What a write asked the EMR to store. `end` None: the EMR derives it and nothing is known to compare with;
    `patient_id` None: the write does not touch the patient (a reschedule)."""

    start: datetime
    end: datetime | None
    practitioner_id: str
    patient_id: str | None = None


class Written(msgspec.Struct, frozen=True, kw_only=True):
    """A write's outcome as the EMR reports it, with what was asked; `previous` is the appointment before a move."""

    stored: Appointment
    asked: Asked
    previous: Appointment | None = None


def _minutes(delta: timedelta) -> int:
    return round(delta.total_seconds() / 60)


def differences(asked: Asked, stored: Appointment) -> list[tuple[str, int | None]]:
    """(field, minutes stored minus asked) for times, (field, None) for ids; empty when they agree."""
    found: list[tuple[str, int | None]] = []
    if abs(stored.start - asked.start) > TOLERANCE:
        found.append(("start", _minutes(stored.start - asked.start)))
    if asked.end is not None and abs(stored.end - asked.end) > TOLERANCE:
        found.append(("end", _minutes(stored.end - asked.end)))
    elif asked.end is None and stored.end <= stored.start:
        found.append(("end", _minutes(stored.end - stored.start)))
    if stored.practitioner_id != asked.practitioner_id:
        found.append(("practitioner", None))
    if asked.patient_id is not None and stored.patient_id != asked.patient_id:
        found.append(("patient", None))
    return found


def _describe(found: list[tuple[str, int | None]]) -> str:
    parts = []
    for name, minutes in found:
        parts.append(f"{name} {minutes:+d} min" if minutes is not None else f"another {name}")
    return ", ".join(parts)


def _governing(found: list[tuple[str, int | None]], settings: Mapping[str, str]) -> dict[str, str]:
    return {name: settings[name] for name, _ in found if name in settings}


def _hint(governing: Mapping[str, str]) -> str:
    if not governing:
        return ""
    return "; check " + "; ".join(f"{name}: {setting}" for name, setting in governing.items())


Cancel = Callable[[CancelCommand], Awaitable[Appointment]]
Move = Callable[[RescheduleCommand], Awaitable[Written]]


async def settle_booking(emr: str, written: Written, *, cancel: Cancel, settings: Mapping[str, str]) -> Appointment:
    """The booking as stored, or WriteMismatch after cancelling it."""
    found = differences(written.asked, written.stored)
    if not found:
        return written.stored
    governing = _governing(found, settings)
    undone = True
    try:
        cancelled = await cancel(
            CancelCommand(appointment_id=written.stored.id, reason=CancelReason.OTHER, note=MISMATCH_NOTE)
        )
        undone = cancelled.status is AppointmentStatus.CANCELLED
    except AdapterError:
        undone = False
    outcome = "it was cancelled" if undone else f"cancelling it failed: appointment {written.stored.id} needs a person"
    raise WriteMismatch(
        f"{emr} stored the booking differently than asked ({_describe(found)}); {outcome}{_hint(governing)}",
        differences=found,
        settings=governing,
        undone=undone,
        appointment_id=written.stored.id,
    )


def _back(previous: Appointment, appointment_id: str, shift: timedelta = timedelta(0)) -> RescheduleCommand:
    return RescheduleCommand(
        appointment_id=appointment_id,
        start=previous.start - shift,
        end=previous.end - shift,
        practitioner_id=previous.practitioner_id,
    )


def _restored(previous: Appointment) -> Asked:
    return Asked(start=previous.start, end=previous.end, practitioner_id=previous.practitioner_id)


async def settle_move(
    emr: str, written: Written, *, move: Move, cancel: Cancel, settings: Mapping[str, str]
) -> Appointment:
    """The rescheduled appointment as stored, or WriteMismatch after moving it back (or, failing that, cancelling
    it). Without `previous` the adapter could not know where it was: cancelling is then the only undo."""
    found = differences(written.asked, written.stored)
    if not found:
        return written.stored
    governing = _governing(found, settings)
    stored = written.stored
    previous = written.previous
    outcome = ""
    if previous is not None:
        shift = stored.start - written.asked.start
        # Plainly first; then against the difference it showed (a systematic misreading: the way back is misread
        # too); then plainly once more (the misreading was not systematic after all). At most three moves.
        attempts = [timedelta(0)] + ([shift, timedelta(0)] if abs(shift) > TOLERANCE else [])
        for attempt in attempts:
            try:
                back = await move(_back(previous, stored.id, attempt))
            except AdapterError:
                break
            stored = back.stored
            if not differences(_restored(previous), back.stored):
                outcome = "it was moved back to where it was"
                break
    if not outcome:
        try:
            cancelled = await cancel(
                CancelCommand(appointment_id=stored.id, reason=CancelReason.OTHER, note=MISMATCH_NOTE)
            )
            if cancelled.status is AppointmentStatus.CANCELLED:
                outcome = "it could not be moved back, so it was cancelled"
        except AdapterError:
            pass
    undone = bool(outcome)
    if not undone:
        outcome = f"undoing it failed: appointment {stored.id} needs a person"
    raise WriteMismatch(
        f"{emr} stored the reschedule differently than asked ({_describe(found)}); {outcome}{_hint(governing)}",
        differences=found,
        settings=governing,
        undone=undone,
        appointment_id=stored.id,
    )

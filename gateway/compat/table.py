"""Every ClinicSync Pro route we answer, as data: path -> body Struct -> translator -> response shaper.

Paths are exactly the seed document's (several EMRs' documents share `/api-book-appointment`, `/bookAppt`, …: their
bodies are one union Struct). A route works for every EMR the gateway supports, not only the one whose document
names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from gateway.compat import shapes, translate
from gateway.compat.actions import Outcome
from gateway.compat.bodies import (
    BookBody,
    CancelBody,
    JaneAppointmentBody,
    JanePatientBody,
    JaneQueryBody,
    Tolerant,
    UpdateBody,
)
from gateway.compat.intents import Intent


class CompatRoute(msgspec.Struct, frozen=True, kw_only=True):
    method: str  # "POST" (JSON body) or "GET" (query string, the voice routes)
    path: str
    body: type[Tolerant]
    translate: Callable[[Any], Intent]
    shape: Callable[[Outcome], msgspec.Struct]
    writes: bool  # runs under Idempotency-Key when the caller sends one
    documented_for: str  # whose section of the seed document shows it
    summary: str


def _post(
    path: str,
    body: type[Tolerant],
    translate_: Callable[[Any], Intent],
    shape: Callable[[Outcome], msgspec.Struct],
    *,
    writes: bool,
    documented_for: str,
    summary: str,
) -> CompatRoute:
    return CompatRoute(
        method="POST",
        path=path,
        body=body,
        translate=translate_,
        shape=shape,
        writes=writes,
        documented_for=documented_for,
        summary=summary,
    )


def _get(
    path: str,
    body: type[Tolerant],
    translate_: Callable[[Any], Intent],
    shape: Callable[[Outcome], msgspec.Struct],
    *,
    writes: bool,
    summary: str,
) -> CompatRoute:
    return CompatRoute(
        method="GET",
        path=path,
        body=body,
        translate=translate_,
        shape=shape,
        writes=writes,
        documented_for="Jane AI receptionist (voice)",
        summary=summary,
    )


T = translate
S = shapes
JC = "Jane, Cliniko"
AI = "Jane AI receptionist"

CLINICSYNC_ROUTES: tuple[CompatRoute, ...] = (
    _post("/api-book-appointment", BookBody, T.book, S.booked, writes=True, documented_for=JC, summary="Book"),
    _post("/api-update-appointment", UpdateBody, T.update, S.success_appointment, writes=True, documented_for=JC,
          summary="Reschedule"),
    _post("/api-cancel-appointment", CancelBody, T.cancel, S.success_appointment, writes=True, documented_for=JC,
          summary="Cancel"),
    _post("/bookAppt", BookBody, T.book, S.booked, writes=True, documented_for=f"{JC} (GHL)", summary="Book (GHL)"),
    _post("/update_appt", UpdateBody, T.update, S.success_appointment, writes=True, documented_for=f"{JC} (GHL)",
          summary="Reschedule (GHL)"),
    _post("/cancel_appt", CancelBody, T.cancel, S.success_appointment, writes=True, documented_for=f"{JC} (GHL)",
          summary="Cancel (GHL)"),
    _post("/api/nookal/book_appt", BookBody, T.book, S.nookal_booked, writes=True, documented_for="Nookal",
          summary="Book"),
    _post("/api/nookal/update_appt", UpdateBody, T.update, S.nookal_updated, writes=True, documented_for="Nookal",
          summary="Reschedule"),
    _post("/api/nookal/cancel_appt", CancelBody, T.cancel, S.nookal_canceled, writes=True, documented_for="Nookal",
          summary="Cancel"),
    _post("/appointments/book", BookBody, T.book, S.sp_booked, writes=True, documented_for="SimplePractice",
          summary="Book"),
    _post("/appointments/update", UpdateBody, T.update, S.sp_updated, writes=True, documented_for="SimplePractice",
          summary="Reschedule"),
    _post("/appointments/cancel", CancelBody, T.cancel, S.sp_cancelled, writes=True, documented_for="SimplePractice",
          summary="Cancel"),
    _post("/bookSession", BookBody, T.book, S.pb_booked, writes=True, documented_for="Practice Better",
          summary="Book"),
    _post("/rescheduleSession", UpdateBody, T.update, S.pb_updated, writes=True, documented_for="Practice Better",
          summary="Reschedule"),
    _post("/cancelSession", CancelBody, T.cancel, S.pb_cancelled, writes=True, documented_for="Practice Better",
          summary="Cancel"),
    _post("/ai_brain/fetchAllStaff", JaneQueryBody, T.jane_catalog, S.jane_staff, writes=False, documented_for=AI,
          summary="Practitioners"),
    _post("/ai_brain/fetchAllTreatments", JaneQueryBody, T.jane_catalog, S.jane_treatments, writes=False,
          documented_for=AI, summary="Services"),
    _post("/ai_brain/fetchAllLocations", JaneQueryBody, T.jane_catalog, S.jane_locations, writes=False,
          documented_for=AI, summary="Locations"),
    _post("/ai_brain/fetchAvailabilityForRange", JaneQueryBody, T.jane_range, S.jane_availability, writes=False,
          documented_for=AI, summary="Open slots in a range"),
    _post("/ai_brain/fetchAvailabilityNext7Days", JaneQueryBody, T.jane_next_7_days, S.jane_availability,
          writes=False, documented_for=AI, summary="Open slots in the next 7 days"),
    _post("/ai_brain/lookup-create-patient", JanePatientBody, T.jane_patient, S.jane_patient, writes=True,
          documented_for=AI, summary="Look a patient up, create if absent"),
    _post("/ai_brain/fetchPatientsAppointments", JanePatientBody, T.jane_patient_appointments,
          S.jane_patient_appointments, writes=False, documented_for=AI, summary="A patient's appointments"),
    _post("/ai_brain/createAppt", JaneAppointmentBody, T.jane_create, S.jane_provisional, writes=True,
          documented_for=AI, summary="Provisional appointment (nothing booked yet)"),
    _post("/ai_brain/bookAppt", JaneAppointmentBody, T.jane_book, S.jane_booked, writes=True, documented_for=AI,
          summary="Book (from createAppt's context)"),
    _post("/ai_brain/cancelAppt", JaneAppointmentBody, T.jane_cancel, S.jane_cancelled, writes=True,
          documented_for=AI, summary="Cancel"),
    _post("/ai_brain/rescheduleAppt", JaneAppointmentBody, T.jane_reschedule, S.jane_rescheduled, writes=True,
          documented_for=AI, summary="Reschedule"),
)  # fmt: skip

VOICE_ROUTES: tuple[CompatRoute, ...] = (
    _get("/voice/clinic-info", JaneQueryBody, T.jane_catalog, S.voice_clinic_info, writes=False,
         summary="Staff, treatments and locations"),
    _get("/voice/bestSlot", JaneQueryBody, T.voice_best_slot, S.voice_best_slot, writes=False,
         summary="The earliest opening at or after requested_time_utc"),
    _get("/voice/book", JaneAppointmentBody, T.jane_book, S.voice_booked, writes=True, summary="Book"),
    _get("/voice/cancel", JaneAppointmentBody, T.jane_cancel, S.voice_cancelled, writes=True,
         summary="Cancel by appointment_id, or the caller's next appointment by phone"),
    _get("/voice/reschedule", JaneAppointmentBody, T.jane_reschedule, S.voice_rescheduled, writes=True,
         summary="Reschedule by appointment_id, or the caller's next appointment by phone"),
    _get("/voice/patientAppointments", JanePatientBody, T.voice_patient_appointments, S.voice_appointments,
         writes=False, summary="The caller's upcoming appointments"),
)  # fmt: skip

"""Normalized outcomes in the response shapes ClinicSync's document shows (and Jane-style ones where it shows none).

Where their "appointment object" is the EMR's own, ours is the gateway's normalized Appointment.
"""

from __future__ import annotations

from datetime import datetime

from gateway.catalog import Catalog
from gateway.compat import speech
from gateway.compat.actions import Outcome
from gateway.compat.bodies import ProvisionalContext
from schemas.appointments import Appointment, AppointmentStatus
from schemas.availability import Slot
from schemas.common import Out


def _appointment(outcome: Outcome) -> Appointment:
    if outcome.appointment is None:  # a translator/route table mismatch, not a caller error
        raise RuntimeError("this route's outcome carries no appointment")
    return outcome.appointment


def _minutes(a: Appointment) -> int:
    return int((a.end - a.start).total_seconds() // 60)


# ---------------------------------------------------------------------------------------------- Jane / Cliniko REST


class BookedAnswer(Out):
    """Jane's `{message, bookedAppointment}` and Cliniko's `{success, appointment}` at once: the path is shared."""

    success: bool
    message: str
    appointment: Appointment
    bookedAppointment: Appointment


class AppointmentAnswer(Out):
    success: bool
    appointment: Appointment


def booked(outcome: Outcome) -> BookedAnswer:
    a = _appointment(outcome)
    return BookedAnswer(success=True, message="Appointment booked successfully", appointment=a, bookedAppointment=a)


def success_appointment(outcome: Outcome) -> AppointmentAnswer:
    return AppointmentAnswer(success=True, appointment=_appointment(outcome))


# ---------------------------------------------------------------------------------------------- Nookal


class NookalBooked(Out):
    success: bool
    apptID: str
    appointment: Appointment


class NookalUpdated(Out):
    success: bool
    updated: Appointment


class NookalCanceled(Out):
    success: bool
    canceled: Appointment


def nookal_booked(outcome: Outcome) -> NookalBooked:
    a = _appointment(outcome)
    return NookalBooked(success=True, apptID=a.id, appointment=a)


def nookal_updated(outcome: Outcome) -> NookalUpdated:
    return NookalUpdated(success=True, updated=_appointment(outcome))


def nookal_canceled(outcome: Outcome) -> NookalCanceled:
    return NookalCanceled(success=True, canceled=_appointment(outcome))


# ---------------------------------------------------------------------------------------------- SimplePractice


class SpBookedAppointment(Out):
    id: str
    start: datetime
    end: datetime
    serviceCode: str | None
    duration: int
    clientId: str
    clinicianId: str
    practiceId: str
    source: str


class SpUpdatedAppointment(Out):
    id: str
    start: datetime
    end: datetime
    serviceCode: str | None


class SpBooked(Out):
    status: str
    appointment: SpBookedAppointment


class SpUpdated(Out):
    status: str
    appointment: SpUpdatedAppointment


class SpCancelled(Out):
    ok: bool
    deleted: bool
    appointmentId: str


def _service_code(catalog: Catalog, service_id: str) -> str | None:
    service = next((s for s in catalog.services if s.id == service_id), None)
    return (service.code or service.name) if service else None


def sp_booked(outcome: Outcome) -> SpBooked:
    a = _appointment(outcome)
    return SpBooked(
        status="booked",
        appointment=SpBookedAppointment(
            id=a.id,
            start=a.start,
            end=a.end,
            serviceCode=_service_code(outcome.catalog, a.service_id),
            duration=_minutes(a),
            clientId=a.patient_id,
            clinicianId=a.practitioner_id,
            practiceId=a.emr_location_id or a.location_id,
            source=a.emr,
        ),
    )


def sp_updated(outcome: Outcome) -> SpUpdated:
    a = _appointment(outcome)
    code = _service_code(outcome.catalog, a.service_id)
    return SpUpdated(
        status="updated", appointment=SpUpdatedAppointment(id=a.id, start=a.start, end=a.end, serviceCode=code)
    )


def sp_cancelled(outcome: Outcome) -> SpCancelled:
    a = _appointment(outcome)
    return SpCancelled(ok=True, deleted=a.status is AppointmentStatus.CANCELLED, appointmentId=a.id)


# ---------------------------------------------------------------------------------------------- Practice Better


class PbBooked(Out):
    status: str
    appointmentId: str


class PbAppointment(Out):
    id: str
    start: datetime
    end: datetime
    duration: int


class PbUpdated(Out):
    status: str
    appointment: PbAppointment


class PbCancelled(Out):
    ok: bool
    cancelled: bool
    appointmentId: str


def pb_booked(outcome: Outcome) -> PbBooked:
    return PbBooked(status="booked", appointmentId=_appointment(outcome).id)


def pb_updated(outcome: Outcome) -> PbUpdated:
    a = _appointment(outcome)
    return PbUpdated(
        status="updated", appointment=PbAppointment(id=a.id, start=a.start, end=a.end, duration=_minutes(a))
    )


def pb_cancelled(outcome: Outcome) -> PbCancelled:
    a = _appointment(outcome)
    return PbCancelled(ok=True, cancelled=a.status is AppointmentStatus.CANCELLED, appointmentId=a.id)


# ---------------------------------------------------------------------------------------------- Jane AI receptionist


class JaneAppointment(Out):
    """Jane's field names over the normalized appointment; `state` is the FHIR status; `spoken` reads aloud."""

    id: str
    state: AppointmentStatus
    start_at: datetime
    end_at: datetime
    time_zone: str
    spoken: str
    staff_member_id: str
    staff_member_name: str | None
    treatment_id: str
    treatment_name: str | None
    patient_id: str
    location_id: str
    cancelled: bool
    notes: str | None = None


class StaffMember(Out):
    id: str
    full_name: str
    first_name: str | None
    last_name: str | None
    email: str | None
    treatment_ids: list[str]
    location_ids: list[str]


class Treatment(Out):
    id: str
    name: str
    duration: int
    code: str | None
    category: str | None
    staff_member_ids: list[str]
    location_ids: list[str]


class JaneLocation(Out):
    id: str
    name: str
    time_zone: str | None
    address: str | None


class JaneSlot(Out):
    start_at: datetime
    end_at: datetime
    time_zone: str
    spoken: str
    staff_member_id: str
    staff_member_name: str | None
    treatment_id: str
    treatment_name: str | None


class JanePatient(Out):
    id: str
    first_name: str
    last_name: str
    email: str | None
    mobile_phone: str | None
    dob: str | None


class StaffAnswer(Out):
    success: bool
    staff_members: list[StaffMember]


class TreatmentsAnswer(Out):
    success: bool
    treatments: list[Treatment]


class LocationsAnswer(Out):
    success: bool
    locations: list[JaneLocation]


class AvailabilityAnswer(Out):
    success: bool
    availability: list[JaneSlot]


class PatientAnswer(Out):
    success: bool
    created: bool
    patient: JanePatient


class PatientAppointmentsAnswer(Out):
    success: bool
    patient_id: str
    appointments: list[JaneAppointment]


class ProvisionalAnswer(Out):
    success: bool
    message: str
    appointment: ProvisionalContext


class JaneWriteAnswer(Out):
    success: bool
    message: str
    appointment: JaneAppointment


def jane_appointment(catalog: Catalog, a: Appointment) -> JaneAppointment:
    return JaneAppointment(
        id=a.id,
        state=a.status,
        start_at=a.start,
        end_at=a.end,
        time_zone=a.time_zone,
        spoken=speech.appointment_phrase(catalog, a),
        staff_member_id=a.practitioner_id,
        staff_member_name=speech.practitioner_name(catalog, a.practitioner_id),
        treatment_id=a.service_id,
        treatment_name=speech.service_name(catalog, a.service_id),
        patient_id=a.patient_id,
        location_id=a.emr_location_id or a.location_id,
        cancelled=a.status is AppointmentStatus.CANCELLED,
        notes=a.notes,
    )


def jane_slot(catalog: Catalog, slot: Slot, time_zone: str) -> JaneSlot:
    return JaneSlot(
        start_at=slot.start,
        end_at=slot.end,
        time_zone=time_zone,
        spoken=speech.slot_phrase(catalog, slot, time_zone),
        staff_member_id=slot.practitioner_id,
        staff_member_name=speech.practitioner_name(catalog, slot.practitioner_id),
        treatment_id=slot.service_id,
        treatment_name=speech.service_name(catalog, slot.service_id),
    )


def staff_members(catalog: Catalog) -> list[StaffMember]:
    location_ids = [loc.id for loc in catalog.locations]
    return [
        StaffMember(
            id=p.id,
            full_name=p.name,
            first_name=p.first_name,
            last_name=p.last_name,
            email=p.email,
            treatment_ids=[s.id for s in catalog.services if s.practitioner_ids is None or p.id in s.practitioner_ids],
            location_ids=location_ids,
        )
        for p in catalog.practitioners
        if p.active
    ]


def treatments(catalog: Catalog) -> list[Treatment]:
    location_ids = [loc.id for loc in catalog.locations]
    everyone = [p.id for p in catalog.practitioners if p.active]
    return [
        Treatment(
            id=s.id,
            name=s.name,
            duration=s.duration_minutes,
            code=s.code,
            category=s.category,
            staff_member_ids=s.practitioner_ids if s.practitioner_ids is not None else everyone,
            location_ids=location_ids,
        )
        for s in catalog.services
    ]


def locations(catalog: Catalog) -> list[JaneLocation]:
    return [
        JaneLocation(id=loc.id, name=loc.name, time_zone=loc.time_zone, address=loc.address)
        for loc in catalog.locations
    ]


def jane_staff(outcome: Outcome) -> StaffAnswer:
    return StaffAnswer(success=True, staff_members=staff_members(outcome.catalog))


def jane_treatments(outcome: Outcome) -> TreatmentsAnswer:
    return TreatmentsAnswer(success=True, treatments=treatments(outcome.catalog))


def jane_locations(outcome: Outcome) -> LocationsAnswer:
    return LocationsAnswer(success=True, locations=locations(outcome.catalog))


def jane_availability(outcome: Outcome) -> AvailabilityAnswer:
    return AvailabilityAnswer(
        success=True, availability=[jane_slot(outcome.catalog, s, outcome.time_zone) for s in outcome.slots]
    )


def jane_patient(outcome: Outcome) -> PatientAnswer:
    p = outcome.patient
    if p is None:
        raise RuntimeError("this route's outcome carries no patient")
    patient = JanePatient(
        id=p.id,
        first_name=p.first_name,
        last_name=p.last_name,
        email=p.email,
        mobile_phone=p.phones[0] if p.phones else None,
        dob=p.date_of_birth.isoformat() if p.date_of_birth else None,
    )
    return PatientAnswer(success=True, created=outcome.created, patient=patient)


def jane_patient_appointments(outcome: Outcome) -> PatientAppointmentsAnswer:
    return PatientAppointmentsAnswer(
        success=True,
        patient_id=outcome.patient.id if outcome.patient else "",
        appointments=[jane_appointment(outcome.catalog, a) for a in outcome.appointments],
    )


def jane_provisional(outcome: Outcome) -> ProvisionalAnswer:
    if outcome.provisional is None:
        raise RuntimeError("this route's outcome carries no provisional appointment")
    return ProvisionalAnswer(
        success=True,
        message="Provisional appointment created; confirm it with bookAppt",
        appointment=outcome.provisional,
    )


def _jane_write(message: str, outcome: Outcome) -> JaneWriteAnswer:
    return JaneWriteAnswer(
        success=True, message=message, appointment=jane_appointment(outcome.catalog, _appointment(outcome))
    )


def jane_booked(outcome: Outcome) -> JaneWriteAnswer:
    return _jane_write("Appointment booked successfully", outcome)


def jane_rescheduled(outcome: Outcome) -> JaneWriteAnswer:
    return _jane_write("Appointment rescheduled successfully", outcome)


def jane_cancelled(outcome: Outcome) -> JaneWriteAnswer:
    return _jane_write("Appointment cancelled successfully", outcome)


# ---------------------------------------------------------------------------------------------- voice


class VoiceClinicInfo(Out):
    success: bool
    message: str
    staff: list[StaffMember]
    treatments: list[Treatment]
    locations: list[JaneLocation]


class VoiceBestSlot(Out):
    success: bool
    found: bool
    message: str
    slot: JaneSlot | None


class VoiceAppointment(Out):
    success: bool
    message: str
    appointment: JaneAppointment


class VoiceAppointments(Out):
    success: bool
    message: str
    appointments: list[JaneAppointment]


def voice_clinic_info(outcome: Outcome) -> VoiceClinicInfo:
    c = outcome.catalog
    return VoiceClinicInfo(
        success=True,
        message=speech.clinic(c),
        staff=staff_members(c),
        treatments=treatments(c),
        locations=locations(c),
    )


def voice_best_slot(outcome: Outcome) -> VoiceBestSlot:
    slot = outcome.slots[0] if outcome.slots else None
    return VoiceBestSlot(
        success=True,
        found=slot is not None,
        message=speech.best_slot(outcome.catalog, slot, outcome.time_zone),
        slot=jane_slot(outcome.catalog, slot, outcome.time_zone) if slot else None,
    )


def _voice(outcome: Outcome, message: str) -> VoiceAppointment:
    a = _appointment(outcome)
    return VoiceAppointment(success=True, message=message, appointment=jane_appointment(outcome.catalog, a))


def voice_booked(outcome: Outcome) -> VoiceAppointment:
    return _voice(outcome, speech.booked(outcome.catalog, _appointment(outcome)))


def voice_cancelled(outcome: Outcome) -> VoiceAppointment:
    return _voice(outcome, speech.cancelled(outcome.catalog, _appointment(outcome)))


def voice_rescheduled(outcome: Outcome) -> VoiceAppointment:
    return _voice(outcome, speech.rescheduled(outcome.catalog, _appointment(outcome)))


def voice_appointments(outcome: Outcome) -> VoiceAppointments:
    return VoiceAppointments(
        success=True,
        message=speech.upcoming(outcome.catalog, outcome.appointments),
        appointments=[jane_appointment(outcome.catalog, a) for a in outcome.appointments],
    )

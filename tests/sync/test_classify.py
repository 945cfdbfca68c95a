"""Which appointment event a change is: the rules a subscriber relies on, including records older than tracking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.storage.sync import StoredAppointment
from gateway.sync.detector import appointment_digest, classify
from schemas.appointments import Appointment, AppointmentStatus
from schemas.webhooks import EventType

TRACKING = datetime(2026, 3, 1, tzinfo=UTC)
START = datetime(2026, 3, 10, 1, tzinfo=UTC)


def appointment(
    status: AppointmentStatus = AppointmentStatus.BOOKED, *, age_days: float = 0, **over: object
) -> Appointment:
    stamp = TRACKING + timedelta(days=-age_days if age_days else 1)
    fields: dict[str, object] = {
        "id": "1",
        "status": status,
        "start": START,
        "end": START + timedelta(minutes=30),
        "time_zone": "Australia/Melbourne",
        "patient_id": "p",
        "practitioner_id": "pr",
        "service_id": "s",
        "location_id": "loc",
        "created_at": stamp,
        "updated_at": stamp,
        **over,
    }
    return Appointment(**fields)  # type: ignore[arg-type]


def stored(a: Appointment) -> StoredAppointment:
    return StoredAppointment(
        patient_id=a.patient_id,
        status=a.status.value,
        start=a.start,
        practitioner_id=a.practitioner_id,
        digest=appointment_digest(a),
        emr_updated_at=a.updated_at,
    )


def test_first_sight_of_an_appointment() -> None:
    assert classify(None, appointment(), tracking_since=TRACKING) == EventType.APPOINTMENT_BOOKED
    assert classify(None, appointment(age_days=30), tracking_since=TRACKING) is None  # predates tracking
    cancelled_long_ago = appointment(AppointmentStatus.CANCELLED, age_days=30)
    assert classify(None, cancelled_long_ago, tracking_since=TRACKING) is None
    old_but_cancelled_now = appointment(AppointmentStatus.CANCELLED, created_at=TRACKING - timedelta(days=30))
    assert classify(None, old_but_cancelled_now, tracking_since=TRACKING) == EventType.APPOINTMENT_CANCELLED
    hinted = classify(None, appointment(age_days=30), tracking_since=TRACKING, hint=EventType.APPOINTMENT_RESCHEDULED)
    assert hinted == EventType.APPOINTMENT_RESCHEDULED


def test_transitions_from_a_known_state() -> None:
    before = stored(appointment())
    moved = appointment(start=START + timedelta(hours=1))
    assert classify(before, moved, tracking_since=TRACKING) == EventType.APPOINTMENT_RESCHEDULED
    other_practitioner = appointment(practitioner_id="pr2")
    assert classify(before, other_practitioner, tracking_since=TRACKING) == EventType.APPOINTMENT_RESCHEDULED
    assert classify(before, appointment(notes="x"), tracking_since=TRACKING) is None
    assert classify(before, appointment(AppointmentStatus.ARRIVED), tracking_since=TRACKING) is None
    no_show = appointment(AppointmentStatus.NOSHOW)
    assert classify(before, no_show, tracking_since=TRACKING) == EventType.APPOINTMENT_NO_SHOW
    cancelled = appointment(AppointmentStatus.CANCELLED)
    assert classify(before, cancelled, tracking_since=TRACKING) == EventType.APPOINTMENT_CANCELLED
    assert classify(stored(cancelled), cancelled, tracking_since=TRACKING) is None
    assert classify(stored(cancelled), appointment(), tracking_since=TRACKING) == EventType.APPOINTMENT_BOOKED

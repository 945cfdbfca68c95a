"""The declared tag rules and field values, on snapshots built by hand (time is a parameter, not the clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.errors import AlreadyCancelled, OutcomeUnknown, SlotUnavailable
from adapters.ghl import wire
from gateway.ghl.destination import fields, tags
from gateway.ghl.destination.contacts import dropped
from gateway.ghl.destination.push import failure_of
from gateway.ghl.destination.settings import GhlSettings
from schemas.appointments import AppointmentStatus
from schemas.patients import Patient
from schemas.webhooks import AppointmentSummary, PatientSnapshot

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def summary(start: datetime, status: AppointmentStatus = AppointmentStatus.FULFILLED) -> AppointmentSummary:
    return AppointmentSummary(
        id="a1",
        status=status,
        start=start,
        end=start + timedelta(minutes=30),
        time_zone="Australia/Melbourne",
        practitioner_id="p1",
        practitioner_name="Alice Nguyen",
        service_id="s1",
        service_name="Standard Consultation",
        location_id="loc",
        location_name="North Clinic",
    )


def snapshot(last: AppointmentSummary | None, upcoming: AppointmentSummary | None = None) -> PatientSnapshot:
    return PatientSnapshot(
        patient=Patient(id="42", first_name="Jane", last_name="Citizen"),
        last_appointment=last,
        upcoming_appointment=upcoming,
        upcoming_count=1 if upcoming else 0,
        visit_count=3,
        cancellation_count=1,
        no_show_count=0,
        total_appointments=4,
    )


def test_lapsed_turns_on_after_the_setting_and_only_then() -> None:
    settings = GhlSettings(lapsed_days=90)
    recent = snapshot(summary(NOW - timedelta(days=89)))
    assert tags.desired(recent, settings, NOW) == {"emr:patient"}
    assert tags.lapses_at(recent, settings, NOW) == NOW - timedelta(days=89) + timedelta(days=90)
    old = snapshot(summary(NOW - timedelta(days=91)))
    assert tags.desired(old, settings, NOW) == {"emr:patient", "emr:lapsed"}
    assert tags.lapses_at(old, settings, NOW) is None  # already lapsed: nothing left for the sweep


def test_an_upcoming_appointment_is_never_lapsed_and_a_no_show_is_tagged() -> None:
    settings = GhlSettings(lapsed_days=30, tag_prefix="clinic:")
    booked = snapshot(summary(NOW - timedelta(days=400)), summary(NOW + timedelta(days=2), AppointmentStatus.BOOKED))
    assert tags.desired(booked, settings, NOW) == {"clinic:patient", "clinic:upcoming"}
    missed = snapshot(summary(NOW - timedelta(days=3), AppointmentStatus.NOSHOW))
    assert tags.desired(missed, settings, NOW) == {"clinic:patient", "clinic:last-no-show"}
    cancelled = snapshot(summary(NOW - timedelta(days=400), AppointmentStatus.CANCELLED))
    assert "clinic:lapsed" not in tags.desired(cancelled, settings, NOW)  # a cancellation is not a visit


def test_only_prefixed_tags_are_the_gateways() -> None:
    assert tags.owned(["VIP", "EMR:Upcoming", "emr:patient", "emrx"], GhlSettings()) == {"emr:upcoming", "emr:patient"}


def test_field_values_are_local_times_and_clear_what_no_longer_applies() -> None:
    start = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)  # 10:00 on the 3rd in Melbourne
    values = fields.values_of(
        snapshot(None, summary(start, AppointmentStatus.BOOKED)), "cliniko", "Australia/Melbourne"
    )
    assert values["emr_next_appointment_at"] == "2026-12-03T10:00:00+11:00"
    assert values["emr_next_appointment_date"] == "2026-12-03"
    assert values["emr_next_location"] == "North Clinic"
    assert values["emr_last_appointment_at"] == ""  # no last appointment: cleared
    assert set(values) == {spec.key for spec in fields.FIELDS}
    assert all(fields.key_of(spec.name) == spec.key for spec in fields.FIELDS)  # found again by key after a reinstall


def test_the_readme_field_and_tag_tables_are_the_code() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for spec in fields.FIELDS:
        assert f"| `{spec.key}` ({spec.name}) | {spec.data_type} | {spec.source} |" in readme
    for rule in tags.RULES:
        assert f"| `emr:{rule.suffix}` | {rule.meaning} |" in readme


def test_a_phone_ghl_shows_in_national_form_is_the_one_sent() -> None:
    body = wire.ContactWrite(phone="+61412345678")
    assert "phone" not in dropped(body, wire.Contact(id="c", phone="0412 345 678"), "AU")
    assert "phone" not in dropped(body, wire.Contact(id="c", phone="+61 412 345 678"), "AU")
    # The same last nine digits in another country is another phone (a last-digits comparison took it as kept).
    assert "phone" in dropped(body, wire.Contact(id="c", phone="+64412345678"), "AU")


def test_an_adapter_error_subclass_keeps_its_family_code() -> None:
    assert failure_of(AlreadyCancelled("cancelled"))[0] == "ghl_rejected"
    assert failure_of(SlotUnavailable("taken"))[0] == "ghl_error"  # no family of its own among GHL's codes
    assert failure_of(OutcomeUnknown("lost", operation_id="op"))[0] == "ghl_error"

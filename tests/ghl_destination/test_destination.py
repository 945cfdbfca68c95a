"""GoHighLevel as a destination, over real HTTP: a change made in the EMR's own screens reaches GHL as one contact
with the right fields, tags and calendar event; retries, 429s and outages lose nothing and duplicate nothing; GHL's
echo of a mirrored appointment books nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest

from adapters.ghl.emulator import GhlEmulator, GhlQuirks
from gateway.ghl.destination.settings import CalendarMode
from tests.gateway.conftest import Harness
from tests.ghl.conftest import workflow_body
from tests.ghl.test_marketplace import KEYS, signed_ed25519
from tests.ghl_destination.support import GhlSide
from tests.sync.support import day_ahead, local


@pytest.fixture
def ghl(harness: Harness) -> Iterator[GhlSide]:
    side = GhlSide(harness)
    yield side
    side.close()


def only(items: list[dict[str, object]]) -> dict[str, object]:
    assert len(items) == 1, items
    return items[0]


def instant(text: object) -> datetime:
    assert isinstance(text, str)
    return datetime.fromisoformat(text).astimezone(UTC)


def test_connect_provisions_fields_once_and_never_twice(ghl: GhlSide) -> None:
    first = ghl.connect()
    assert len(first.fields_created) == 16
    assert first.fields_found == []
    again = ghl.connect()
    assert again.fields_created == []
    assert sorted(again.fields_found) == sorted(first.fields_created)
    assert len(ghl.emulator.custom_field_views(ghl.seed.location_id)) == 16
    assert {c.name for c in first.calendars} == {"Alice Nguyen", "Ben Carter"}


def test_an_emr_booking_becomes_one_contact_with_fields_tags_and_an_event(ghl: GhlSide) -> None:
    ghl.connect()
    ghl.calendars()
    ghl.poll()  # the first poll sets the cursor
    start = local(day_ahead(), 10)
    appointment_id = ghl.clinic.book(start)
    ghl.poll()
    assert ghl.push() >= 2  # the booking and the patient's snapshot

    contact = only(ghl.contacts())
    assert (contact["firstName"], contact["lastName"], contact["email"]) == (
        "Jane",
        "Citizen",
        "jane.citizen@example.com",
    )
    fields = ghl.fields(contact)
    assert fields["emr_patient_id"] == ghl.clinic.patient_id
    assert fields["emr_system"] == "cliniko"
    assert (fields["emr_upcoming_count"], fields["emr_total_visits"], fields["emr_cancellations"]) == (1, 0, 0)
    assert instant(fields["emr_next_appointment_at"]) == start
    assert fields["emr_next_practitioner"] == "Alice Nguyen"
    assert fields["emr_next_service"] == "Standard Consultation"
    assert set(contact["tags"]) == {"emr:patient", "emr:upcoming"}

    event = only(ghl.events())
    alice = next(c.id for c in ghl.seed.calendars if c.name == "Alice Nguyen")
    assert (event["calendarId"], event["contactId"], event["appointmentStatus"]) == (alice, contact["id"], "confirmed")
    assert (instant(event["startTime"]), instant(event["endTime"])) == (start, start + timedelta(minutes=30))
    assert event["title"] == "Standard Consultation with Alice Nguyen"

    requests = ghl.emulator.traffic.requests
    ghl.poll()
    assert ghl.push() == 0
    assert ghl.emulator.traffic.requests == requests

    with ghl.h.client() as c:
        log = c.get("/v1/ghl/sync-log").json()["items"]
        assert {(i["event_type"], i["state"]) for i in log} == {
            ("appointment.booked", "pushed"),
            ("patient.updated", "pushed"),
        }
        mine = c.get("/v1/ghl/sync-log", params={"status": "pushed", "patient_id": ghl.clinic.patient_id}).json()
        assert len(mine["items"]) == 2
        assert c.get("/v1/ghl/sync-log", params={"status": "dead"}).json()["items"] == []
        assert "Citizen" not in c.get("/v1/ghl/sync-log").text
    with ghl.h.client(site=1) as c:
        assert c.get("/v1/ghl/sync-log").json()["items"] == []  # another location's log
    assert appointment_id


def test_reschedule_cancellation_and_no_show_update_contact_and_event(ghl: GhlSide) -> None:
    ghl.connect()
    ghl.calendars()
    ghl.poll()
    start = local(day_ahead(), 10)
    appointment_id = ghl.clinic.book(start)
    ghl.poll()
    ghl.push()

    later = start + timedelta(hours=2)
    ghl.clinic.move(appointment_id, later)
    ghl.poll()
    ghl.push()
    event = only(ghl.events())
    assert instant(event["startTime"]) == later
    assert instant(ghl.fields(only(ghl.contacts()))["emr_next_appointment_at"]) == later

    ghl.clinic.cancel(appointment_id)
    ghl.poll()
    ghl.push()
    assert only(ghl.events())["appointmentStatus"] == "cancelled"
    contact = only(ghl.contacts())
    fields = ghl.fields(contact)
    assert (fields["emr_upcoming_count"], fields["emr_cancellations"]) == (0, 1)
    assert not fields.get("emr_next_appointment_at")  # cleared, not stale
    assert set(contact["tags"]) == {"emr:patient"}

    second = ghl.clinic.book(local(day_ahead(3), 9))
    ghl.poll()
    ghl.push()
    ghl.clinic.mark_no_show(second)
    ghl.poll()
    ghl.push()
    statuses = sorted(e["appointmentStatus"] for e in ghl.events())
    with ghl.h.client() as c:
        log = [(i["event_type"], i["state"], i["error_code"]) for i in c.get("/v1/ghl/sync-log").json()["items"]]
    assert statuses == ["cancelled", "noshow"], log
    assert ghl.fields(only(ghl.contacts()))["emr_no_shows"] == 1


def test_the_agencys_contact_and_tags_are_found_and_kept(ghl: GhlSide) -> None:
    """The patient already exists in GHL (an agency form): found by GHL's duplicate search, linked, never copied;
    the agency's own tags survive every push."""
    made = ghl.api(
        "POST",
        "/contacts/upsert",
        json={
            "locationId": ghl.seed.location_id,
            "email": "Jane.Citizen@example.com",
            "tags": ["vip", "facebook lead"],
        },
    )
    assert made.status_code in (200, 201), made.text
    ghl.connect()
    ghl.poll()
    ghl.clinic.book(local(day_ahead(), 10))
    ghl.poll()
    ghl.push()
    contact = only(ghl.contacts())
    assert contact["id"] == made.json()["contact"]["id"]
    assert set(contact["tags"]) == {"vip", "facebook lead", "emr:patient", "emr:upcoming"}
    assert ghl.fields(contact)["emr_patient_id"] == ghl.clinic.patient_id


def test_a_retry_storm_creates_one_contact_and_one_event(ghl: GhlSide) -> None:
    """Three workers at once, then every push replayed twice over: still one contact, one event."""
    ghl.connect()
    ghl.calendars()
    ghl.poll()
    ghl.clinic.book(local(day_ahead(), 10))
    ghl.poll()
    ghl.push_together(3)
    only(ghl.contacts())
    only(ghl.events())

    async def everything_again(rt: object) -> int:
        from gateway.runtime import Runtime
        from gateway.storage import ghl_destination as db

        assert isinstance(rt, Runtime)
        return await db.enqueue_refresh(rt.store, ghl.location_id, [ghl.clinic.patient_id] * 4)

    ghl.run(everything_again)
    ghl.push_together(3)
    only(ghl.contacts())
    only(ghl.events())
    assert ghl.counts().get("skipped", 0) >= 4  # unchanged: no GHL write


def test_a_ghl_429_pauses_and_loses_nothing(harness: Harness) -> None:
    ghl = GhlSide(harness, GhlEmulator(burst_limit=5, burst_window_seconds=1.0))
    try:
        ghl.connect()
        ghl.calendars()
        ghl.poll()
        ghl.clinic.book(local(day_ahead(), 10))
        ghl.poll()
        ghl.drain()
        assert ghl.emulator.traffic.rate_limited > 0  # GHL did say 429
        contact = only(ghl.contacts())
        only(ghl.events())
        assert ghl.fields(contact)["emr_upcoming_count"] == 1
        assert set(ghl.counts()) <= {"pushed", "skipped"}
    finally:
        ghl.close()


def test_a_ghl_outage_is_retried_and_a_lost_create_is_found_not_repeated(ghl: GhlSide) -> None:
    ghl.connect()
    ghl.calendars()
    ghl.poll()
    ghl.clinic.book(local(day_ahead(), 10))
    ghl.poll()
    faults = f"{ghl.url}/_emulator/faults"
    httpx.post(faults, json={"kind": "error_5xx", "count": 1000, "status": 503}).raise_for_status()
    ghl.push()
    assert ghl.counts().get("failed", 0) + ghl.counts().get("dead", 0) >= 1
    assert ghl.contacts() == []
    httpx.delete(faults).raise_for_status()
    # The outage ends, but the calendar create and the contact upsert each lose their answer after applying.
    httpx.post(
        faults,
        json={
            "kind": "timeout_after_apply",
            "method": "POST",
            "path_prefix": "/calendars/events/appointments",
            "delay_ms": 3000,
        },
    ).raise_for_status()
    ghl.emulator.set_quirks(GhlQuirks(create_422_after_apply=1, message="Jane Citizen jane.citizen@example.com"))
    assert ghl.run(lambda rt: _replay(rt, ghl.location_id)) >= 1
    ghl.drain(timeout=1.0)  # the calendar create's answer, held 3 s, is lost to a 1 s client
    assert ghl.emulator.quirks.create_422_after_apply == 0  # the contact create's 422-after-apply happened too
    contact = only(ghl.contacts())
    event = only(ghl.events())  # found after its lost answer, not created twice
    assert event["contactId"] == contact["id"]
    with ghl.h.client() as c:
        text = c.get("/v1/ghl/sync-log").text
    assert "jane.citizen" not in text
    assert "Citizen" not in text


async def _replay(rt: object, location_id: str) -> int:
    from gateway.runtime import Runtime
    from gateway.storage import ghl_destination as db

    assert isinstance(rt, Runtime)
    return await db.replay(rt.store, location_id, datetime(2000, 1, 1, tzinfo=UTC))


def test_a_mirrored_appointment_echoed_back_by_ghl_books_nothing(ghl: GhlSide) -> None:
    ghl.connect()
    ghl.calendars()
    ghl.poll()
    ghl.clinic.book(local(day_ahead(), 10))
    ghl.poll()
    ghl.push()
    event = only(ghl.events())
    before = ghl.h.emulator.stats().appointments
    body = workflow_body(str(event["id"]), f"{day_ahead(4)}T10:00:00", None, tz="Australia/Melbourne")
    body["location"]["id"] = ghl.seed.location_id
    with ghl.h.client() as c:
        for action in ("book", "reschedule", "cancel"):
            r = c.post(f"/ghl/v1/appointments/{action}", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["ignored"] is True
    assert ghl.h.emulator.stats().appointments == before
    assert only(ghl.events())["appointmentStatus"] == "confirmed"


def test_busy_mode_mirrors_only_blocked_time(ghl: GhlSide) -> None:
    ghl.connect()
    ghl.calendars(CalendarMode.BUSY)
    ghl.poll()
    start = local(day_ahead(), 14)
    appointment_id = ghl.clinic.book(start)
    ghl.poll()
    ghl.push()
    block = only(ghl.events())
    assert block["kind"] != "appointment"
    assert block["title"] == "Busy"
    assert not block.get("contactId")
    assert (instant(block["startTime"]), instant(block["endTime"])) == (start, start + timedelta(minutes=30))
    ghl.clinic.cancel(appointment_id)
    ghl.poll()
    ghl.push()
    assert ghl.events() == []


def test_two_patients_sharing_a_phone_get_two_contacts(ghl: GhlSide) -> None:
    """A parent and child with one phone: GHL's duplicate search points the second at the first's contact, which
    the gateway never reuses for another patient."""
    ghl.emulator.set_duplicate_rules(ghl.seed.location_id, allow_duplicates=True)
    ghl.connect()
    ghl.poll()
    ghl.clinic.book(local(day_ahead(), 10))
    child = ghl.clinic.http.post(
        "/patients",
        json={
            "first_name": "Sam",
            "last_name": "Citizen",
            "patient_phone_numbers": [{"number": "+61 412 345 678", "phone_type": "Mobile"}],
        },
    )
    child.raise_for_status()
    child_id = str(child.json()["id"])
    ghl.clinic.patient_id, parent_id = child_id, ghl.clinic.patient_id
    ghl.clinic.book(local(day_ahead(), 11))
    ghl.poll()
    ghl.push()
    contacts = ghl.contacts()
    assert len(contacts) == 2
    assert {ghl.fields(c)["emr_patient_id"] for c in contacts} == {parent_id, child_id}


def test_a_refused_token_shows_on_health_and_a_working_one_resumes(ghl: GhlSide) -> None:
    ghl.connect()
    ghl.poll()
    ghl.emulator.revoke_token(ghl.seed.token)
    ghl.clinic.book(local(day_ahead(), 10))
    ghl.poll()
    ghl.push()
    with ghl.h.client() as c:
        health = c.get("/v1/health", params={"fresh": "true"}).json()
    assert health["ghl"]["status"] == "ghl_auth_failed"
    assert health["ghl"]["pending"] >= 1
    ghl.emulator.tokens[ghl.seed.token].revoked = False  # the agency issues a working token; reconnect with it
    ghl.connect()
    ghl.drain()
    only(ghl.contacts())
    with ghl.h.client() as c:
        assert c.get("/v1/health", params={"fresh": "true"}).json()["ghl"]["status"] == "ok"


@KEYS
def test_ghls_marketplace_webhook_for_a_mirrored_appointment_changes_nothing(ghl: GhlSide) -> None:
    ghl.connect()
    ghl.calendars()
    ghl.poll()
    start = local(day_ahead(), 10)
    appointment_id = ghl.clinic.book(start)
    ghl.poll()
    ghl.push()
    event = only(ghl.events())
    ghl.clinic.move(appointment_id, start + timedelta(hours=1))
    ghl.poll()
    ghl.push()
    sent = [w for w in ghl.emulator.webhooks if w["appointment"]["id"] == event["id"]]
    assert [w["type"] for w in sent][:2] == ["AppointmentCreate", "AppointmentUpdate"]
    with ghl.h.anonymous() as c:
        for body in sent:
            raw = msgspec.json.encode(body)
            r = c.post("/ghl/v1/marketplace/webhooks", content=raw, headers=signed_ed25519(raw))
            assert r.status_code == 200, r.text
            assert f"mirrors EMR appointment {appointment_id}" in r.json()["reason"]  # the echo rule answered
    stored = ghl.clinic.get(f"/individual_appointments/{appointment_id}")
    assert instant(stored["starts_at"]) == start + timedelta(hours=1)  # the EMR's own move, not undone or redone

"""The patient trace: a patient's events, where each went, their GoHighLevel contact and pushes; looked up by EMR
id or by e-mail in a POST body, so no patient datum is ever in a URL (or a log line)."""

from __future__ import annotations

import logging

import pytest

from gateway.storage import ghl_destination as ghl_db
from gateway.storage.ghl_destination import PushOutcome
from gateway.storage.store import Store
from tests.console.conftest import Console, attr, tagged
from tests.console.test_pages import LOOPBACK, subscribe
from tests.gateway.conftest import Harness, run_sync
from tests.sync.support import ClinicScreens, Sync, day_ahead, local
from tests.webhooks.receiver import Receiver


def _connect_ghl(h: Harness, contact_id: str, patient_id: str) -> None:
    """A GoHighLevel connection and a linked contact, as `ghl connect` and a first push leave them."""

    async def go() -> None:
        store = await Store.open(h.database_url, h.keyring)
        try:
            location_id = h.sites[0].location_id
            await ghl_db.save_connection(
                store,
                location_id=location_id,
                ghl_location_id="ghl-sub-1",
                base_url="http://127.0.0.1:9",
                token="pit-test-token",
                settings_json=b"{}",
                field_ids={},
            )
            await ghl_db.save_contact_link(
                store, location_id, patient_id, contact_id, digest=None, tags=["emr:patient"], lapses_at=None
            )
            await ghl_db.record(
                store, location_id, patient_id, PushOutcome(state="failed", error_code="ghl_rejected", calls=1)
            )
        finally:
            await store.close()

    run_sync(go())


@LOOPBACK
def test_the_trace_finds_a_patients_events_by_id_and_by_email(
    console: Console, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver().start()
    clinic = ClinicScreens(harness)
    try:
        patient_id = clinic.patient_id
        email = clinic.get(f"/patients/{patient_id}")["email"]
        subscribe(harness, receiver.url)
        _connect_ghl(harness, "ghl-contact-42", patient_id)
        sync = Sync(harness)
        sync.tick()
        clinic.book(local(day_ahead(), 10))
        sync.tick()
        location_id = harness.sites[0].location_id

        page = console.get("/console/trace")
        assert tagged(page.text, "trace-form")
        assert 'method="post" action="/console/trace"' in page.text
        by_id = console.post("/console/trace", {"location_id": location_id, "by": "id", "value": patient_id})
        by_email = console.post("/console/trace", {"location_id": location_id, "by": "email", "value": email})
        for r in (by_id, by_email):
            assert r.status_code == 200, r.text
            assert str(r.url).endswith("/console/trace")  # nothing about the patient in the address
            [trace] = tagged(r.text, "trace")
            assert attr(trace, "data-patient-id") == patient_id
            types = sorted(attr(t, "data-event-type") for t in tagged(r.text, "trace-event"))
            assert types == ["appointment.booked", "patient.updated"]
            assert [attr(t, "data-state") for t in tagged(r.text, "trace-delivery")] == ["pending", "pending"]
            origin = "/".join(receiver.url.split("/")[:3])
            assert origin in r.text
            assert receiver.url.removeprefix(origin) not in r.text  # no path or query: they may carry a token
            [contact] = tagged(r.text, "ghl-contact")
            assert attr(contact, "data-contact-id") == "ghl-contact-42"
            pushes = sorted(attr(t, "data-state") for t in tagged(r.text, "ghl-push"))
            assert pushes == ["failed", "pending", "pending"]  # queued by the two events, and a failed refresh
            assert "ghl_rejected" in r.text
        assert tagged(by_email.text, "trace-matches")

        unknown = console.post("/console/trace", {"location_id": location_id, "by": "email", "value": "no@x.example"})
        assert tagged(unknown.text, "trace-none")
        nothing = console.post("/console/trace", {"location_id": location_id, "by": "id", "value": "999999"})
        assert tagged(nothing.text, "trace-no-events")
        refused = console.post("/console/trace", {"location_id": "loc_nope", "by": "id", "value": patient_id})
        assert refused.status_code == 422
        assert tagged(refused.text, "trace-error")
    finally:
        clinic.close()
        receiver.stop()
    assert "POST /console/trace 200" in caplog.text  # the access log logged, so the next line means something
    assert email not in caplog.text
    assert email.split("@")[0] not in caplog.text

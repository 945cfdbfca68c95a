"""`emr-gateway demo --json`: the printed key and location book, reschedule and cancel through the real CLI."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from tests.demo_process import running_demo
from tests.webhooks.receiver import Receiver, verify


def test_demo_prints_a_working_key_per_emr(tmp_path: Path) -> None:
    with running_demo(tmp_path) as info:
        assert {loc["emr"] for loc in info["locations"]} >= {"cliniko"}
        base = info["base_url"]
        loc = next(loc for loc in info["locations"] if loc["emr"] == "cliniko")
        tz = "Australia/Melbourne"
        d = datetime.now(ZoneInfo(tz)).date() + timedelta(days=1)
        receiver = Receiver().start()
        with httpx.Client(base_url=base, headers={"x-api-key": loc["api_key"]}, timeout=30) as c:
            hook = c.post("/v1/webhooks", json={"url": receiver.url, "event_types": ["appointment.booked"]})
            assert hook.status_code == 201, hook.text
            secret = hook.json()["secret"]
            r = c.post(
                "/v1/appointments",
                json={
                    "practitioner": {"email": "alice.nguyen@example.com"},
                    "service": {"name": "Standard Consultation"},
                    "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
                    "start": f"{d}T10:00:00",
                    "time_zone": tz,
                },
            )
            assert r.status_code == 201, r.text
            appt_id = r.json()["id"]
            r = c.patch(f"/v1/appointments/{appt_id}", json={"start": f"{d}T11:00:00", "time_zone": tz})
            assert r.status_code == 200, r.text
            r = c.post(f"/v1/appointments/{appt_id}/cancel", json={"reason": "other"})
            assert r.json()["status"] == "cancelled"
        # The demo runs the webhook worker: the booking reaches the subscriber, signed.
        deadline = time.monotonic() + 20
        while not receiver.snapshot() and time.monotonic() < deadline:
            time.sleep(0.05)
        receiver.stop()
        [delivery] = receiver.snapshot()
        event = verify(secret, delivery)
        assert json.loads(delivery.body)["data"]["appointment"]["id"] == appt_id
        assert event is not None
        # Every demo location is connected to the GoHighLevel emulator: the patient became a contact there. The
        # appointment is mirrored on Alice's calendar and cancelled as in the EMR — or, when the pushes ran after the
        # cancellation, never created (a push writes the current state, and a cancelled appointment is not created).
        ghl = f"{info['ghl_base_url']}/_emulator/ghl/locations/{loc['ghl_location_id']}"
        deadline = time.monotonic() + 20
        contacts: list[dict[str, object]] = []
        while time.monotonic() < deadline and not contacts:
            contacts = httpx.get(f"{ghl}/contacts").json()
            time.sleep(0.1)
        [contact] = contacts
        assert contact["email"] == "jane.citizen@example.com"
        while time.monotonic() < deadline:
            log = httpx.get(f"{base}/v1/ghl/sync-log", headers={"x-api-key": loc["api_key"]}).json()["items"]
            if len(log) >= 4 and all(item["state"] in ("pushed", "skipped") for item in log):
                break  # booked, rescheduled, cancelled and the patient's snapshot: all done
            time.sleep(0.1)
        events = httpx.get(f"{ghl}/events").json()
        assert [(e["contactId"], e["appointmentStatus"]) for e in events] in ([], [(contact["id"], "cancelled")]), log

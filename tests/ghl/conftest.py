"""The gateway harness (live gateway + Cliniko emulator, both storage backends) and GHL helpers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec

from gateway.ghl.store import issue_token, link_ghl_location
from gateway.storage.store import Store
from tests.gateway.conftest import Harness, harness, run_sync

__all__ = ["harness"]

LOCAL_SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict[str, Any]:
    """GHL's reference payloads (copied from shared/reference/ghl so CI does not depend on that folder)."""
    path = LOCAL_SAMPLES / name
    data: dict[str, Any] = json.loads(path.read_text())
    return copy.deepcopy(data)


def workflow_body(
    ghl_id: str, start: str, end: str | None, tz: str = "America/Chicago", **custom: str
) -> dict[str, Any]:
    body = sample("WorkflowWebhookAction-AppointmentBooked.example.json")
    body["calendar"].update({"appointmentId": ghl_id, "startTime": start, "selectedTimezone": tz})
    if end is None:
        body["calendar"].pop("endTime")
    else:
        body["calendar"]["endTime"] = end
    body["customData"] = custom or {
        "staff_member": "alice.nguyen@example.com",
        "appt_type_name": "Standard Consultation",
    }
    return body


def emr_appointment(h: Harness, appointment_id: str) -> Any:
    creds = msgspec.json.decode(h.emulator.location_config(h.emulator_url, 0)[1])
    r = httpx.get(
        f"{h.emulator_url}/v1/individual_appointments/{appointment_id}",
        params={"q[]": "cancelled_at:*"},  # Cliniko hides cancelled records without it
        auth=(creds["api_key"], ""),
        headers={"User-Agent": "tests (tests@example.com)", "Accept": "application/json"},
    )
    r.raise_for_status()
    return r.json()


async def _token(h: Harness, location_id: str) -> str:
    store = await Store.open(h.database_url, h.keyring)
    try:
        return (await issue_token(store, location_id)).secret
    finally:
        await store.close()


async def _link(h: Harness, location_id: str, ghl_location_id: str) -> None:
    store = await Store.open(h.database_url, h.keyring)
    try:
        await link_ghl_location(store, location_id, ghl_location_id)
    finally:
        await store.close()


def new_token(h: Harness, site: int = 0) -> str:
    return run_sync(_token(h, h.sites[site].location_id))


def link(h: Harness, ghl_location_id: str, site: int = 0) -> None:
    run_sync(_link(h, h.sites[site].location_id, ghl_location_id))

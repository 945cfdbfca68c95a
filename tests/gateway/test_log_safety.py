"""Logs never carry API keys, EMR credentials or patient data, on success and on every kind of failure."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from adapters.emulation import Fault, FaultKind
from gateway.logsafe import log_unexpected
from tests.gateway.conftest import Harness


def test_no_secret_or_patient_datum_reaches_a_log(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    d = datetime.now(ZoneInfo("Australia/Melbourne")).date() + timedelta(days=2)
    patient = {
        "first_name": "Zebulon",
        "last_name": "Quackenbush",
        "email": "zeb.quack@example.org",
        "phone": "+61 498 765 432",
        "date_of_birth": "1971-02-03",
    }
    body = {
        "practitioner": {"name": "Alice Nguyen"},
        "service": {"name": "Standard Consultation"},
        "patient": patient,
        "start": f"{d}T10:00:00",
        "time_zone": "Australia/Melbourne",
    }
    with harness.client(**{"Idempotency-Key": "log-1"}) as c:
        appt = c.post("/v1/appointments", json=body).json()
        c.post("/v1/appointments", json=body)
        c.get("/v1/patients", params={"email": patient["email"]})
        c.get("/v1/patients", params={"phone": patient["phone"], "name": "Zebulon Quackenbush"})
        harness.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, count=20))
        c.post("/v1/patients", json={**patient, "email": "other.zeb@example.org"})
        harness.emulator.faults.clear()
        harness.emulator.faults.add(Fault(kind=FaultKind.DROP, count=20))
        c.get(f"/v1/appointments/{appt['id']}")
        harness.emulator.faults.clear()
        c.post("/v1/appointments", json={**body, "practitioner": {"email": "x@example.org"}})
        c.post(f"/v1/appointments/{appt['id']}/cancel", json={"note": "Zebulon has the flu"})
    with harness.anonymous() as c:
        c.get("/v1/practitioners", headers={"x-api-key": harness.sites[0].api_key + "x"})
    creds = msgspec.json.decode(harness.emulator.location_config(harness.emulator_url)[1])
    text = caplog.text
    assert "POST /v1/appointments 201" in text  # the access log did log, so the assertions below are meaningful
    forbidden = [
        harness.sites[0].api_key,
        harness.sites[0].api_key[12:],
        creds["api_key"],
        "Zebulon",
        "Quackenbush",
        "zeb.quack",
        "other.zeb",
        "498 765",
        "498765432",
        "1971-02-03",
        "flu",
    ]
    for secret in forbidden:
        assert secret not in text, f"a log line carries {secret!r}"


def test_unexpected_errors_log_where_not_what(caplog: pytest.LogCaptureFixture) -> None:
    """A bug whose message quotes a patient leaves the stack in the log, never the message."""
    log = logging.getLogger("emr_gateway.test")

    def lookup(email: str) -> None:
        raise KeyError(email)

    patient_email = "zeb.quack@example.org"
    try:
        lookup(patient_email)
    except KeyError as exc:
        log_unexpected(log, "sync failed", exc)
    # The stack shows source lines (code, not values) and no exception message.
    assert "KeyError" in caplog.text
    assert "in lookup" in caplog.text
    assert "zeb.quack" not in caplog.text

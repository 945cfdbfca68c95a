"""What a caller and an operator see when an EMR stores something else than asked, or answers in a shape the
adapter no longer reads: over real HTTP, the gateway in front of the Cliniko emulator, on both storage backends."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import httpx

from adapters.emulation import Fault, FaultKind
from tests.gateway.conftest import Harness

TZ = "Australia/Melbourne"
PATIENT = {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"}


def _fault(h: Harness, fault: Fault) -> None:
    import msgspec

    httpx.post(f"{h.emulator_url}/_emulator/faults", content=msgspec.json.encode(fault)).raise_for_status()


def _booking(days: int = 3, hour: int = 11) -> dict[str, object]:
    day = dt.datetime.now(ZoneInfo(TZ)).date() + dt.timedelta(days=days)
    return {
        "practitioner": {"email": "alice.nguyen@example.com"},
        "service": {"name": "Standard Consultation"},
        "patient": PATIENT,
        "start": f"{day}T{hour:02d}:00:00",
        "time_zone": TZ,
    }


def test_a_booking_the_emr_stored_at_another_time_is_a_502_write_mismatch(harness: Harness) -> None:
    _fault(harness, Fault(kind=FaultKind.MISSTORE, shift_minutes=-600))
    with harness.client() as c:
        r = c.post("/v1/appointments", json=_booking())
        assert r.status_code == 502, r.text
        problem = r.json()
        assert problem["code"] == "emr_write_mismatch"
        assert r.headers["content-type"].startswith("application/problem+json")
        fields = {e["field"]: e["message"] for e in problem["errors"]}
        assert set(fields) == {"start", "end"}
        assert fields["start"].startswith("stored -600 min from what was asked")
        assert "time_zone" in fields["start"]  # the setting that governs it
        assert "cancelled" in problem["detail"]
        for datum in ("Jane", "Citizen", "jane.citizen"):
            assert datum not in r.text
        # Nothing is left in the clinic's calendar, and a retry books normally.
        assert not [a for a in harness.emulator.appointments.values() if a.active()]  # type: ignore[attr-defined]
        again = c.post("/v1/appointments", json=_booking())
        assert again.status_code == 201, again.text


def test_an_answer_that_no_longer_decodes_is_named_on_the_problem_health_and_metrics(harness: Harness) -> None:
    with harness.client() as c:
        assert c.get("/v1/health").json()["status"] == "ok"
        booked = c.post("/v1/appointments", json=_booking(days=2))
        assert booked.status_code == 201, booked.text
        _fault(harness, Fault(kind=FaultKind.RESHAPE, drop_field="starts_at", count=1000))
        r = c.get(f"/v1/appointments/{booked.json()['id']}")
        assert r.status_code == 502, r.text
        problem = r.json()
        assert problem["code"] == "emr_contract_changed"
        assert problem["errors"] == [{"field": "$.starts_at", "message": "missing required field"}]

        health = c.get("/v1/health", params={"fresh": "true"}).json()
        assert health["status"] == "emr_contract_changed"
        assert "$.starts_at" in health["detail"]
        assert health["contract_changes"][0]["path"] == "$.starts_at"
        assert health["contract_changes"][0]["problem"] == "missing required field"

    metrics = httpx.get(f"{harness.base_url}/metrics").text
    assert 'egw_emr_contract_changed_total{emr="cliniko",path="$.starts_at"} 1.0' in metrics
    assert 'egw_emr_errors_total{emr="cliniko",kind="ContractChanged"} 1.0' in metrics

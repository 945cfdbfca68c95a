"""Every request sent to the Cliniko emulator and every response it gave, checked against Cliniko's OpenAPI document."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import ServerThread, default_seed
from tests.adapters.cliniko import openapi_check

SPEC = openapi_check.spec_path()
pytestmark = pytest.mark.skipif(
    SPEC is None, reason="cliniko-openapi.yaml not found (set EGW_SHARED_DIR to the folder holding reference/)"
)

UA = "EMR Gateway tests (tests@example.com)"


@pytest.fixture(scope="module")
def openapi() -> Any:
    assert SPEC is not None
    return openapi_check.load_openapi(SPEC)


@pytest.fixture
def served() -> Iterator[tuple[ClinikoEmulator, str]]:
    emulator = ClinikoEmulator(default_seed())
    server = ServerThread(emulator.app())
    base_url = server.start()
    yield emulator, base_url
    server.stop()


def assert_conforms(openapi: Any, emulator: ClinikoEmulator) -> None:
    exchanges = emulator.exchanges
    assert exchanges, "nothing was recorded"
    found = [p for exchange in exchanges for p in openapi_check.problems(openapi, exchange)]
    assert not found, "\n".join(found)


def test_plain_http_calls_conform_to_the_document(openapi: Any, served: tuple[ClinikoEmulator, str]) -> None:
    emulator, base_url = served
    _, credentials = emulator.location_config(base_url)
    key = json.loads(credentials)["api_key"]
    headers = {"User-Agent": UA, "Accept": "application/json"}
    with httpx.Client(base_url=base_url + "/v1", auth=(key, ""), headers=headers) as http:
        business = http.get("/businesses").json()["businesses"][0]["id"]
        http.get(f"/businesses/{business}")
        practitioners = http.get("/practitioners", params={"per_page": 1}).json()
        practitioner = practitioners["practitioners"][0]["id"]
        http.get(practitioners["links"]["next"])
        http.get(f"/practitioners/{practitioner}")
        http.get("/users")
        kind = http.get("/appointment_types", params={"sort": "name"}).json()["appointment_types"][0]["id"]
        http.get(f"/appointment_types/{kind}")
        http.get("/patients", params={"q[]": ["email:=jane.citizen@example.com", "last_name:~cit"]})
        created = http.post(
            "/patients",
            json={
                "first_name": "Sam",
                "last_name": "Lee",
                "email": "Sam.Lee@Example.com",
                "date_of_birth": "1990-02-03",
                "patient_phone_numbers": [{"number": "0412 000 111", "phone_type": "Mobile"}],
            },
        )
        assert created.status_code == 201
        patient = created.json()["id"]
        http.get(f"/patients/{patient}")

        tomorrow = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).date()
        window = {"from": tomorrow.isoformat(), "to": (tomorrow + datetime.timedelta(days=2)).isoformat()}
        times_url = f"/businesses/{business}/practitioners/{practitioner}/appointment_types/{kind}"
        times = http.get(times_url + "/available_times", params={**window, "per_page": 5}).json()
        http.get(times["links"]["next"])
        start = http.get(times_url + "/next_available_time", params=window).json()["appointment_start"]

        body = {
            "patient_id": patient,
            "practitioner_id": practitioner,
            "appointment_type_id": kind,
            "business_id": business,
            "starts_at": start,
            "notes": "first visit",
        }
        booked = http.post("/individual_appointments", json=body)
        assert booked.status_code == 201
        appointment = booked.json()["id"]
        assert http.post("/individual_appointments", json={**body, "patient_id": "1"}).status_code == 422
        http.get(f"/individual_appointments/{appointment}")
        http.get(f"/individual_appointments/{appointment}/conflicts")
        later = (datetime.datetime.fromisoformat(start) + datetime.timedelta(hours=1)).isoformat()
        assert http.patch(f"/individual_appointments/{appointment}", json={"starts_at": later, "ends_at": None}).is_success
        http.get(
            "/individual_appointments",
            params={"q[]": [f"patient_id:={patient}", f"starts_at:>={tomorrow}T00:00:00Z"], "sort": "starts_at:desc"},
        )
        cancel = {"cancellation_reason": 50, "cancellation_note": "called to cancel"}
        assert http.patch(f"/individual_appointments/{appointment}/cancel", json=cancel).status_code == 204
        http.get("/individual_appointments", params={"q[]": ["cancelled_at:?", "updated_at:>2020-01-01T00:00:00Z"]})

    assert all(e.status < 400 or e.status == 422 for e in emulator.exchanges)
    assert_conforms(openapi, emulator)

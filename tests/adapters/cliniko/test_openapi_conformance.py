"""Every request sent to the Cliniko emulator and every response it gave, checked against Cliniko's OpenAPI document."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import ServerThread, default_seed
from tests.adapters.cliniko import openapi_check

SPEC = openapi_check.spec_path()
if SPEC is None and os.environ.get("EGW_TEST_REQUIRE_SHARED") == "1":
    raise RuntimeError("EGW_TEST_REQUIRE_SHARED=1 but cliniko-openapi.yaml was not found beside the repo")
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
        assert http.patch(
            f"/individual_appointments/{appointment}", json={"starts_at": later, "ends_at": None}
        ).is_success
        http.get(
            "/individual_appointments",
            params={"q[]": [f"patient_id:={patient}", f"starts_at:>={tomorrow}T00:00:00Z"], "sort": "starts_at:desc"},
        )
        cancel = {"cancellation_reason": 50, "cancellation_note": "called to cancel"}
        assert http.patch(f"/individual_appointments/{appointment}/cancel", json=cancel).status_code == 204
        http.get("/individual_appointments", params={"q[]": ["cancelled_at:?", "updated_at:>2020-01-01T00:00:00Z"]})

    assert all(e.status < 400 or e.status == 422 for e in emulator.exchanges)
    assert_conforms(openapi, emulator)


async def test_the_adapter_sends_and_gets_only_what_the_document_describes(
    openapi: Any, served: tuple[ClinikoEmulator, str]
) -> None:
    from adapters.base import AdapterContext
    from adapters.cliniko.adapter import ClinikoAdapter
    from adapters.cliniko.settings import ClinikoCredentials, ClinikoSettings
    from schemas.appointments import CancelReason
    from schemas.commands import (
        AppointmentQuery,
        AvailabilityQuery,
        BookCommand,
        CancelCommand,
        NewPatient,
        RescheduleCommand,
    )
    from schemas.patients import PatientQuery

    emulator, base_url = served
    settings_json, credentials_json = emulator.location_config(base_url)
    settings = msgspec.json.decode(settings_json, type=ClinikoSettings)
    credentials = msgspec.json.decode(credentials_json, type=ClinikoCredentials)
    context = AdapterContext(location_id="loc_1", time_zone=emulator.seed.time_zone)
    async with httpx.AsyncClient() as http:
        adapter = ClinikoAdapter(settings, credentials, http, context)
        await adapter.check()
        locations = await adapter.list_locations()
        practitioners = await adapter.list_practitioners()
        services = await adapter.list_services()
        assert locations
        assert practitioners
        assert services
        assert await adapter.find_patients(PatientQuery(email="jane.citizen@example.com"))
        patient = await adapter.create_patient(
            NewPatient(first_name="Sam", last_name="Lee", email="sam.lee@example.com", phone="+61412000111")
        )
        assert await adapter.get_patient(patient.id)
        assert await adapter.find_patients(PatientQuery(first_name="Sam", last_name="Lee"))

        now = datetime.datetime.now(datetime.UTC)
        window = AvailabilityQuery(
            practitioner_id=practitioners[0].id,
            service_id=services[0].id,
            start_from=now + datetime.timedelta(days=1),
            start_to=now + datetime.timedelta(days=3),
        )
        slots = await adapter.availability(window)
        assert slots
        first = await adapter.next_available(window)
        assert first is not None

        booked = await adapter.book(
            BookCommand(
                patient_id=patient.id,
                practitioner_id=practitioners[0].id,
                service_id=services[0].id,
                start=first.start,
                notes="first visit",
            )
        )
        assert (await adapter.get_appointment(booked.id)).id == booked.id
        moved = await adapter.reschedule(
            RescheduleCommand(appointment_id=booked.id, start=slots[-1].start, notes="moved")
        )
        assert moved.start == slots[-1].start
        assert await adapter.list_appointments(AppointmentQuery(patient_id=patient.id))
        cancelled = await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.AWAY))
        assert cancelled.status == "cancelled"
        changes = await adapter.changes_since(None)
        assert changes is not None

    assert_conforms(openapi, emulator)

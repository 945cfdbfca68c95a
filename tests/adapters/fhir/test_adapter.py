"""The `fhir` adapter against its emulator: capabilities as the server declares them, the dialect it reads, every
request it sends held to FHIR and to what the CapabilityStatement declares, and a patient changed in the server
reaching the gateway's subscribers through the poll."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.base import AdapterContext, Capability
from adapters.emulation import default_seed
from adapters.errors import SlotUnavailable, Unsupported
from adapters.fhir.adapter import FhirAdapter
from adapters.fhir.dialect import Dialect
from adapters.fhir.emulator import BASE, OPERATIONS, FhirEmulator
from adapters.fhir.settings import FhirCredentials, FhirSettings
from gateway.crypto import Keyring
from schemas.appointments import AppointmentStatus, CancelReason
from schemas.commands import (
    AppointmentQuery,
    AvailabilityQuery,
    BookCommand,
    CancelCommand,
    NewPatient,
    RescheduleCommand,
)
from schemas.patients import PatientQuery
from schemas.webhooks import EventType, PatientSnapshot
from tests.adapters.fhir.conftest import Served, serve
from tests.gateway.conftest import Harness, running_harness
from tests.sync.support import Sync

ZONE = ZoneInfo("Australia/Melbourne")
RESULT_PARAMS = {"_count", "_sort", "_offset"}
# The OperationDefinition appointment-find's IN parameters (IHE ITI Scheduling 1.0.1).
FIND_PARAMS = {
    "start", "end", "specialty", "visit-type", "practitioner", "organization", "location-string",
    "location-reference", "patient-reference", "patient-resource", "reason", "referral-identifier", "timing",
    "insurance-reference", "_count",
}  # fmt: skip


def local(days: int, hour: int, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(ZONE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


# ---------------------------------------------------------------------------------------------- capabilities


async def test_capabilities_narrow_to_what_the_server_declares(http: httpx.AsyncClient) -> None:
    for served in serve(FhirEmulator(default_seed(), patient_create=False, last_updated_search=False)):
        adapter = served.adapter(http)
        assert adapter.supports(Capability.CREATE_PATIENT)  # nothing read yet: the class's superset
        await adapter.check()
        assert not adapter.supports(Capability.CREATE_PATIENT)
        assert not adapter.supports(Capability.CHANGES_SINCE)
        assert adapter.supports(Capability.BOOK)
        assert Capability.CREATE_PATIENT in FhirAdapter.capabilities  # the matrix shows the superset
        with pytest.raises(Unsupported):
            adapter.require(Capability.CREATE_PATIENT)
        with pytest.raises(Unsupported):
            await adapter.create_patient(NewPatient(first_name="No", last_name="Create"))
        with pytest.raises(Unsupported):
            await adapter.changes_since("2030-01-01T00:00:00Z")
        fresh = served.adapter(http)  # a new instance knows at once: the statement is kept per credentials
        assert not fresh.supports(Capability.CREATE_PATIENT)
        before = served.emulator.stats().requests
        assert (await fresh.declared()).dialect is Dialect.IHE
        assert served.emulator.stats().requests == before  # read once per server and credentials


async def test_the_dialect_comes_from_the_statement_unless_forced(fhir: Served, http: httpx.AsyncClient) -> None:
    declared = await fhir.adapter(http).declared()
    expected = Dialect.IHE if fhir.emulator.dialect == "ihe" else Dialect.REST
    assert declared.dialect is expected
    assert {Capability.BOOK, Capability.RESCHEDULE, Capability.AVAILABILITY} <= declared.capabilities
    if fhir.emulator.dialect == "rest":
        forced = await fhir.adapter(http, dialect="ihe").declared()  # no $book declared: nothing to book with
        assert Capability.BOOK not in forced.capabilities
        lax = await fhir.adapter(http, slots_enforced=False).declared()  # refused by reading appointments instead
        assert Capability.REJECTS_DOUBLE_BOOKING in lax.capabilities


def test_credentials_are_client_credentials_or_a_bearer_token() -> None:
    ok = {"token_url": "https://auth.example/token", "client_id": "a", "client_secret": "b"}
    assert msgspec.convert(ok, FhirCredentials).client_id == "a"
    assert msgspec.convert({"bearer_token": "t"}, FhirCredentials).bearer_token == "t"
    for bad in ({}, {"client_id": "a"}, {**ok, "bearer_token": "t"}, {"bearer_token": ""}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, FhirCredentials)
    assert "secret" not in repr(msgspec.convert(ok, FhirCredentials))
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"base_url": "ftp://x", "location_id": "L1"}, FhirSettings)


# ---------------------------------------------------------------------------------------------- a whole flow


async def test_a_whole_flow_sends_only_fhir_and_only_what_the_server_declares(
    fhir: Served, http: httpx.AsyncClient
) -> None:
    adapter = fhir.adapter(http)
    await adapter.check()
    [alice, ben] = await adapter.list_practitioners()
    services = {s.name: s for s in await adapter.list_services()}
    standard = services["Standard Consultation"]
    assert standard.duration_minutes == 30
    assert standard.practitioner_ids == sorted([alice.id, ben.id])
    [location] = await adapter.list_locations()
    assert location.time_zone == "Australia/Melbourne"
    [jane] = await adapter.find_patients(PatientQuery(phone="+61412345678"))  # stored as "+61 412 345 678"
    assert jane.phones == ["+61412345678"]
    query = AvailabilityQuery(
        practitioner_id=alice.id, service_id=standard.id, start_from=local(2, 9), start_to=local(2, 12)
    )
    slots = await adapter.availability(query)
    assert [s.start for s in slots][:2] == [local(2, 9), local(2, 9, 15)]
    booked = await adapter.book(
        BookCommand(
            patient_id=jane.id,
            practitioner_id=alice.id,
            service_id=standard.id,
            start=slots[0].start,
            notes="first visit",
            operation_id="op_flow_1",
        )
    )
    assert (booked.notes, booked.operation_id, booked.service_id) == ("first visit", "op_flow_1", standard.id)
    assert booked.status is AppointmentStatus.BOOKED
    with pytest.raises(SlotUnavailable):
        await adapter.book(
            BookCommand(patient_id=jane.id, practitioner_id=alice.id, service_id=standard.id, start=local(2, 9, 15))
        )
    moved = await adapter.reschedule(
        RescheduleCommand(appointment_id=booked.id, start=local(3, 11), practitioner_id=ben.id)
    )
    assert (moved.start, moved.practitioner_id, moved.notes) == (local(3, 11), ben.id, "first visit")
    cancelled = await adapter.cancel(CancelCommand(appointment_id=booked.id, reason=CancelReason.SICK, note="flu"))
    assert (cancelled.status, cancelled.cancel_reason, cancelled.cancel_note) == (
        AppointmentStatus.CANCELLED,
        CancelReason.SICK,
        "flu",
    )
    listed = await adapter.list_appointments(AppointmentQuery(patient_id=jane.id))
    assert [a.id for a in listed] == [booked.id]
    created = await adapter.create_patient(NewPatient(first_name="Sam", last_name="Lee", email="sam.lee@example.com"))
    changes = await adapter.changes_since(local(-1, 0).isoformat())
    assert created.id in {p.id for p in changes.patients}
    assert [a.id for a in changes.appointments] == [booked.id]

    seen = fhir.conform()
    assert seen["request:Patient"] == 1
    assert seen["request:Parameters" if fhir.emulator.dialect == "ihe" else "request:Appointment"] >= 3
    _assert_only_declared_parameters(fhir)


def _assert_only_declared_parameters(served: Served) -> None:
    """Every search the adapter sent names only parameters the server's CapabilityStatement (or, for `$find`, the
    IG's OperationDefinition) declares: an undeclared one would be ignored by the server, silently."""
    statement = served.emulator.capability_statement(served.base)
    declared = {r["type"]: {p["name"] for p in r.get("searchParam", [])} for r in statement["rest"][0]["resource"]}
    for exchange in served.emulator.exchanges:
        if exchange.method != "GET" or not exchange.query:
            continue
        parts = exchange.path.removeprefix(BASE + "/").split("/")
        names = {k.partition(":")[0] for k, _ in urllib.parse.parse_qsl(exchange.query, keep_blank_values=True)}
        if parts == ["Appointment", "$find"]:
            assert names <= FIND_PARAMS, names
            assert "find" in OPERATIONS
        elif len(parts) == 1:
            assert names <= declared[parts[0]] | RESULT_PARAMS, (parts[0], names - declared[parts[0]])


# ---------------------------------------------------------------------------------------------- $book answers


def _book_transport(answer: httpx.Response) -> httpx.MockTransport:
    statement = FhirEmulator(default_seed()).capability_statement("https://fhir.example/r4")
    service = {
        "resourceType": "HealthcareService",
        "id": "hs1",
        "type": [{"coding": [{"system": "urn:x", "code": "STD"}]}],
    }

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/r4/")
        headers = {"content-type": "application/fhir+json"}
        if path == "metadata":
            return httpx.Response(200, json=statement, headers=headers)
        if path == "HealthcareService/hs1":
            return httpx.Response(200, json=service, headers=headers)
        if path == "Appointment" and request.method == "GET":
            return httpx.Response(
                200, json={"resourceType": "Bundle", "type": "searchset", "total": 0}, headers=headers
            )
        if path == "Appointment/$book":
            return answer
        return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []}, headers=headers)

    return httpx.MockTransport(handle)


def _mock_adapter(http: httpx.AsyncClient) -> FhirAdapter:
    return FhirAdapter(
        FhirSettings(base_url="https://fhir.example/r4", location_id="L1"),
        FhirCredentials(bearer_token="t"),
        http,
        AdapterContext(location_id="loc", time_zone="Australia/Melbourne", write_patience_seconds=0.1),
    )


async def test_a_book_answered_200_with_only_an_outcome_is_slot_unavailable_and_leaks_no_diagnostics() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "conflict", "diagnostics": "Jane Citizen is already booked"}],
    }
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": outcome}]}
    answer = httpx.Response(200, json=bundle, headers={"content-type": "application/fhir+json"})
    async with httpx.AsyncClient(transport=_book_transport(answer)) as http:
        adapter = _mock_adapter(http)
        command = BookCommand(patient_id="p1", practitioner_id="pr1", service_id="hs1", start=local(2, 10))
        with pytest.raises(SlotUnavailable) as caught:
            await adapter.book(command)
    assert "Jane" not in json.dumps({k: str(v) for k, v in vars(caught.value).items()})


async def test_a_book_answered_with_a_bare_appointment_is_read() -> None:
    start = local(2, 10).astimezone(dt.UTC)
    stored = {
        "resourceType": "Appointment",
        "id": "a1",
        "status": "booked",
        "start": start.isoformat(),
        "end": (start + dt.timedelta(minutes=30)).isoformat(),
        "participant": [
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/pr1"}, "status": "accepted"},
            {"actor": {"reference": "Location/L1"}, "status": "accepted"},
        ],
    }
    answer = httpx.Response(201, json=stored, headers={"content-type": "application/fhir+json"})
    async with httpx.AsyncClient(transport=_book_transport(answer)) as http:
        booked = await _mock_adapter(http).book(
            BookCommand(patient_id="p1", practitioner_id="pr1", service_id="hs1", start=start)
        )
    assert (booked.id, booked.start) == ("a1", start)


# ---------------------------------------------------------------------------------------------- the gateway's poll


@pytest.fixture
def live(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    with running_harness("fhir", database_url, keyring) as h:
        yield h


def test_a_patient_changed_in_the_server_reaches_subscribers_as_patient_updated(live: Harness) -> None:
    """What a receptionist changes in the FHIR server's own screens (a PUT of the Patient) is found by the poll
    (`Patient?_lastUpdated=ge…`) and announced once as `patient.updated`, carrying the new value."""
    sync = Sync(live)
    sync.tick()  # the first poll only sets the cursor
    with live.client() as api:
        practitioner = api.get("/v1/practitioners").json()["items"][0]["id"]
        service = next(s for s in api.get("/v1/services").json()["items"] if s["name"] == "Standard Consultation")
        patient_id = api.get("/v1/patients", params={"email": "jane.citizen@example.com"}).json()["items"][0]["id"]
        day = (dt.datetime.now(ZONE).date() + dt.timedelta(days=3)).isoformat()
        booked = api.post(
            "/v1/appointments",
            json={
                "practitioner": {"id": practitioner},
                "service": {"id": service["id"]},
                "patient": {"id": patient_id},
                "start": f"{day}T10:00:00",
                "time_zone": "Australia/Melbourne",
            },
        )
        assert booked.status_code == 201, booked.text
    sync.tick()
    assert EventType.APPOINTMENT_BOOKED in [e.type for e in sync.new_events()]

    emulator = live.emulator
    assert isinstance(emulator, FhirEmulator)
    with httpx.Client(
        base_url=live.emulator_url + BASE,
        headers={"Authorization": f"Bearer {emulator.static_token}", "Content-Type": "application/fhir+json"},
        timeout=10,
    ) as screens:
        patient: dict[str, Any] = screens.get(f"Patient/{patient_id}").json()
        patient["name"][0]["family"] = "Citizen-Smith"
        patient["telecom"] = [t for t in patient["telecom"] if t["system"] != "phone"]
        patient["telecom"].append({"system": "phone", "value": "+61 400 999 888", "use": "mobile"})
        assert screens.put(f"Patient/{patient_id}", json=patient).status_code == 200

    sync.tick()
    [updated] = sync.new_events()
    assert (updated.type, updated.location_id) == (EventType.PATIENT_UPDATED, live.sites[0].location_id)
    assert isinstance(updated.data, PatientSnapshot)
    assert (updated.data.patient.last_name, updated.data.patient.phones) == ("Citizen-Smith", ["+61400999888"])
    assert updated.data.upcoming_appointment is not None
    sync.tick()
    assert sync.new_events() == []  # nothing changed since: announced once

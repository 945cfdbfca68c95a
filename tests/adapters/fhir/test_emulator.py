"""The FHIR emulator answers as FHIR R4 and the IHE ITI Scheduling IG say, over real HTTP, in both dialects; every
body it received or answered is validated with the `fhir.resources` models afterwards (conftest)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.emulation import Fault, FaultKind, SeedPatient, default_seed
from adapters.fhir.emulator import BASE, IHE_APPOINTMENT, OPERATIONS, TOKEN_PATH, VISIT_TYPES, FhirEmulator
from tests.adapters.fhir.conftest import Served, serve

ZONE = ZoneInfo("Australia/Melbourne")


def local(days: int, hour: int, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(ZONE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE)


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if body["resourceType"] == "Bundle":
        [entry] = body["entry"]
        body = entry["resource"]
    assert body["resourceType"] == "OperationOutcome", body
    first: dict[str, Any] = body["issue"][0]
    return first


class Ids:
    def __init__(self, served: Served) -> None:
        self.patient = served.first("Patient", email="jane.citizen@example.com")["id"]
        self.practitioners = served.ids("Practitioner")
        self.location = served.emulator.location_ids[0]
        services = served.json("HealthcareService")["entry"]
        self.services = {e["resource"]["name"]: e["resource"] for e in services}
        self.std = self.services["Standard Consultation"]

    def visit_type(self, service: dict[str, Any] | None = None) -> str:
        coding = (service or self.std)["type"][0]["coding"][0]
        return f"{coding['system']}|{coding['code']}"

    def appointment(
        self, start: dt.datetime, minutes: int = 30, status: str = "pending", **extra: Any
    ) -> dict[str, Any]:
        end = start + dt.timedelta(minutes=minutes)
        return {
            "resourceType": "Appointment",
            "status": status,
            "start": stamp(start),
            "end": stamp(end),
            "requestedPeriod": [{"start": stamp(start), "end": stamp(end)}],
            "participant": [
                {"actor": {"reference": f"Patient/{self.patient}"}, "status": "accepted"},
                {"actor": {"reference": f"Practitioner/{self.practitioners[0]}"}, "status": "accepted"},
                {"actor": {"reference": f"Location/{self.location}"}, "status": "accepted"},
            ],
            **extra,
        }


def book(served: Served, appointment: dict[str, Any]) -> httpx.Response:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": appointment}],
    }
    return served.send("POST", "Appointment/$book", parameters)


def only(bundle: dict[str, Any]) -> dict[str, Any]:
    [entry] = bundle["entry"]
    resource: dict[str, Any] = entry["resource"]
    return resource


# ---------------------------------------------------------------------------------------------- conformance


def test_the_capability_statement_declares_the_dialect_and_is_public(fhir: Served) -> None:
    answer = httpx.get(fhir.base + "/metadata")  # no token: metadata is public
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/fhir+json")
    statement = answer.json()
    assert (statement["fhirVersion"], statement["kind"]) == ("4.0.1", "instance")
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    appointment = resources["Appointment"]
    interactions = {i["code"] for i in appointment["interaction"]}
    if fhir.emulator.dialect == "ihe":
        assert {o["name"]: o["definition"] for o in appointment["operation"]} == OPERATIONS
        assert interactions == {"read", "vread", "search-type"}  # the IG's server statement: no REST writes
        assert "Slot" not in resources
    else:
        assert "operation" not in appointment
        assert {"create", "update"} <= interactions
        assert {"schedule", "status", "start"} <= {p["name"] for p in resources["Slot"]["searchParam"]}
    assert "create" in {i["code"] for i in resources["Patient"]["interaction"]}


def test_a_server_without_patient_create_or_last_updated_says_so_and_refuses() -> None:
    for served in serve(FhirEmulator(default_seed(), patient_create=False, last_updated_search=False)):
        statement = served.json("metadata")
        patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
        assert "create" not in {i["code"] for i in patient["interaction"]}
        assert "_lastUpdated" not in {p["name"] for p in patient["searchParam"]}
        refused = served.send_unfit("POST", "Patient", {"resourceType": "Patient", "name": [{"family": "X"}]})
        assert refused.status_code == 405
        assert issue(refused)["code"] == "not-supported"


# ---------------------------------------------------------------------------------------------- auth and limits


def test_client_credentials_and_bearer_tokens() -> None:
    now = [dt.datetime.now(dt.UTC).timestamp()]
    emulator = FhirEmulator(default_seed(), token_lifetime=120, clock=lambda: now[0])
    for served in serve(emulator):
        token_url = served.root + TOKEN_PATH
        good = {
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
        }
        assert httpx.post(token_url, data={**good, "client_secret": "nope"}).json() == {"error": "invalid_client"}
        assert httpx.post(token_url, data={**good, "grant_type": "password"}).status_code == 400
        basic = httpx.post(token_url, data={"grant_type": "client_credentials"}, auth=(emulator.client_id, "nope"))
        assert basic.status_code == 401
        minted = httpx.post(token_url, data=good).json()
        assert (minted["token_type"], minted["expires_in"]) == ("Bearer", 120)
        headers = {"Authorization": f"Bearer {minted['access_token']}"}
        assert httpx.get(served.base + "/Practitioner", headers=headers).status_code == 200
        now[0] += 121
        expired = httpx.get(served.base + "/Practitioner", headers=headers)
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"].startswith("Bearer")
        assert issue(expired)["code"] == "login"
        assert httpx.get(served.base + "/Practitioner").status_code == 401


def test_over_the_limit_is_429_throttled_with_retry_after() -> None:
    for served in serve(FhirEmulator(default_seed(), rate_limit_per_minute=3)):
        answers = [served.get("Practitioner") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert issue(answers[-1])["code"] == "throttled"


# ---------------------------------------------------------------------------------------------- search


@pytest.fixture
def crowded() -> Iterator[Served]:
    seed = default_seed()
    seed.patients += [
        SeedPatient(first_name=f"P{i}", last_name="Smithers", email=f"p{i}@example.com") for i in range(24)
    ]
    yield from serve(FhirEmulator(seed))


def test_searches_page_with_count_next_and_total(crowded: Served) -> None:
    page = crowded.json("Patient", _count=10)
    assert page["total"] == 25
    assert len(page["entry"]) == 10
    seen = [e["resource"]["id"] for e in page["entry"]]
    links = {link["relation"]: link["url"] for link in page["link"]}
    assert "previous" not in links
    while "next" in links:
        assert links["next"].startswith(crowded.base + "/Patient?")
        page = crowded.http.get(links["next"]).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        links = {link["relation"]: link["url"] for link in page["link"]}
    assert len(seen) == len(set(seen)) == 25
    assert "previous" in links
    assert crowded.json("Patient", _count=5000)["link"][0]["url"].endswith("_count=1000")  # Medplum's maximum


def test_string_token_and_date_search_semantics(crowded: Served) -> None:
    assert crowded.json("Patient", family="smith")["total"] == 24  # a string matches at the start, any case
    assert crowded.ids("Patient", **{"family:exact": "smithers"}) == []
    assert crowded.json("Patient", **{"family:exact": "Smithers"})["total"] == 24
    assert len(crowded.ids("Patient", email="JANE.CITIZEN@example.com")) == 1
    assert len(crowded.ids("Patient", phone="+61 412 345 678")) == 1
    assert crowded.ids("Patient", phone="+61412345678") == []  # a token matches the stored text exactly
    assert len(crowded.ids("Patient", phone="+61412345678,+61 412 345 678")) == 1  # a comma ORs
    assert len(crowded.ids("Patient", birthdate="1985-04")) == 1  # a month is a range
    assert crowded.ids("Patient", birthdate="gt1985-04-12") == []
    assert len(crowded.ids("Patient", birthdate="ge1985-04-12")) == 1
    prefix = crowded.http.get("Patient", params=[("family", "Smithers"), ("given", "P1")]).json()
    assert prefix["total"] == 11  # P1 and P10 to P19: repeated parameters AND, strings match at the start
    exact = crowded.http.get("Patient", params=[("family", "Smithers"), ("given:exact", "P1")]).json()
    assert exact["total"] == 1


def test_unknown_parameters_are_ignored_unless_strict_and_bad_dates_are_400(fhir: Served) -> None:
    lenient = fhir.json("Patient", shoe_size="44", email="jane.citizen@example.com")
    assert lenient["total"] == 1
    assert "shoe_size" not in lenient["link"][0]["url"]  # the self link names what was applied
    strict = fhir.http.get("Patient", params={"shoe_size": "44"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    unescaped = fhir.get("Appointment", date="ge2030-01-01T10:00:00 11:00")  # what an unescaped `+` arrives as
    assert unescaped.status_code == 400
    assert issue(unescaped)["code"] == "value"
    assert fhir.get("Appointment", date="ge2030-01-01T10:00:00+11:00").status_code == 200


def test_last_updated_filters_changes(fhir: Served) -> None:
    patient = fhir.first("Patient", email="jane.citizen@example.com")
    before = patient["meta"]["lastUpdated"]
    assert fhir.ids("Patient", _lastUpdated=f"gt{before}") == []
    patient["telecom"].append({"system": "email", "value": "jane.work@example.com", "use": "work"})
    updated = fhir.send("PUT", f"Patient/{patient['id']}", patient)
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"
    assert fhir.ids("Patient", _lastUpdated=f"gt{before}") == [patient["id"]]
    old = fhir.json(f"Patient/{patient['id']}/_history/1")
    assert len(old["telecom"]) == len(updated.json()["telecom"]) - 1


# ---------------------------------------------------------------------------------------------- errors


def test_errors_are_operation_outcomes(fhir: Served) -> None:
    unknown = fhir.get("Appointment/987654321")
    assert (unknown.status_code, issue(unknown)["code"]) == (404, "not-found")
    no_type = fhir.get("Spaceship")
    assert (no_type.status_code, issue(no_type)["code"]) == (404, "not-supported")
    xml = fhir.http.get("Patient", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 406
    patient = fhir.first("Patient")
    as_text = fhir.http.put(
        f"Patient/{patient['id']}", content=msgspec.json.encode(patient), headers={"Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415
    not_json = fhir.send_unfit("PUT", f"Patient/{patient['id']}", b"{nope")
    assert (not_json.status_code, issue(not_json)["code"]) == (400, "structure")
    create_by_put = fhir.send("PUT", "Patient/brand-new", {**patient, "id": "brand-new"})
    assert create_by_put.status_code == 405  # no update-as-create (http.html)


# ---------------------------------------------------------------------------------------------- IHE operations


def test_find_proposes_ihe_appointments_inside_the_window(ihe: Served) -> None:
    ids = Ids(ihe)
    start, end = local(2, 0), local(3, 0)
    params = {
        "start": stamp(start),
        "end": stamp(end),
        "practitioner": f"Practitioner/{ids.practitioners[0]}",
        "location-reference": f"Location/{ids.location}",
        "visit-type": ids.visit_type(),
        "_count": "5",
    }
    found = ihe.json("Appointment/$find", **params)
    assert found["type"] == "searchset"
    assert found["total"] == 32 - 1  # 09:00 to 16:30, every 15 minutes, 30 minutes long
    proposals = [e["resource"] for e in found["entry"]]
    assert len(proposals) == 5
    assert all(p["status"] == "proposed" and p["meta"]["profile"] == [IHE_APPOINTMENT] for p in proposals)
    starts = [dt.datetime.fromisoformat(p["start"].replace("Z", "+00:00")) for p in proposals]
    assert starts == sorted(starts)
    assert starts[0] == local(2, 9)
    assert all(p["minutesDuration"] == 30 and p["requestedPeriod"] for p in proposals)
    assert any(link["relation"] == "next" for link in found["link"])
    by_post = ihe.send(
        "POST",
        "Appointment/$find",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDateTime": stamp(start)},
                {"name": "end", "valueDateTime": stamp(end)},
                {"name": "practitioner", "valueReference": {"reference": f"Practitioner/{ids.practitioners[0]}"}},
                {"name": "visit-type", "valueString": ids.visit_type()},
                {"name": "location-reference", "valueReference": {"reference": f"Location/{ids.location}"}},
            ],
        },
    )
    assert by_post.json()["total"] == found["total"]
    missing = ihe.get("Appointment/$find", start=stamp(start))
    assert (missing.status_code, issue(missing)["code"]) == (400, "required")


def test_book_new_pending_is_booked_and_a_taken_time_is_a_409_bundle(ihe: Served) -> None:
    ids = Ids(ihe)
    asked = ids.appointment(local(2, 10))
    booked = book(ihe, asked)
    assert booked.status_code == 200
    bundle = booked.json()
    appointment = only(bundle)
    assert (bundle["type"], appointment["status"]) == ("searchset", "booked")
    assert appointment["start"] == local(2, 10).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    again = book(ihe, ids.appointment(local(2, 10, 15)))  # overlaps the first
    assert again.status_code == 409
    [entry] = again.json()["entry"]  # only an OperationOutcome in the Bundle (ITI-117)
    assert entry["resource"]["resourceType"] == "OperationOutcome"
    assert issue(again)["code"] == "conflict"
    wrong = book(ihe, ids.appointment(local(2, 14), status="booked"))  # a modification of nothing
    assert wrong.status_code == 404
    no_period = ids.appointment(local(2, 15))
    del no_period["requestedPeriod"]
    refused = book(ihe, no_period)  # the IHE profile's requestedPeriod 1..*
    assert (refused.status_code, issue(refused)["code"]) == (400, "required")
    naive = ids.appointment(local(2, 16))
    naive["start"] = naive["start"].rstrip("Z")
    bad = ihe.send_unfit(
        "POST",
        "Appointment/$book",
        {"resourceType": "Parameters", "parameter": [{"name": "appointment-resource", "resource": naive}]},
    )
    assert bad.status_code == 400
    assert issue(bad)["expression"] == ["appointment-resource.start"]


def test_book_modifies_and_cancels_an_existing_appointment(ihe: Served) -> None:
    ids = Ids(ihe)
    first = only(book(ihe, ids.appointment(local(2, 10))).json())
    book(ihe, ids.appointment(local(2, 12)))
    moved = {**first, "start": stamp(local(2, 11)), "end": stamp(local(2, 11, 30)), "status": "booked"}
    answer = only(book(ihe, moved).json())
    assert (answer["id"], answer["meta"]["versionId"]) == (first["id"], "2")
    clash = book(ihe, {**first, "start": stamp(local(2, 12)), "end": stamp(local(2, 12, 30)), "status": "booked"})
    assert clash.status_code == 409
    reason = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason", "code": "pat"}]
    }
    cancelled = only(book(ihe, {**answer, "status": "cancelled", "cancelationReason": reason}).json())
    assert cancelled["status"] == "cancelled"
    assert ihe.json(f"Appointment/{first['id']}")["cancelationReason"] == reason
    assert ihe.emulator.stats().active_appointments == 1


def test_hold_keeps_a_proposal_pending_until_booked_or_expired() -> None:
    now = [dt.datetime.now(dt.UTC).timestamp()]
    for served in serve(FhirEmulator(default_seed(), clock=lambda: now[0], hold_minutes=10)):
        ids = Ids(served)
        params = {
            "start": stamp(local(3, 9)),
            "end": stamp(local(3, 9, 30)),
            "practitioner": f"Practitioner/{ids.practitioners[0]}",
            "visit-type": ids.visit_type(),
            "location-reference": f"Location/{ids.location}",
            "patient-reference": f"Patient/{ids.patient}",
        }
        proposal = only(served.json("Appointment/$find", **params))
        reference = {"name": "appointment-reference", "valueReference": {"reference": f"Appointment/{proposal['id']}"}}
        held = only(
            served.send("POST", "Appointment/$hold", {"resourceType": "Parameters", "parameter": [reference]}).json()
        )
        assert held["status"] == "pending"
        assert "entry" not in served.json("Appointment/$find", **params)  # a held time is not proposed
        again = served.send("POST", "Appointment/$hold", {"resourceType": "Parameters", "parameter": [reference]})
        assert (again.status_code, issue(again)["severity"], issue(again)["code"]) == (409, "fatal", "not-found")
        held_ref = {"name": "appointment-reference", "valueReference": {"reference": f"Appointment/{held['id']}"}}
        booked = only(
            served.send("POST", "Appointment/$book", {"resourceType": "Parameters", "parameter": [held_ref]}).json()
        )
        assert (booked["id"], booked["status"]) == (held["id"], "booked")
        # A second hold, left to expire: the time is proposed again.
        later = {**params, "start": stamp(local(3, 10)), "end": stamp(local(3, 10, 30))}
        other = only(served.json("Appointment/$find", **later))
        ref = {"name": "appointment-reference", "valueReference": {"reference": f"Appointment/{other['id']}"}}
        second = only(
            served.send("POST", "Appointment/$hold", {"resourceType": "Parameters", "parameter": [ref]}).json()
        )
        now[0] += 11 * 60
        assert served.json(f"Appointment/{second['id']}")["status"] in ("pending", "cancelled")
        assert served.json("Appointment/$find", **later)["total"] == 1
        assert served.json(f"Appointment/{second['id']}")["status"] == "cancelled"


def test_rest_appointments_are_not_served_operations(rest: Served) -> None:
    refused = rest.get("Appointment/$find", start="2030-01-01", end="2030-01-02")
    assert (refused.status_code, issue(refused)["code"]) == (404, "not-supported")


# ---------------------------------------------------------------------------------------------- REST: Schedule, Slot


def test_slots_are_free_until_an_appointment_fills_them_and_a_busy_slot_is_refused(rest: Served) -> None:
    ids = Ids(rest)
    schedule = rest.first("Schedule", actor=f"Practitioner/{ids.practitioners[0]}")
    window: list[tuple[str, str | int | float | bool | None]] = [
        ("schedule", f"Schedule/{schedule['id']}"),
        ("start", f"ge{stamp(local(2, 10))}"),
        ("start", f"lt{stamp(local(2, 10, 30))}"),
    ]
    slots = [e["resource"] for e in rest.http.get("Slot", params=[*window, ("status", "free")]).json()["entry"]]
    assert [s["status"] for s in slots] == ["free", "free"]
    appointment = ids.appointment(local(2, 10), status="booked", slot=[{"reference": f"Slot/{s['id']}"} for s in slots])
    created = rest.send("POST", "Appointment", appointment)
    assert created.status_code == 201
    assert created.headers["location"].endswith(f"/Appointment/{created.json()['id']}/_history/1")
    assert rest.http.get("Slot", params=[*window, ("status", "free")]).json()["total"] == 0
    assert {s["status"] for s in (e["resource"] for e in rest.http.get("Slot", params=window).json()["entry"])} == {
        "busy"
    }
    again = rest.send("POST", "Appointment", appointment)
    assert (again.status_code, issue(again)["code"]) == (409, "conflict")
    assert rest.json(f"Slot/{slots[0]['id']}")["status"] == "busy"


def test_update_honours_if_match_and_keeps_every_version(rest: Served) -> None:
    ids = Ids(rest)
    created = rest.send("POST", "Appointment", ids.appointment(local(3, 10), status="booked")).json()
    cancelled = {**created, "status": "cancelled"}
    stale = rest.send("PUT", f"Appointment/{created['id']}", cancelled, **{"If-Match": 'W/"7"'})
    assert (stale.status_code, issue(stale)["code"]) == (412, "conflict")
    done = rest.send("PUT", f"Appointment/{created['id']}", cancelled, **{"If-Match": 'W/"1"'})
    assert done.json()["status"] == "cancelled"
    assert rest.json(f"Appointment/{created['id']}/_history/1")["status"] == "booked"
    minimal = rest.send("PUT", f"Appointment/{created['id']}", done.json(), Prefer="return=minimal")
    assert (minimal.status_code, minimal.content) == (200, b"")


# ---------------------------------------------------------------------------------------------- faults


def test_misstore_shifts_what_a_create_stores_and_reject_quotes_its_message(rest: Served) -> None:
    ids = Ids(rest)
    rest.emulator.faults.add(Fault(kind=FaultKind.MISSTORE, shift_minutes=60))
    stored = rest.send("POST", "Appointment", ids.appointment(local(4, 10), status="booked")).json()
    assert stored["start"].startswith(local(4, 11).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M"))
    rest.emulator.faults.add(Fault(kind=FaultKind.REJECT, method="POST", status=422, message="Jane Citizen is invalid"))
    refused = rest.send("POST", "Appointment", ids.appointment(local(4, 14), status="booked"))
    assert refused.status_code == 422
    assert issue(refused) == {"severity": "error", "code": "business-rule", "diagnostics": "Jane Citizen is invalid"}


def test_find_without_visit_type_proposes_the_shortest_service(ihe: Served) -> None:
    ids = Ids(ihe)
    found = ihe.json(
        "Appointment/$find",
        start=stamp(local(2, 9)),
        end=stamp(local(2, 10)),
        practitioner=f"Practitioner/{ids.practitioners[1]}",
    )
    assert {e["resource"]["minutesDuration"] for e in found["entry"]} == {30}
    assert VISIT_TYPES in found["entry"][0]["resource"]["serviceType"][0]["coding"][0]["system"]
    assert found["link"][0]["url"].startswith(f"{ihe.base}/Appointment/$find?")
    assert BASE in found["link"][0]["url"]


# ---------------------------------------------------------------------------------------------- documented switches


def test_last_updated_ge_includes_a_record_stamped_at_that_instant(fhir: Served) -> None:
    patient = fhir.first("Patient", email="jane.citizen@example.com")
    at = patient["meta"]["lastUpdated"]
    assert patient["id"] in fhir.ids("Patient", _lastUpdated=f"ge{at}")
    assert patient["id"] not in fhir.ids("Patient", _lastUpdated=f"gt{at}")


def test_a_plain_rest_server_never_marks_a_slot_busy_and_stores_an_overbooking() -> None:
    for served in serve(FhirEmulator(default_seed(), dialect="rest", slots_enforced=False)):
        ids = Ids(served)
        schedule = served.first("Schedule", actor=f"Practitioner/{ids.practitioners[0]}")
        window = {"schedule": f"Schedule/{schedule['id']}", "start": f"ge{stamp(local(2, 10))}", "_count": "2"}
        slots = [e["resource"] for e in served.json("Slot", **window)["entry"]]
        refs = [{"reference": f"Slot/{s['id']}"} for s in slots]
        appointment = ids.appointment(local(2, 10), status="booked", slot=refs)
        assert served.send("POST", "Appointment", appointment).status_code == 201
        assert {e["resource"]["status"] for e in served.json("Slot", **window)["entry"]} == {"free"}
        assert served.send("POST", "Appointment", appointment).status_code == 201  # HAPI stores it: no Slot rules
        assert served.emulator.stats().active_appointments == 2
        settings, _ = served.emulator.location_config(served.root)
        assert msgspec.json.decode(settings)["slots_enforced"] is False


def test_book_changes_as_new_or_ignoring_the_status_model_a_partial_book() -> None:
    for served in serve(FhirEmulator(default_seed(), dialect="ihe", book_changes="as-new")):
        ids = Ids(served)
        first = only(book(served, ids.appointment(local(2, 10))).json())
        moved = only(book(served, {**first, "start": stamp(local(2, 11)), "end": stamp(local(2, 11, 30))}).json())
        assert moved["id"] != first["id"]
        assert served.emulator.stats().active_appointments == 2
    for served in serve(FhirEmulator(default_seed(), dialect="ihe", book_changes="ignore-status")):
        ids = Ids(served)
        first = only(book(served, ids.appointment(local(2, 10))).json())
        kept = only(book(served, {**first, "status": "cancelled"}).json())
        assert (kept["id"], kept["status"]) == (first["id"], "booked")


def test_history_lists_every_version_newest_first_and_a_delete_without_a_resource(rest: Served) -> None:
    ids = Ids(rest)
    since = rest.first("Patient", email="jane.citizen@example.com")["meta"]["lastUpdated"]
    created = rest.send("POST", "Appointment", ids.appointment(local(3, 10), status="booked")).json()
    rest.send("PUT", f"Appointment/{created['id']}", {**created, "comment": "second version"})
    rest.emulator.delete("Appointment", created["id"])
    gone = rest.get(f"Appointment/{created['id']}")
    assert (gone.status_code, issue(gone)["code"]) == (410, "deleted")
    assert rest.ids("Appointment") == []
    history = rest.json("Appointment/_history", _since=since)
    assert history["type"] == "history"
    entries = history["entry"]
    assert [(e["request"]["method"], "resource" in e) for e in entries] == [
        ("DELETE", False),
        ("PUT", True),
        ("POST", True),
    ]
    assert entries[0]["request"]["url"] == f"Appointment/{created['id']}"
    assert entries[1]["resource"]["comment"] == "second version"
    mine = rest.json(f"Appointment/{created['id']}/_history")
    assert [e["response"]["etag"] for e in mine["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert rest.json(f"Appointment/{created['id']}/_history/2")["comment"] == "second version"
    assert rest.get(f"Appointment/{created['id']}/_history/3").status_code == 410
    statement = rest.json("metadata")
    [appointment] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Appointment"]
    assert {"history-type", "history-instance"} <= {i["code"] for i in appointment["interaction"]}


def test_an_ihe_server_declares_no_history_by_default(ihe: Served) -> None:
    refused = ihe.get("Appointment/_history")
    assert (refused.status_code, issue(refused)["code"]) == (405, "not-supported")


def test_an_undeclared_search_parameter_is_left_out_of_the_statement_and_ignored() -> None:
    for served in serve(FhirEmulator(default_seed(), dialect="ihe", undeclared={"Appointment.date"})):
        [appointment] = [r for r in served.json("metadata")["rest"][0]["resource"] if r["type"] == "Appointment"]
        assert "date" not in {p["name"] for p in appointment["searchParam"]}
        ids = Ids(served)
        book(served, ids.appointment(local(2, 10)))
        assert len(served.ids("Appointment", date="lt2000-01-01")) == 1  # ignored, as an unknown parameter is
        strict = served.http.get("Appointment", params={"date": "lt2000-01-01"}, headers={"Prefer": "handling=strict"})
        assert strict.status_code == 400

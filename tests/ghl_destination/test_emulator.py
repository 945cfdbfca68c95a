"""The GHL API v2 emulator over real HTTP: what GHL's documents say, and the known defects it reproduces."""

from __future__ import annotations

import datetime
import json
import time
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.emulation import Fault, FaultKind, ServerThread
from adapters.ghl.emulator import CALENDARS_VERSION, CONTACTS_VERSION, GhlEmulator, GhlLocationSeed, GhlQuirks

SAMPLES = Path(__file__).parents[1] / "ghl" / "samples"
MELBOURNE = zoneinfo.ZoneInfo("Australia/Melbourne")  # the seed's zone


@dataclass
class Ghl:
    emulator: GhlEmulator
    seed: GhlLocationSeed
    other: GhlLocationSeed
    http: httpx.Client
    base: str

    @property
    def loc(self) -> str:
        return self.seed.location_id

    def headers(self, version: str = CONTACTS_VERSION, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.seed.token}", "Version": version}

    def call(self, method: str, path: str, *, version: str = CONTACTS_VERSION, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(version), **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def cal(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(method, path, version=CALENDARS_VERSION, **kwargs)

    def upsert(self, **body: Any) -> httpx.Response:
        return self.call("POST", "/contacts/upsert", json={"locationId": self.loc, **body})

    def contacts(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.http.get(f"/_emulator/ghl/locations/{self.loc}/contacts").json()
        return answer

    def field(self, name: str, data_type: str = "TEXT", **extra: Any) -> str:
        r = self.call(
            "POST", f"/locations/{self.loc}/customFields", json={"name": name, "dataType": data_type, **extra}
        )
        assert r.status_code == 201, r.text
        field_id: str = r.json()["customField"]["id"]
        return field_id


def _serve(emulator: GhlEmulator) -> Iterator[Ghl]:
    seed = emulator.add_location("Clinic", calendars=[("Alice", "alice@example.com"), ("Ben", "ben@example.com")])
    other = emulator.add_location("Elsewhere", calendars=[("Cara", "cara@example.com")])
    server = ServerThread(emulator.app())
    base = server.start()
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            yield Ghl(emulator, seed, other, http, base)
    finally:
        server.stop()


@pytest.fixture
def ghl() -> Iterator[Ghl]:
    yield from _serve(GhlEmulator())


def _future(days: int = 3, hour: int = 10) -> datetime.datetime:
    day = datetime.datetime.now(MELBOURNE).date() + datetime.timedelta(days=days)
    return datetime.datetime(day.year, day.month, day.day, hour, tzinfo=MELBOURNE)


def _contact(ghl: Ghl, email: str = "pat@example.com") -> str:
    r = ghl.upsert(firstName="Pat", lastName="Lee", email=email)
    assert r.status_code == 200, r.text
    contact_id: str = r.json()["contact"]["id"]
    return contact_id


# ---------------------------------------------------------------------------------------------- headers and auth


def test_version_header_is_required_and_per_api(ghl: Ghl) -> None:
    no_version = ghl.http.get(f"/locations/{ghl.loc}", headers={"Authorization": f"Bearer {ghl.seed.token}"})
    assert no_version.status_code == 401
    assert no_version.json() == {"statusCode": 401, "message": "version header was not found."}

    unpublished = ghl.call("GET", f"/locations/{ghl.loc}", version="2020-01-01")
    assert unpublished.status_code == 401
    assert unpublished.json()["message"] == "version header is invalid"

    # The spec's per-API value: contacts and locations 2021-07-28, calendars 2021-04-15.
    assert ghl.call("GET", f"/locations/{ghl.loc}", version=CALENDARS_VERSION).status_code == 401
    assert ghl.call("GET", f"/calendars/?locationId={ghl.loc}", version=CONTACTS_VERSION).status_code == 401
    assert ghl.cal("GET", f"/calendars/?locationId={ghl.loc}").status_code == 200
    location = ghl.call("GET", f"/locations/{ghl.loc}")
    assert location.status_code == 200
    assert location.json()["location"]["id"] == ghl.loc
    assert location.json()["location"]["timezone"] == "Australia/Melbourne"


def test_runtime_version_check_accepts_any_published_version() -> None:
    for ghl in _serve(GhlEmulator(version_check="runtime")):
        assert ghl.call("GET", f"/locations/{ghl.loc}", version=CALENDARS_VERSION).status_code == 200
        assert ghl.call("GET", f"/locations/{ghl.loc}", version="2020-01-01").status_code == 401


def test_unknown_revoked_and_foreign_tokens(ghl: Ghl) -> None:
    expected = {"statusCode": 401, "message": "Invalid token: access token is invalid", "error": "Unauthorized"}
    unknown = ghl.http.get(f"/locations/{ghl.loc}", headers=ghl.headers(token="pit-not-a-token"))
    assert unknown.status_code == 401
    assert unknown.json() == expected

    forbidden = {"statusCode": 403, "message": "The token does not have access to this location."}
    other_location = ghl.call("GET", f"/locations/{ghl.other.location_id}")
    assert other_location.status_code == 403
    assert other_location.json() == forbidden
    assert ghl.call("POST", "/contacts/upsert", json={"locationId": ghl.other.location_id}).status_code == 403
    theirs = ghl.http.post(
        "/contacts/upsert",
        headers=ghl.headers(token=ghl.other.token),
        json={"locationId": ghl.other.location_id, "email": "x@example.com"},
    ).json()["contact"]["id"]
    assert ghl.call("GET", f"/contacts/{theirs}").status_code == 403

    assert ghl.http.post("/_emulator/ghl/tokens/revoke", json={"token": ghl.seed.token}).status_code == 204
    revoked = ghl.call("GET", f"/locations/{ghl.loc}")
    assert revoked.status_code == 401
    assert revoked.json() == expected


def test_missing_scope_is_a_401() -> None:
    for ghl in _serve(GhlEmulator()):
        reader = ghl.emulator.add_location("Read only", scopes=["contacts.readonly"])
        r = ghl.http.post(
            "/contacts/upsert", headers=ghl.headers(token=reader.token), json={"locationId": reader.location_id}
        )
        assert r.status_code == 401
        assert r.json() == {"statusCode": 401, "message": "The token is not authorized for this scope."}


def test_unknown_path_answers_like_nestjs(ghl: Ghl) -> None:
    r = ghl.call("GET", "/contacts/lookup/by/email")
    assert r.status_code == 404
    assert r.json() == {"statusCode": 404, "message": "Cannot GET /contacts/lookup/by/email", "error": "Not Found"}


# ---------------------------------------------------------------------------------------------- rate limits


def test_rate_limit_headers_and_429() -> None:
    now = [1_800_000_000.0]
    for ghl in _serve(GhlEmulator(burst_limit=5, burst_window_seconds=10.0, daily_limit=7, clock=lambda: now[0])):
        remaining = []
        for _ in range(5):
            r = ghl.call("GET", f"/locations/{ghl.loc}")
            assert r.status_code == 200
            assert r.headers["X-RateLimit-Max"] == "5"
            assert r.headers["X-RateLimit-Interval-Milliseconds"] == "10000"
            assert r.headers["X-RateLimit-Limit-Daily"] == "7"
            remaining.append(int(r.headers["X-RateLimit-Remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        limited = ghl.call("GET", f"/locations/{ghl.loc}")
        assert limited.status_code == 429
        assert limited.json() == {"statusCode": 429, "message": "Too Many Requests"}
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert limited.headers["X-RateLimit-Daily-Remaining"] == "2"
        assert "Retry-After" not in limited.headers  # undocumented, so never sent

        # Errors carry the headers too; the other location's token has its own budget.
        now[0] += 10
        missing = ghl.call("GET", "/contacts/nope")
        assert missing.status_code == 400
        assert missing.headers["X-RateLimit-Remaining"] == "4"
        other = ghl.http.get(f"/locations/{ghl.other.location_id}", headers=ghl.headers(token=ghl.other.token))
        assert other.headers["X-RateLimit-Daily-Remaining"] == "6"

        # The daily budget is the location's.
        assert ghl.call("GET", f"/locations/{ghl.loc}").status_code == 200
        daily = ghl.call("GET", f"/locations/{ghl.loc}")
        assert daily.status_code == 429
        assert daily.headers["X-RateLimit-Daily-Remaining"] == "0"
        assert ghl.emulator.stats().rate_limited == 2


def test_rate_limit_fault_answers_the_same_429(ghl: Ghl) -> None:
    ghl.emulator.faults.add(Fault(kind=FaultKind.RATE_LIMIT, path_prefix="/contacts"))
    r = ghl.upsert(email="a@example.com")
    assert r.status_code == 429
    assert r.json() == {"statusCode": 429, "message": "Too Many Requests"}
    assert "X-RateLimit-Remaining" in r.headers
    assert "Retry-After" not in r.headers


# ---------------------------------------------------------------------------------------------- custom fields


def test_custom_fields_create_list_and_refuse_duplicates(ghl: Ghl) -> None:
    created = ghl.call(
        "POST",
        f"/locations/{ghl.loc}/customFields",
        json={"name": "Patient ID", "dataType": "TEXT", "placeholder": "EMR id", "model": "contact"},
    )
    assert created.status_code == 201
    field = created.json()["customField"]
    assert field["fieldKey"] == "contact.patient_id"
    assert field["dataType"] == "TEXT"
    assert field["model"] == "contact"
    ghl.field("Stage", "SINGLE_OPTIONS", model="opportunity", options=["a", "b"])

    listed = ghl.call("GET", f"/locations/{ghl.loc}/customFields").json()["customFields"]
    assert [f["fieldKey"] for f in listed] == ["contact.patient_id"]
    everything = ghl.call("GET", f"/locations/{ghl.loc}/customFields?model=all").json()["customFields"]
    assert {f["fieldKey"] for f in everything} == {"contact.patient_id", "opportunity.stage"}
    assert next(f for f in everything if f["model"] == "opportunity")["picklistOptions"] == ["a", "b"]

    again = ghl.call("POST", f"/locations/{ghl.loc}/customFields", json={"name": "patient id!", "dataType": "TEXT"})
    assert again.status_code == 400
    assert again.json()["statusCode"] == 400

    bad = ghl.call("POST", f"/locations/{ghl.loc}/customFields", json={"name": "Age", "dataType": "INTEGER"})
    assert bad.status_code == 422
    assert bad.json()["error"] == "Unprocessable Entity"
    assert isinstance(bad.json()["message"], list)
    assert ghl.http.get(f"/_emulator/ghl/locations/{ghl.loc}/custom-fields").json()[0]["name"] == "Patient ID"


def test_custom_field_values_take_field_value_only(ghl: Ghl) -> None:
    text = ghl.field("EMR Patient Id")
    visits = ghl.field("Total Visits", "NUMERICAL")
    last = ghl.field("Last Visit", "DATE")
    r = ghl.upsert(
        email="cf@example.com",
        customFields=[
            {"id": text, "field_value": "P-1"},
            {"key": "total_visits", "field_value": "7"},  # by key; a numeric string is read as a number
            {"id": last, "fieldValue": "2026-01-02"},  # camelCase: not a member of the schema, ignored
            {"id": last, "value": "2026-01-03"},  # neither is `value`
            {"id": "no-such-field", "field_value": "x"},  # unknown fields are dropped
        ],
    )
    assert r.status_code == 200
    contact_id = r.json()["contact"]["id"]
    read = ghl.call("GET", f"/contacts/{contact_id}").json()["contact"]["customFields"]
    assert {v["id"]: v["value"] for v in read} == {text: "P-1", visits: 7}
    assert len(read) == 2

    # A value of the wrong type is dropped; the others stay.
    ghl.upsert(email="cf@example.com", customFields=[{"id": visits, "field_value": "many"}])
    assert {"id": visits, "value": 7} in ghl.call("GET", f"/contacts/{contact_id}").json()["contact"]["customFields"]

    not_an_array = ghl.upsert(email="cf@example.com", customFields={text: "P-2"})
    assert not_an_array.status_code == 422
    assert not_an_array.json() == {
        "statusCode": 422,
        "message": ["customFields must be an array"],
        "error": "Unprocessable Entity",
    }
    updated = ghl.call("PUT", f"/contacts/{contact_id}", json={"customFields": [{"id": text, "field_value": "P-3"}]})
    assert updated.status_code == 200
    assert {"id": text, "value": "P-3"} in updated.json()["contact"]["customFields"]
    assert {"id": visits, "value": 7} in updated.json()["contact"]["customFields"]


# ---------------------------------------------------------------------------------------------- contacts


def test_upsert_matches_email_case_insensitively_and_phone_in_any_format(ghl: Ghl) -> None:
    first = ghl.upsert(firstName="Jo", email="Jo.Citizen@Example.com", phone="0412 345 678")
    assert first.status_code == 200
    assert first.json()["new"] is True
    assert first.json()["traceId"]
    contact = first.json()["contact"]
    assert contact["phone"] == "+61412345678"

    by_email = ghl.upsert(email="jo.citizen@example.com", lastName="Citizen")
    assert by_email.json()["new"] is False
    assert by_email.json()["contact"]["id"] == contact["id"]
    assert by_email.json()["contact"]["firstName"] == "Jo"
    assert by_email.json()["contact"]["lastName"] == "Citizen"

    by_phone = ghl.upsert(phone="+61 412-345-678", city="Melbourne")
    assert by_phone.json()["contact"]["id"] == contact["id"]
    assert len(ghl.contacts()) == 1


def test_upsert_updates_the_first_match_and_drops_the_second_field(ghl: Ghl) -> None:
    """GoHighLevel/highlevel-api-docs#37: a phone-only and an email-only contact, then an upsert with both."""
    by_phone = ghl.upsert(firstName="Phone", phone="+61400000001").json()["contact"]["id"]
    by_email = ghl.upsert(firstName="Email", email="both@example.com").json()["contact"]["id"]
    r = ghl.upsert(email="both@example.com", phone="+61400000001", lastName="Both")
    assert r.status_code == 200
    assert r.json()["new"] is False
    assert r.json()["contact"]["id"] == by_email
    assert "phone" not in r.json()["contact"]  # silently not added
    assert r.json()["contact"]["lastName"] == "Both"
    assert {c["id"] for c in ghl.contacts()} == {by_phone, by_email}

    # With phone first in the location's order, the phone contact wins and the email is dropped.
    assert (
        ghl.http.post(
            f"/_emulator/ghl/locations/{ghl.loc}/duplicate-rules",
            json={"allow_duplicates": False, "order": ["phone", "email"]},
        ).status_code
        == 204
    )
    r = ghl.upsert(email="both@example.com", phone="+61400000001")
    assert r.json()["contact"]["id"] == by_phone
    assert "email" not in r.json()["contact"]


def test_duplicates_allowed_or_refused(ghl: Ghl) -> None:
    existing = ghl.upsert(firstName="Dup", email="dup@example.com").json()["contact"]["id"]
    refused = ghl.call("POST", "/contacts/", json={"locationId": ghl.loc, "email": "DUP@example.com"})
    assert refused.status_code == 400
    assert refused.json() == {
        "statusCode": 400,
        "message": "This location does not allow duplicated contacts.",
        "meta": {"contactId": existing, "contactName": "Dup", "matchingField": "email"},
    }
    # createNewIfDuplicateAllowed only counts where the location allows duplicates.
    assert ghl.upsert(email="dup@example.com", createNewIfDuplicateAllowed=True).json()["new"] is False

    ghl.emulator.set_duplicate_rules(ghl.loc, allow_duplicates=True)
    assert ghl.upsert(email="dup@example.com").json()["contact"]["id"] == existing  # normal upsert still matches
    created = ghl.upsert(email="dup@example.com", createNewIfDuplicateAllowed=True)
    assert created.json()["new"] is True
    assert created.json()["contact"]["id"] != existing
    second = ghl.call("POST", "/contacts/", json={"locationId": ghl.loc, "email": "dup@example.com"})
    assert second.status_code == 201
    assert second.json()["contact"]["email"] == "dup@example.com"
    assert len(ghl.contacts()) == 3


def test_tags_replaced_by_upsert_added_and_removed_by_tag_endpoints(ghl: Ghl) -> None:
    contact_id = ghl.upsert(email="tags@example.com", tags=["Agency Tag", "egw:patient"]).json()["contact"]["id"]
    assert ghl.upsert(email="tags@example.com", tags=["egw:active"]).json()["contact"]["tags"] == ["egw:active"]

    added = ghl.call("POST", f"/contacts/{contact_id}/tags", json={"tags": ["VIP", "egw:active"]})
    assert added.status_code == 201
    assert added.json() == {"tags": ["egw:active", "vip"]}
    removed = ghl.call("DELETE", f"/contacts/{contact_id}/tags", json={"tags": ["EGW:ACTIVE", "not-there"]})
    assert removed.status_code == 200
    assert removed.json() == {"tags": ["vip"]}
    assert ghl.call("GET", f"/contacts/{contact_id}").json()["contact"]["tags"] == ["vip"]
    assert ghl.call("POST", f"/contacts/{contact_id}/tags", json={"tags": "vip"}).status_code == 422


def test_gender_is_dropped_by_upsert_and_refused_by_put(ghl: Ghl) -> None:
    """GoHighLevel/highlevel-api-docs#313."""
    contact_id = ghl.upsert(email="g@example.com", gender="male").json()["contact"]["id"]
    again = ghl.upsert(email="g@example.com", gender="female", firstName="Gee")
    assert again.status_code == 200
    stored = next(c for c in ghl.contacts() if c["id"] == contact_id)
    assert stored["gender"] == "male"
    assert stored["firstName"] == "Gee"

    put = ghl.call("PUT", f"/contacts/{contact_id}", json={"gender": "female"})
    assert put.status_code == 422
    assert put.json() == {
        "statusCode": 422,
        "message": ["property gender should not exist"],
        "error": "Unprocessable Entity",
    }
    # UpdateContactDto has no locationId either.
    assert ghl.call("PUT", f"/contacts/{contact_id}", json={"locationId": ghl.loc}).status_code == 422
    ok = ghl.call("PUT", f"/contacts/{contact_id}", json={"lastName": "Gendered"})
    assert ok.status_code == 200
    assert ok.json()["succeded"] is True
    assert ok.json()["contact"]["lastName"] == "Gendered"


def test_contact_get_delete_and_unknown_members(ghl: Ghl) -> None:
    contact_id = ghl.upsert(email="rd@example.com", dateOfBirth="09/25/1990").json()["contact"]["id"]
    got = ghl.call("GET", f"/contacts/{contact_id}")
    assert got.status_code == 200
    assert got.json()["contact"]["dateOfBirth"] == "1990-09-25"
    unknown = ghl.upsert(email="rd@example.com", additionalEmails=["b@example.com"])
    assert unknown.status_code == 422
    assert unknown.json()["message"] == ["property additionalEmails should not exist"]
    assert ghl.call("DELETE", f"/contacts/{contact_id}").json() == {"succeded": True}
    gone = ghl.call("GET", f"/contacts/{contact_id}")
    assert gone.status_code == 400
    assert gone.json() == {"statusCode": 400, "message": f"Contact with id {contact_id} not found"}


def test_create_answers_422_after_creating_when_the_quirk_is_on(ghl: Ghl) -> None:
    """GoHighLevel/highlevel-api-docs#64: "Create Contact returns 422 yet creates the contact"."""
    assert ghl.http.post("/_emulator/ghl/quirks", json={"create_422_after_apply": 1}).status_code == 204
    r = ghl.call("POST", "/contacts/", json={"locationId": ghl.loc, "email": "q@example.com"})
    assert r.status_code == 422
    assert r.json()["error"] == "Unprocessable Entity"
    assert [c["email"] for c in ghl.contacts()] == ["q@example.com"]
    retry = ghl.call("POST", "/contacts/", json={"locationId": ghl.loc, "email": "q@example.com"})
    assert retry.status_code == 400
    assert retry.json()["meta"]["matchingField"] == "email"

    ghl.emulator.set_quirks(GhlQuirks(upsert_422_after_apply=1, message="phone must be valid"))
    r = ghl.upsert(email="q@example.com", firstName="Applied")
    assert r.status_code == 422
    assert r.json()["message"] == ["phone must be valid"]
    assert ghl.contacts()[0]["firstName"] == "Applied"
    assert ghl.upsert(email="q@example.com").status_code == 200


def test_reject_fault_refuses_without_applying(ghl: Ghl) -> None:
    ghl.emulator.faults.add(Fault(kind=FaultKind.REJECT, method="POST", path_prefix="/contacts", message="nope"))
    r = ghl.upsert(email="r@example.com")
    assert r.status_code == 422
    assert r.json() == {"statusCode": 422, "message": ["nope"], "error": "Unprocessable Entity"}
    assert ghl.contacts() == []


def test_duplicate_search_and_plus_encoding(ghl: Ghl) -> None:
    contact_id = ghl.upsert(email="test+abc@example.com", phone="+61412000111").json()["contact"]["id"]
    by_email = ghl.call(
        "GET", "/contacts/search/duplicate", params={"locationId": ghl.loc, "email": "TEST+abc@example.com"}
    )
    assert by_email.status_code == 200
    assert by_email.json()["contact"]["id"] == contact_id
    # httpx encodes `+` as %2B, as GHL asks.
    by_number = ghl.call("GET", "/contacts/search/duplicate", params={"locationId": ghl.loc, "number": "+61412000111"})
    assert by_number.json()["contact"]["id"] == contact_id
    # A literal `+` decodes to a space: no match.
    raw = ghl.call("GET", f"/contacts/search/duplicate?locationId={ghl.loc}&number=+61412000111")
    assert raw.status_code == 200
    assert raw.json() == {"contact": None}
    raw_email = ghl.call("GET", f"/contacts/search/duplicate?locationId={ghl.loc}&email=test+abc@example.com")
    assert raw_email.json() == {"contact": None}
    assert ghl.call("GET", "/contacts/search/duplicate?email=a@example.com").status_code == 400


# ---------------------------------------------------------------------------------------------- calendars


def test_calendars_list(ghl: Ghl) -> None:
    calendars = ghl.cal("GET", "/calendars/", params={"locationId": ghl.loc}).json()["calendars"]
    assert [(c["id"], c["name"]) for c in calendars] == [(c.id, c.name) for c in ghl.seed.calendars]
    assert calendars[0]["teamMembers"][0]["userId"] == ghl.seed.calendars[0].user_id
    assert ghl.cal("GET", "/calendars/", params={"locationId": ghl.other.location_id}).status_code == 403


def test_appointments_create_validate_update_get_delete(ghl: Ghl) -> None:
    contact_id = _contact(ghl)
    alice = ghl.seed.calendars[0]
    start = _future()
    body = {
        "calendarId": alice.id,
        "locationId": ghl.loc,
        "contactId": contact_id,
        "startTime": start.astimezone(datetime.UTC).isoformat(),
        "endTime": (start + datetime.timedelta(minutes=45)).isoformat(),
        "title": "Initial consult",
        "appointmentStatus": "confirmed",
        "toNotify": False,
    }
    created = ghl.cal("POST", "/calendars/events/appointments", json=body)
    assert created.status_code == 200, created.text
    appt = created.json()
    assert appt["startTime"] == start.isoformat()  # answered in the location's zone
    assert appt["endTime"] == (start + datetime.timedelta(minutes=45)).isoformat()
    assert appt["assignedUserId"] == alice.user_id
    assert appt["calendarId"] == alice.id

    overlapping = {k: v for k, v in body.items() if k != "endTime"}
    overlapping["startTime"] = (start + datetime.timedelta(minutes=30)).isoformat()
    taken = ghl.cal("POST", "/calendars/events/appointments", json=overlapping)
    assert taken.status_code == 400
    assert taken.json()["message"] == "The slot you have selected is no longer available."
    forced = ghl.cal("POST", "/calendars/events/appointments", json={**overlapping, "ignoreFreeSlotValidation": True})
    assert forced.status_code == 200
    assert forced.json()["endTime"] == (start + datetime.timedelta(minutes=60)).isoformat()  # default length 30

    past = {**body, "startTime": "2020-01-01T10:00:00+11:00", "endTime": "2020-01-01T10:30:00+11:00"}
    assert ghl.cal("POST", "/calendars/events/appointments", json=past).status_code == 400
    assert (
        ghl.cal("POST", "/calendars/events/appointments", json={**past, "ignoreFreeSlotValidation": True}).status_code
        == 200
    )
    bad_status = ghl.cal("POST", "/calendars/events/appointments", json={**body, "appointmentStatus": "booked"})
    assert bad_status.status_code == 400
    assert isinstance(bad_status.json()["message"], list)

    moved_to = start + datetime.timedelta(days=1)
    moved = ghl.cal(
        "PUT",
        f"/calendars/events/appointments/{appt['id']}",
        json={"startTime": moved_to.isoformat(), "endTime": (moved_to + datetime.timedelta(hours=1)).isoformat()},
    )
    assert moved.status_code == 200
    assert moved.json()["startTime"] == moved_to.isoformat()

    got = ghl.cal("GET", f"/calendars/events/appointments/{appt['id']}")
    assert got.status_code == 200
    event = got.json()["event"]
    assert event["id"] == appt["id"]
    assert event["contactId"] == contact_id
    assert event["title"] == "Initial consult"

    cancelled = ghl.cal("PUT", f"/calendars/events/appointments/{appt['id']}", json={"appointmentStatus": "cancelled"})
    assert cancelled.json()["appointmentStatus"] == "cancelled"
    stats = ghl.http.get("/_emulator/stats").json()
    assert (stats["appointments"], stats["active_appointments"]) == (3, 2)
    # A cancelled appointment frees its slot.
    rebook = {
        **body,
        "startTime": moved_to.isoformat(),
        "endTime": (moved_to + datetime.timedelta(hours=1)).isoformat(),
    }
    assert ghl.cal("POST", "/calendars/events/appointments", json=rebook).status_code == 200

    window = ghl.cal(
        "GET",
        "/calendars/events",
        params={
            "locationId": ghl.loc,
            "calendarId": alice.id,
            "startTime": str(int(moved_to.timestamp() * 1000)),
            "endTime": str(int((moved_to + datetime.timedelta(hours=2)).timestamp() * 1000)),
        },
    )
    assert window.status_code == 200
    assert sorted(e["appointmentStatus"] for e in window.json()["events"]) == ["cancelled", "confirmed"]
    assert ghl.cal("GET", "/calendars/events", params={"locationId": ghl.loc}).status_code == 400

    deleted = ghl.cal("DELETE", f"/calendars/events/{appt['id']}")
    assert deleted.status_code == 201
    assert deleted.json() == {"succeeded": True}
    assert ghl.cal("GET", f"/calendars/events/appointments/{appt['id']}").status_code == 400


def test_block_slots(ghl: Ghl) -> None:
    alice, ben = ghl.seed.calendars
    start = _future(days=5)
    end = start + datetime.timedelta(hours=1)
    block = {"title": "EMR busy", "calendarId": alice.id, "locationId": ghl.loc}
    times = {"startTime": start.isoformat(), "endTime": end.isoformat()}
    created = ghl.cal("POST", "/calendars/events/block-slots", json={**block, **times})
    assert created.status_code == 201
    slot = created.json()
    assert slot["calendarId"] == alice.id
    assert slot["startTime"] == start.isoformat()
    both = ghl.cal("POST", "/calendars/events/block-slots", json={**block, **times, "assignedUserId": alice.user_id})
    assert both.status_code == 400
    by_user = ghl.cal(
        "POST",
        "/calendars/events/block-slots",
        json={"title": "Ben away", "assignedUserId": ben.user_id, "locationId": ghl.loc, **times},
    )
    assert by_user.status_code == 201

    appointment = {
        "calendarId": alice.id,
        "locationId": ghl.loc,
        "contactId": _contact(ghl),
        "startTime": (start + datetime.timedelta(minutes=15)).isoformat(),
    }
    assert ghl.cal("POST", "/calendars/events/appointments", json=appointment).status_code == 400

    later = end + datetime.timedelta(hours=2)
    edited = ghl.cal(
        "PUT",
        f"/calendars/events/block-slots/{slot['id']}",
        json={"startTime": later.isoformat(), "endTime": (later + datetime.timedelta(hours=1)).isoformat()},
    )
    assert edited.status_code == 201
    assert edited.json()["startTime"] == later.isoformat()
    assert ghl.cal("POST", "/calendars/events/appointments", json=appointment).status_code == 200

    listed = ghl.cal(
        "GET",
        "/calendars/blocked-slots",
        params={
            "locationId": ghl.loc,
            "calendarId": alice.id,
            "startTime": str(int(start.timestamp() * 1000)),
            "endTime": str(int((later + datetime.timedelta(hours=1)).timestamp() * 1000)),
        },
    )
    assert [e["id"] for e in listed.json()["events"]] == [slot["id"]]
    assert ghl.cal("DELETE", f"/calendars/events/{slot['id']}").json() == {"succeeded": True}
    kinds = [e["kind"] for e in ghl.http.get(f"/_emulator/ghl/locations/{ghl.loc}/events").json()]
    assert sorted(kinds) == ["appointment", "block_slot"]


def test_appointment_webhooks_have_the_marketplace_shape(ghl: Ghl) -> None:
    sample = json.loads((SAMPLES / "AppointmentCreate.json").read_text())
    start = _future(days=7)
    created = ghl.cal(
        "POST",
        "/calendars/events/appointments",
        json={
            "calendarId": ghl.seed.calendars[1].id,
            "locationId": ghl.loc,
            "contactId": _contact(ghl),
            "startTime": start.isoformat(),
            "toNotify": False,
        },
    ).json()
    ghl.cal("PUT", f"/calendars/events/appointments/{created['id']}", json={"appointmentStatus": "showed"})
    ghl.cal("DELETE", f"/calendars/events/{created['id']}")

    hooks = ghl.http.get("/_emulator/ghl/webhooks").json()
    assert [h["type"] for h in hooks] == ["AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"]
    for hook in hooks:
        assert hook.keys() == sample.keys()
        assert hook["appointment"].keys() == sample["appointment"].keys()
        assert hook["locationId"] == ghl.loc
        assert hook["appointment"]["id"] == created["id"]
        assert hook["appointment"]["startTime"] == start.isoformat()
    assert hooks[1]["appointment"]["appointmentStatus"] == "showed"
    assert ghl.http.delete("/_emulator/ghl/webhooks").status_code == 204
    assert ghl.http.get("/_emulator/ghl/webhooks").json() == []


def test_seed_over_http() -> None:
    for ghl in _serve(GhlEmulator()):
        r = ghl.http.post(
            "/_emulator/ghl/locations",
            json={
                "name": "Remote",
                "time_zone": "America/Chicago",
                "calendars": [
                    {"name": "Dr A", "user_email": "a@example.com"},
                    {"name": "Dr A2", "user_email": "a@example.com"},
                ],
            },
        )
        assert r.status_code == 201
        seed = r.json()
        assert seed["token"].startswith("pit-")
        assert len(seed["location_id"]) == 20
        assert seed["location_id"].isalnum()
        assert len({c["user_id"] for c in seed["calendars"]}) == 1  # one user per distinct e-mail
        location = ghl.http.get(f"/locations/{seed['location_id']}", headers=ghl.headers(token=seed["token"])).json()[
            "location"
        ]
        assert location["timezone"] == "America/Chicago"
        assert (
            ghl.http.post("/_emulator/ghl/locations", json={"name": "X", "time_zone": "Mars/Base"}).status_code == 400
        )


def test_times_without_offset_are_local_and_answers_keep_the_zone(ghl: Ghl) -> None:
    start = _future(days=9)
    naive = start.replace(tzinfo=None).isoformat()
    r = ghl.cal(
        "POST",
        "/calendars/events/appointments",
        json={
            "calendarId": ghl.seed.calendars[0].id,
            "locationId": ghl.loc,
            "contactId": _contact(ghl),
            "startTime": naive,
        },
    )
    assert r.status_code == 200
    assert r.json()["startTime"] == start.isoformat()
    assert time.time() < start.timestamp()

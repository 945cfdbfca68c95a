"""The Halaxy emulator on its own, driven as any client would: it answers as developers.halaxy.com and the
laravel-halaxy SDK say Halaxy answers (token, limits, paging, errors, $find/$book, the cancel recipe), and every body
it receives and answers is FHIR R4B but for Halaxy's documented deviations (tests/adapters/halaxy/fhir_check.py)."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.emulation import ServerThread, default_seed
from adapters.halaxy.emulator import PARTICIPANT_STATUS_URL, HalaxyEmulator, presets_system
from tests.adapters.halaxy.conftest import HX
from tests.adapters.halaxy.fhir_check import assert_halaxy_exchanges
from tests.fhir_conformance import assert_fhir_exchanges

ZONE = ZoneInfo("Australia/Melbourne")


def _day(days: int, hour: int, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(ZONE).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE)


def _ids(api: httpx.Client) -> tuple[str, str, str, str]:
    """(clinic, practitioner role at it, 30-minute appointment type, seeded patient)."""
    clinics = [e["resource"] for e in api.get("/Organization").json()["entry"]]
    clinic = next(c["id"] for c in clinics if c["id"].startswith("CL-"))
    roles = api.get("/PractitionerRole", params={"organization": clinic}).json()["entry"]
    services = [e["resource"] for e in api.get("/HealthcareService").json()["entry"]]
    service = next(s["id"] for s in services if s["name"] == "Standard Consultation")
    patient = api.get("/Patient", params={"email": "jane.citizen@example.com"}).json()["entry"][0]["resource"]["id"]
    return clinic, roles[0]["resource"]["id"], service, patient


def _book(api: httpx.Client, base: str, role: str, service: str, patient: str, start: dt.datetime) -> httpx.Response:
    """`$book` as reference/createappointment and the SDK's live test write it."""
    end = start + dt.timedelta(minutes=30)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "appt-resource",
                "resource": {
                    "resourceType": "Appointment",
                    "status": "booked",
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "minutesDuration": 30,
                    "participant": [
                        {
                            "actor": {"reference": f"{base}/main/PractitionerRole/{role}", "type": "PractitionerRole"},
                            "status": "accepted",
                        }
                    ],
                },
            },
            {
                "name": "patient-id",
                "valueReference": {"reference": f"{base}/main/Patient/{patient}", "type": "Patient"},
            },
            {
                "name": "healthcare-service-id",
                "valueReference": {
                    "reference": f"{base}/main/HealthcareService/{service}",
                    "type": "HealthcareService",
                },
            },
            {"name": "location-type", "valueCode": "clinic"},
            {"name": "status", "valueCode": "booked"},
        ],
    }
    return api.post("/Appointment/$book", json=body, headers={"Content-Type": "application/fhir+json"})


def _merge_patch(api: httpx.Client, path: str, body: object) -> httpx.Response:
    return api.patch(path, content=msgspec.json.encode(body), headers={"Content-Type": "application/merge-patch+json"})


def test_the_token_is_json_only_says_an_hour_and_lasts_fifteen_minutes(hx: HX) -> None:
    now = [1_000_000.0]
    hx.emulator.clock = lambda: now[0]
    _, credentials = hx.emulator.location_config(hx.base_url)
    creds = msgspec.json.decode(credentials)
    with httpx.Client(base_url=f"{hx.base_url}/main", timeout=10) as client:
        form = client.post("/oauth/token", data={"grant_type": "client_credentials", **creds})
        assert form.status_code == 400  # docs/authentication sends JSON
        wrong = client.post("/oauth/token", json={"grant_type": "client_credentials", **creds, "client_secret": "x"})
        assert wrong.status_code == 401
        answer = client.post("/oauth/token", json={"grant_type": "client_credentials", **creds}).json()
        assert (answer["token_type"], answer["expires_in"]) == ("Bearer", 3600)
        headers = {"Authorization": f"Bearer {answer['access_token']}"}
        assert client.get("/metadata", headers=headers).status_code == 200
        now[0] += 899
        assert client.get("/metadata", headers=headers).status_code == 200
        now[0] += 2
        expired = client.get("/metadata", headers=headers)
        assert expired.status_code == 401  # "Access tokens are valid for 15 minutes", whatever expires_in said
        assert expired.json()["issue"][0]["code"] == "login"


@pytest.mark.parametrize("hx_emulator", [{"rate_limit": 5}], indirect=True)
def test_a_sliding_window_with_its_headers_and_retry_after(hx: HX) -> None:
    now = [2_000_000.0]
    hx.emulator.limiter.clock = lambda: now[0]
    with hx.api() as api:
        seen = []
        for _ in range(5):
            response = api.get("/metadata")
            seen.append(int(response.headers["x-ratelimit-remaining"]))
            assert response.headers["x-ratelimit-limit"] == "5"
            now[0] += 10
        assert seen == [4, 3, 2, 1, 0]
        refused = api.get("/metadata")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "10"  # at 50 s: the first of the five leaves the window at 60 s
        assert refused.json()["issue"][0]["code"] == "throttled"
        now[0] += 10  # a sliding window: one request's worth is free again, not five
        assert api.get("/metadata").status_code == 200
        assert api.get("/metadata").status_code == 429


def test_searches_page_with_next_links_and_count(hx: HX) -> None:
    with hx.api() as api:
        for n in range(7):
            created = api.post(
                "/Patient",
                json={"resourceType": "Patient", "name": [{"family": "Paged", "given": [f"P{n}"]}]},
                headers={"Content-Type": "application/fhir+json"},
            )
            assert created.status_code == 201
        first = api.get("/Patient", params={"family": "Paged", "_count": "3"}).json()
        assert (first["type"], first["total"], len(first["entry"])) == ("searchset", 7, 3)
        nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
        assert nxt.startswith(hx.base_url + "/main/Patient?")
        assert "page=2" in nxt
        ids = [e["resource"]["id"] for e in first["entry"]]
        url: str | None = nxt
        while url:
            page = api.get(url).json()
            ids += [e["resource"]["id"] for e in page.get("entry", [])]
            url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        assert len(set(ids)) == 7
        assert api.get("/Patient", params={"_id": ",".join(ids[:2])}).json()["total"] == 2
    assert_halaxy_exchanges(hx.emulator.exchanges)


def test_errors_are_operation_outcomes(hx: HX) -> None:
    with hx.api() as api:
        missing = api.get("/Appointment/123456789")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/fhir+json")
        assert missing.json()["issue"][0]["code"] == "not-found"
        assert api.get("/Nothing").status_code == 404
        bad_phone = api.post(
            "/Patient",
            json={
                "resourceType": "Patient",
                "name": [{"family": "X"}],
                "telecom": [{"system": "phone", "value": "0412 345 678"}],
            },
            headers={"Content-Type": "application/fhir+json"},
        )
        assert bad_phone.status_code == 422  # "+{country code}{phone number without spaces}" (reference/patient)
        plain_patch = api.patch("/Patient/1", json={"gender": "other"})
        assert plain_patch.status_code == 415  # PATCH is application/merge-patch+json (docs/request-structure)
    with httpx.Client(base_url=f"{hx.base_url}/main", timeout=10) as anonymous:
        assert anonymous.get("/Patient").status_code == 401
    assert_halaxy_exchanges(e for e in hx.emulator.exchanges if e.status != 415)  # that request was not FHIR


def test_a_plus_that_is_not_percent_encoded_arrives_as_a_space(hx: HX) -> None:
    with hx.api() as api:
        created = api.post(
            "/Patient",
            json={
                "resourceType": "Patient",
                "name": [{"family": "Plus", "given": ["Pat"]}],
                "telecom": [{"system": "email", "value": "pat+tag@example.com"}],
                "identifier": [{"value": "ours"}],
            },
            headers={"Content-Type": "application/fhir+json"},
        ).json()
        assert "identifier" not in created  # dropped on create, as the SDK observed
        assert api.get("/Patient", params={"email": "pat+tag@example.com"}).json()["total"] == 1  # sent as %2B
        raw = api.get("/Patient?email=pat+tag@example.com")
        assert raw.json()["total"] == 0  # "pat tag@…": docs/request-structure's warning


def test_find_book_reschedule_and_cancel_as_the_sdk_does(hx: HX) -> None:
    with hx.api() as api:
        _clinic, role, service, patient = _ids(api)
        found = api.get(
            "/Appointment/$find",
            params={
                "start": _day(2, 9).isoformat(),
                "end": _day(2, 12).isoformat(),
                "duration": "30",
                "practitioner-role": role,
            },
        ).json()
        slots = [e["resource"] for e in found["entry"]]
        assert slots[0]["start"] == _day(2, 9).isoformat()  # in the clinic's zone, with its offset
        assert all(s["participant"][0]["actor"]["reference"].endswith(f"PractitionerRole/{role}") for s in slots)
        first = api.get(
            "/Appointment/$find",
            params={
                "start": _day(2, 9).isoformat(),
                "end": _day(9, 9).isoformat(),
                "duration": "30",
                "show": "first-available",
            },
        ).json()
        assert len(first["entry"]) == 1

        booked = _book(api, hx.base_url, role, service, patient, _day(2, 9))
        assert booked.status_code == 201, booked.text
        appointment = booked.json()
        assert "status" not in appointment  # Halaxy's appointments carry no top-level status
        patient_part = next(p for p in appointment["participant"] if "Patient/" in p["actor"]["reference"])
        assert patient_part["modifierExtension"][0]["valueCoding"]["code"] == "booked"
        after = api.get(
            "/Appointment/$find",
            params={
                "start": _day(2, 9).isoformat(),
                "end": _day(2, 10).isoformat(),
                "duration": "30",
                "practitioner-role": role,
            },
        ).json()
        assert _day(2, 9).isoformat() not in [e["resource"]["start"] for e in after.get("entry", [])]

        moved = _merge_patch(
            api,
            f"/Appointment/{appointment['id']}",
            {"start": _day(3, 14).isoformat(), "end": _day(3, 14, 30).isoformat(), "minutesDuration": 30},
        )
        assert moved.status_code == 200
        assert moved.json()["start"] == _day(3, 14).isoformat()

        ignored = _merge_patch(api, f"/Appointment/{appointment['id']}", {"status": "cancelled"})
        assert ignored.status_code == 200  # a field Halaxy's appointments do not have: silently ignored
        part = next(p for p in ignored.json()["participant"] if "Patient/" in p["actor"]["reference"])
        assert part["modifierExtension"][0]["valueCoding"]["code"] == "booked"

        recipe = {
            "participant": [
                {
                    "actor": {"reference": f"{hx.base_url}/main/Patient/{patient}", "type": "Patient"},
                    "modifierExtension": [
                        {
                            "url": PARTICIPANT_STATUS_URL,
                            "valueCoding": {
                                "system": presets_system(f"{hx.base_url}/main"),
                                "code": "cancelled (no charge)",
                                "display": "cancelled (no charge)",
                            },
                        }
                    ],
                }
            ]
        }
        assert _merge_patch(api, f"/Appointment/{appointment['id']}", recipe).status_code == 200
        again = api.get(f"/Appointment/{appointment['id']}").json()
        part = next(p for p in again["participant"] if "Patient/" in p["actor"]["reference"])
        assert part["modifierExtension"][0]["valueCoding"]["code"] == "cancelled"  # as the SDK's live test saw
        assert any("PractitionerRole/" in p["actor"]["reference"] for p in again["participant"])  # the rest stays
    assert hx.emulator.stats().active_appointments == 0
    seen = assert_halaxy_exchanges(hx.emulator.exchanges)
    assert seen["request:Parameters"] == 1
    assert seen["Appointment"] >= 4
    assert seen["Bundle"] >= 5


@pytest.mark.parametrize("hx_emulator", [{"status_field": True, "refuse_overlaps": True}], indirect=True)
def test_the_fhir_pure_variant_passes_unmodified_and_can_refuse_overlaps(hx: HX) -> None:
    with hx.api() as api:
        _, role, service, patient = _ids(api)
        booked = _book(api, hx.base_url, role, service, patient, _day(2, 10))
        assert booked.json()["status"] == "booked"
        taken = _book(api, hx.base_url, role, service, patient, _day(2, 10, 15))
        assert taken.status_code == 422
        assert taken.json()["issue"][0]["code"] == "conflict"
        assert (
            _merge_patch(api, f"/Appointment/{booked.json()['id']}", {"status": "cancelled"}).json()["status"]
            == "cancelled"
        )
        api.get(
            "/Appointment/$find",
            params={"start": _day(2, 9).isoformat(), "end": _day(2, 11).isoformat(), "duration": "30"},
        )
    seen = assert_fhir_exchanges(hx.emulator.exchanges, skip_prefixes=("/main/oauth/token",))
    assert seen["Appointment"] >= 2
    assert seen["OperationOutcome"] == 1


def test_a_webhook_sends_the_documented_notification_with_its_header() -> None:
    """Halaxy's screens create webhooks; a change there is POSTed as the documented history Bundle."""
    received: list[tuple[dict[str, str], bytes]] = []
    got = threading.Event()
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()
            got.set()

        def log_message(self, *args: object) -> None:
            return None

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    emulator = HalaxyEmulator(default_seed())
    server = ServerThread(emulator.app())
    base = server.start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        with httpx.Client(base_url=base, timeout=10) as control:
            created = control.post(
                "/_emulator/webhooks",
                json={"url": url, "event": "patient.update", "authentication_header": "Bearer s3cret"},
            )
            assert created.status_code == 201
            patient = next(iter(emulator.patients))
            assert control.post(f"/_emulator/patients/{patient}", json={"phone": "+61400000001"}).status_code == 204
        assert got.wait(10)
        headers, body = received[0]
        assert headers["authorization"] == "Bearer s3cret"
        payload = msgspec.json.decode(body)
        assert payload["type"] == "history"
        event = payload["entry"][0]["resource"]["notificationEvent"][0]
        assert event["focus"] == {"reference": f"{base}/main/Patient/{patient}", "type": "Patient"}
        from tests.adapters.halaxy.fhir_check import assert_notification

        assert_notification(body)
    finally:
        server.stop()
        receiver.shutdown()

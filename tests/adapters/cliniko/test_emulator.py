"""The Cliniko emulator behaves as Cliniko documents it, over real HTTP."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.cliniko.emulator import DEFAULT_API_KEY, ClinikoEmulator
from adapters.emulation import EmulatorSeed, Fault, FaultKind, SeedPatient, ServerThread, default_seed

UA = "EMR Gateway tests (tests@example.com)"
# Monday 2030-01-07 00:00 UTC = 11:00 in Melbourne (AEDT, UTC+11).
NOW = datetime.datetime(2030, 1, 7, 0, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self, at: datetime.datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


class Served:
    def __init__(self, emulator: ClinikoEmulator, base_url: str) -> None:
        self.emulator = emulator
        self.base_url = base_url
        self.http = httpx.Client(
            base_url=base_url + "/v1",
            auth=(f"{DEFAULT_API_KEY}-au1", ""),
            headers={"User-Agent": UA, "Accept": "application/json"},
        )
        self.business = self.http.get("/businesses").json()["businesses"][0]["id"]
        self.practitioners = [p["id"] for p in self.http.get("/practitioners").json()["practitioners"]]
        types = self.http.get("/appointment_types").json()["appointment_types"]
        self.types = {t["duration_in_minutes"]: t["id"] for t in types}
        self.patient = self.http.get("/patients").json()["patients"][0]["id"]

    def book(self, starts_at: str, practitioner: int = 0, minutes: int = 30) -> httpx.Response:
        return self.http.post(
            "/individual_appointments",
            json={
                "patient_id": self.patient,
                "practitioner_id": self.practitioners[practitioner],
                "appointment_type_id": self.types[minutes],
                "business_id": self.business,
                "starts_at": starts_at,
            },
        )

    def times_url(self, minutes: int = 30) -> str:
        practitioner, kind = self.practitioners[0], self.types[minutes]
        return f"/businesses/{self.business}/practitioners/{practitioner}/appointment_types/{kind}"

    def times(self, start: str, end: str, minutes: int = 30, **params: Any) -> httpx.Response:
        url = (
            f"/businesses/{self.business}/practitioners/{self.practitioners[0]}/appointment_types/{self.types[minutes]}"
        )
        return self.http.get(url + "/available_times", params={"from": start, "to": end, **params})


def serve(emulator: ClinikoEmulator) -> Iterator[Served]:
    server = ServerThread(emulator.app())
    base_url = server.start()
    served = Served(emulator, base_url)
    yield served
    served.http.close()
    server.stop()


@pytest.fixture
def cliniko() -> Iterator[Served]:
    seed = default_seed()
    seed.patients += [
        SeedPatient(first_name=f"P{i}", last_name="Smithers", email=f"p{i}@example.com") for i in range(4)
    ]
    yield from serve(ClinikoEmulator(seed, clock=Clock(NOW), rate_limit_per_minute=10_000))


def test_basic_auth_with_the_key_as_user_name(cliniko: Served) -> None:
    url = cliniko.base_url + "/v1/businesses"
    headers = {"User-Agent": UA}
    assert httpx.get(url, headers=headers).status_code == 401
    assert httpx.get(url, headers=headers, auth=("wrong-au1", "")).status_code == 401
    assert httpx.get(url, headers=headers, auth=(f"{DEFAULT_API_KEY}-au2", "")).status_code == 401
    assert httpx.get(url, headers=headers, auth=(DEFAULT_API_KEY, "")).status_code == 200
    assert httpx.get(url, headers=headers, auth=(f"{DEFAULT_API_KEY}-au1", "")).status_code == 200


def test_a_user_agent_with_a_contact_email_is_required(cliniko: Served) -> None:
    url = cliniko.base_url + "/v1/businesses"
    auth = (DEFAULT_API_KEY, "")
    assert httpx.get(url, auth=auth, headers={"User-Agent": "python-httpx"}).status_code == 403
    assert httpx.get(url, auth=auth, headers={"User-Agent": "Acme (ops@acme.example)"}).status_code == 200


def test_unknown_record_is_json_404_and_unknown_route_is_html_404(cliniko: Served) -> None:
    missing = cliniko.http.get("/individual_appointments/1234567890123456789")
    assert missing.status_code == 404
    assert missing.json() == {"status": "404", "error": "Not Found"}
    for response in (cliniko.http.get("/no_such_thing"), cliniko.http.put("/individual_appointments/1")):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")


def test_pagination_follows_links(cliniko: Served) -> None:
    first = cliniko.http.get("/patients", params={"per_page": 2}).json()
    assert first["total_entries"] == 5
    assert "previous" not in first["links"]
    seen = [p["id"] for p in first["patients"]]
    page = first
    while "next" in page["links"]:
        page = cliniko.http.get(page["links"]["next"]).json()
        seen += [p["id"] for p in page["patients"]]
    assert len(set(seen)) == 5
    assert "previous" in page["links"]
    assert cliniko.http.get("/patients", params={"per_page": 500}).json()["total_entries"] == 5


def test_patient_filters(cliniko: Served) -> None:
    def ids(*filters: str) -> int:
        return int(cliniko.http.get("/patients", params={"q[]": list(filters)}).json()["total_entries"])

    assert ids("email:=p1@example.com") == 1
    assert ids("last_name:~smith") == 4
    assert ids("last_name:~smith", "first_name:=P2") == 1
    assert ids("date_of_birth:=1985-04-12") == 1
    assert ids("updated_at:>2030-01-07T00:00:00Z") == 0
    assert cliniko.http.get("/patients", params={"q[]": "email_address:=x"}).status_code == 400


def test_ids_are_strings_and_related_records_are_links(cliniko: Served) -> None:
    booked = cliniko.book("2030-01-08T00:00:00Z")
    assert booked.status_code == 201
    body = booked.json()
    assert isinstance(body["id"], str)
    assert len(body["id"]) == 19
    assert body["patient"] == {"links": {"self": f"{cliniko.base_url}/v1/patients/{cliniko.patient}"}}
    assert body["ends_at"] == "2030-01-08T00:30:00Z"
    assert booked.headers["location"] == body["links"]["self"]


def test_create_validation_errors(cliniko: Served) -> None:
    unknown = cliniko.http.post(
        "/individual_appointments",
        json={
            "patient_id": "1",
            "practitioner_id": cliniko.practitioners[0],
            "appointment_type_id": cliniko.types[30],
            "business_id": cliniko.business,
            "starts_at": "2030-01-08T00:00:00Z",
        },
    )
    assert unknown.status_code == 422
    assert unknown.json() == {"message": "Validation Failed", "errors": {"patient": "must exist"}}
    missing = cliniko.http.post("/individual_appointments", json={"patient_id": cliniko.patient})
    assert missing.status_code == 422
    assert missing.json()["message"] == "Validation Failed"
    naive = cliniko.book("2030-01-08T10:00:00")
    assert naive.status_code == 422
    assert "starts_at" in naive.json()["errors"]


def test_double_booking_is_allowed_and_reported_as_a_conflict(cliniko: Served) -> None:
    first = cliniko.book("2030-01-08T00:00:00Z").json()["id"]
    second = cliniko.book("2030-01-08T00:15:00Z")
    assert second.status_code == 201
    assert cliniko.http.get(f"/individual_appointments/{first}/conflicts").json() == {"conflicts": {"exist": True}}


def test_reschedule_and_cancel(cliniko: Served) -> None:
    booked = cliniko.book("2030-01-08T00:00:00Z").json()
    moved = cliniko.http.patch(
        f"/individual_appointments/{booked['id']}", json={"starts_at": "2030-01-09T01:00:00Z", "ends_at": None}
    ).json()
    assert (moved["starts_at"], moved["ends_at"]) == ("2030-01-09T01:00:00Z", "2030-01-09T01:30:00Z")
    assert moved["id"] == booked["id"]
    assert moved["updated_at"] > booked["updated_at"]
    # Without ends_at the stored end stays, as documented: an end before the new start is refused.
    late = cliniko.http.patch(f"/individual_appointments/{booked['id']}", json={"starts_at": "2030-01-10T01:00:00Z"})
    assert late.status_code == 422

    cancelled = cliniko.http.patch(
        f"/individual_appointments/{booked['id']}/cancel", json={"cancellation_reason": 40, "cancellation_note": "away"}
    )
    assert cancelled.status_code == 204
    assert cancelled.content == b""
    # Cancelled records are hidden unless the request opts them in with a cancelled_at filter (evidence 2026-11 §1.1).
    hidden = cliniko.http.get(f"/individual_appointments/{booked['id']}")
    assert hidden.status_code == 404
    listed = cliniko.http.get("/individual_appointments", params=[("q[]", f"id:={booked['id']}")]).json()
    assert listed["individual_appointments"] == []
    opted_in = cliniko.http.get(
        "/individual_appointments", params=[("q[]", f"id:={booked['id']}"), ("q[]", "cancelled_at:*")]
    ).json()
    assert [a["id"] for a in opted_in["individual_appointments"]] == [booked["id"]]
    after = cliniko.http.get(f"/individual_appointments/{booked['id']}", params={"q[]": "cancelled_at:*"}).json()
    assert after["cancellation_reason"] == 40
    assert after["cancellation_reason_description"] == "Away"
    assert after["cancellation_note"] == "away"
    assert after["cancelled_at"] is not None
    bad = cliniko.http.patch(f"/individual_appointments/{booked['id']}/cancel", json={"cancellation_reason": 0})
    assert bad.status_code == 422


def test_appointment_filters(cliniko: Served) -> None:
    keep = cliniko.book("2030-01-08T00:00:00Z").json()["id"]
    gone = cliniko.book("2030-01-09T00:00:00Z", practitioner=1).json()["id"]
    cliniko.http.patch(f"/individual_appointments/{gone}/cancel", json={"cancellation_reason": 50})

    def found(*filters: str) -> list[str]:
        page = cliniko.http.get("/individual_appointments", params={"q[]": list(filters)}).json()
        return [a["id"] for a in page["individual_appointments"]]

    # Without a cancelled_at filter the cancelled one is hidden; `cancelled_at:*` opts it back in.
    assert found(f"patient_id:={cliniko.patient}") == [keep]
    assert found(f"patient_id:={cliniko.patient}", "cancelled_at:*") == [keep, gone]
    assert found(f"practitioner_id:={cliniko.practitioners[1]}") == []
    assert found(f"practitioner_id:={cliniko.practitioners[1]}", "cancelled_at:*") == [gone]
    assert found(f"business_id:={cliniko.business}", "starts_at:>=2030-01-08T12:00:00Z", "cancelled_at:*") == [gone]
    assert found("starts_at:<2030-01-08T12:00:00Z") == [keep]
    assert found("cancelled_at:?") == [gone]
    assert found("cancelled_at:!?") == [keep]
    assert found("cancelled_at:*", "archived_at:*") == [keep, gone]
    assert found("updated_at:>2029-12-31T00:00:00Z", "cancelled_at:*") == [keep, gone]
    listed = cliniko.http.get(
        "/individual_appointments", params={"sort": "starts_at:desc", "q[]": "cancelled_at:*"}
    ).json()
    assert [a["id"] for a in listed["individual_appointments"]] == [gone, keep]


def test_available_times_window_rules(cliniko: Served) -> None:
    assert cliniko.times("2030-01-08", "2030-01-16").status_code == 400  # 8 days
    assert cliniko.times("2030-01-06", "2030-01-08").status_code == 400  # yesterday in Melbourne
    assert cliniko.times("2030-01-09", "2030-01-08").status_code == 400
    assert cliniko.times("2030-01-08", "2030-01-15").status_code == 200  # 7 days
    assert "Invalid time frame definition" in cliniko.times("x", "y").text


def test_available_times_are_open_hours_in_the_business_time_zone(cliniko: Served) -> None:
    def starts(minutes: int) -> list[str]:
        page = cliniko.times("2030-01-08", "2030-01-08", minutes=minutes, per_page=100).json()
        return [t["appointment_start"] for t in page["available_times"]]

    thirty = starts(30)
    # 09:00-17:00 AEDT = 22:00-06:00 UTC; 30-minute visits on a 15-minute step: 09:00 ... 16:30.
    assert thirty[0] == "2030-01-07T22:00:00Z"
    assert thirty[-1] == "2030-01-08T05:30:00Z"
    assert len(thirty) == 31
    assert starts(60)[-1] == "2030-01-08T05:00:00Z"
    cliniko.book("2030-01-07T23:00:00Z")  # 10:00-10:30 local
    taken = set(thirty) - set(starts(30))
    assert taken == {"2030-01-07T22:45:00Z", "2030-01-07T23:00:00Z", "2030-01-07T23:15:00Z"}
    today = cliniko.times("2030-01-07", "2030-01-07").json()
    assert today["available_times"][0]["appointment_start"] == "2030-01-07T00:00:00Z"  # nothing before now
    paged = cliniko.times("2030-01-08", "2030-01-08", per_page=10).json()
    assert paged["total_entries"] == 28
    assert len(paged["available_times"]) == 10
    assert "next" in paged["links"]
    url = (
        f"/businesses/{cliniko.business}/practitioners/{cliniko.practitioners[0]}/appointment_types/{cliniko.types[30]}"
    )
    first = cliniko.http.get(url + "/next_available_time", params={"from": "2030-01-08", "to": "2030-01-09"}).json()
    assert first["appointment_start"] == "2030-01-07T22:00:00Z"


def test_rate_limit_answers_429_with_reset_time() -> None:
    clock = Clock(NOW)
    for served in serve(ClinikoEmulator(default_seed(), clock=clock, rate_limit_per_minute=6)):
        # Served() itself made 4 requests.
        assert served.http.get("/users").status_code == 200
        assert served.http.get("/users").status_code == 200
        limited = served.http.get("/users")
        assert limited.status_code == 429
        assert limited.headers["x-ratelimit-reset"] == str(int(NOW.timestamp()) + 60)
        assert "retry-after" not in limited.headers
        clock.now += 60
        assert served.http.get("/users").status_code == 200


def test_faults(cliniko: Served) -> None:
    control = cliniko.base_url + "/_emulator/faults"
    before = cliniko.emulator.stats().appointments

    httpx.post(control, json={"kind": "error_5xx", "method": "POST", "status": 502})
    assert cliniko.book("2030-01-08T00:00:00Z").status_code == 502
    assert cliniko.emulator.stats().appointments == before

    httpx.post(control, json={"kind": "rate_limit", "retry_after": 7})
    limited = cliniko.http.get("/users")
    assert limited.status_code == 429
    assert int(limited.headers["x-ratelimit-reset"]) == int(NOW.timestamp()) + 7

    httpx.post(control, json={"kind": "drop", "path_prefix": "/v1/users"})
    with pytest.raises(httpx.RemoteProtocolError):
        cliniko.http.get("/users")

    httpx.post(control, json={"kind": "timeout_before_apply", "method": "POST", "delay_ms": 10})
    assert cliniko.book("2030-01-08T00:00:00Z").status_code == 503
    assert cliniko.emulator.stats().appointments == before

    cliniko.emulator.faults.add(Fault(kind=FaultKind.TIMEOUT_AFTER_APPLY, method="POST", delay_ms=1500))
    with pytest.raises(httpx.ReadTimeout):
        cliniko.http.post(
            "/individual_appointments",
            timeout=0.3,
            json={
                "patient_id": cliniko.patient,
                "practitioner_id": cliniko.practitioners[0],
                "appointment_type_id": cliniko.types[30],
                "business_id": cliniko.business,
                "starts_at": "2030-01-08T03:00:00Z",
            },
        )
    listed = cliniko.http.get("/individual_appointments", params={"q[]": "starts_at:=2030-01-08T03:00:00Z"}).json()
    assert listed["total_entries"] == 1  # the write happened although the client never heard back

    httpx.post(control, json={"kind": "error_5xx", "count": 5})
    assert httpx.delete(control).status_code == 204
    assert cliniko.http.get("/users").status_code == 200
    stats = httpx.get(cliniko.base_url + "/_emulator/stats").json()
    assert stats["appointments"] == before + 1
    assert stats["requests"] > 0


def test_location_config_points_at_the_emulator() -> None:
    seed = EmulatorSeed(businesses=[], practitioners=[], services=[], patients=[])
    seed.businesses = default_seed().businesses * 2
    emulator = ClinikoEmulator(seed)
    settings, credentials = emulator.location_config("http://127.0.0.1:9", business_index=1)
    assert json.loads(settings) == {"business_id": emulator.business_ids()[1], "base_url": "http://127.0.0.1:9/v1"}
    assert json.loads(credentials) == {"api_key": f"{DEFAULT_API_KEY}-au1", "user_agent_email": "demo@example.com"}
    assert json.loads(emulator.bad_credentials("http://127.0.0.1:9"))["api_key"] != json.loads(credentials)["api_key"]

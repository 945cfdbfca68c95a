"""The normalized contract end to end: a REST client, the gateway, the Cliniko emulator, each storage backend."""

from __future__ import annotations

import concurrent.futures
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.emulation import Fault, FaultKind
from gateway.storage.store import Store
from tests.gateway.conftest import Harness, run_sync

TZ = "Australia/Melbourne"


def _soon() -> date:
    """A weekday well inside the booking horizon (at most two years ahead)."""
    return date.today() + timedelta(days=60)


def _spring_forward() -> date:
    """Melbourne's next first Sunday of October (clocks go 02:00 -> 03:00), inside the horizon."""
    year = date.today().year + (1 if date.today() >= date(date.today().year, 10, 1) else 0)
    day = date(year, 10, 1)
    return day + timedelta(days=(6 - day.weekday()) % 7)


SOON = _soon().isoformat()
SPRING_FORWARD = _spring_forward().isoformat()


def day_ahead(days: int = 2) -> date:
    return datetime.now(ZoneInfo(TZ)).date() + timedelta(days=days)


def booking(start: object, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "practitioner": {"email": "alice.nguyen@example.com"},
        "service": {"name": "Standard Consultation"},
        "patient": {"email": "jane.citizen@example.com", "first_name": "Jane", "last_name": "Citizen"},
        "start": start,
        "time_zone": TZ,
    }
    body.update(over)
    return body


def emr(h: Harness, path: str, site: int = 0) -> Any:
    """Read the emulator's own API, as Cliniko's web UI would show the clinic (cancelled records included)."""
    creds = msgspec.json.decode(h.emulator.location_config(h.emulator_url, site)[1])
    r = httpx.get(
        f"{h.emulator_url}/v1{path}",
        params={"q[]": "cancelled_at:*"},
        auth=(creds["api_key"], ""),
        headers={"User-Agent": "tests (tests@example.com)", "Accept": "application/json"},
    )
    r.raise_for_status()
    return r.json()


def active_appointments(h: Harness) -> int:
    return h.emulator.stats().active_appointments


def test_book_get_reschedule_cancel_at_the_right_instant(harness: Harness) -> None:
    d = day_ahead()
    with harness.client() as c:
        r = c.post("/v1/appointments", json=booking(f"{d}T10:00:00"))
        assert r.status_code == 201, r.text
        appt = r.json()
        expected = datetime(d.year, d.month, d.day, 10, tzinfo=ZoneInfo(TZ)).astimezone(UTC)
        assert datetime.fromisoformat(appt["start"]) == expected
        assert appt["status"] == "booked"
        assert appt["time_zone"] == TZ
        # The clinic sees it at that instant, 30 minutes long (the service's duration).
        raw = emr(harness, f"/individual_appointments/{appt['id']}")
        assert datetime.fromisoformat(raw["starts_at"].replace("Z", "+00:00")) == expected
        assert datetime.fromisoformat(raw["ends_at"].replace("Z", "+00:00")) == expected + timedelta(minutes=30)

        got = c.get(f"/v1/appointments/{appt['id']}").json()
        assert got["id"] == appt["id"]

        r = c.patch(f"/v1/appointments/{appt['id']}", json={"start": f"{d}T14:30:00+11:00"})
        assert r.status_code == 200, r.text
        moved = datetime.fromisoformat(r.json()["start"])
        assert moved == datetime.fromisoformat(f"{d}T14:30:00+11:00")
        raw = emr(harness, f"/individual_appointments/{appt['id']}")
        assert datetime.fromisoformat(raw["starts_at"].replace("Z", "+00:00")) == moved

        r = c.post(f"/v1/appointments/{appt['id']}/cancel", json={"reason": "sick", "note": "flu"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        raw = emr(harness, f"/individual_appointments/{appt['id']}")
        assert raw["cancelled_at"] is not None
        assert raw["cancellation_reason"] == 30

        listed = c.get("/v1/appointments", params={"patient_id": appt["patient_id"]}).json()["items"]
        assert [a["id"] for a in listed] == [appt["id"]]


def test_idempotency_key_replays_and_never_books_twice(harness: Harness) -> None:
    d = day_ahead(3)
    with harness.client(**{"Idempotency-Key": "abc-1"}) as c:
        first = c.post("/v1/appointments", json=booking(f"{d}T09:00:00"))
        assert first.status_code == 201, first.text
        again = c.post("/v1/appointments", content=msgspec.json.encode(booking(f"{d}T09:00:00"))[::1])
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers.get("idempotent-replayed") == "true"
        other = c.post("/v1/appointments", json=booking(f"{d}T11:00:00"))
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_mismatch"
    assert active_appointments(harness) == 1


def test_concurrent_retries_with_one_key_book_once(harness: Harness) -> None:
    d = day_ahead(4)
    harness.emulator.faults.add(Fault(kind=FaultKind.LATENCY, method="POST", delay_ms=400))
    body = booking(f"{d}T13:00:00")

    def send(_: int) -> httpx.Response:
        with harness.client(**{"Idempotency-Key": "race-1"}) as c:
            return c.post("/v1/appointments", json=body)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, range(4)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) >= 1
    assert set(codes) <= {201, 409}
    for r in results:
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_in_flight"
    assert active_appointments(harness) == 1


def test_stored_rejection_replays(harness: Harness) -> None:
    d = day_ahead(5)
    with harness.client() as c:
        assert c.post("/v1/appointments", json=booking(f"{d}T10:00:00")).status_code == 201
    with harness.client(**{"Idempotency-Key": "taken-1"}) as c:
        body = booking(f"{d}T10:00:00", practitioner={"name": "Alice Nguyen"})
        r1 = c.post("/v1/appointments", json=body)
        assert r1.status_code == 409
        assert r1.json()["code"] == "slot_unavailable"
        assert r1.headers["content-type"].startswith("application/problem+json")
        r2 = c.post("/v1/appointments", json=body)
        assert r2.status_code == 409
        assert r2.headers.get("idempotent-replayed") == "true"
    assert active_appointments(harness) == 1


def test_a_key_reaches_only_its_own_location(harness: Harness) -> None:
    d = day_ahead(2)
    with harness.client(0) as north:
        appt = north.post("/v1/appointments", json=booking(f"{d}T15:00:00")).json()
    with harness.client(1) as south:  # another business of the same Cliniko account
        for r in (
            south.get(f"/v1/appointments/{appt['id']}"),
            south.patch(f"/v1/appointments/{appt['id']}", json={"notes": "x"}),
            south.post(f"/v1/appointments/{appt['id']}/cancel", json={}),
        ):
            assert r.status_code == 404, r.text
            assert r.json()["code"] == "not_found"
    with harness.client(0) as north:
        assert north.get(f"/v1/appointments/{appt['id']}").json()["status"] == "booked"


def test_unauthenticated_and_revoked_keys_are_refused(harness: Harness) -> None:
    with harness.anonymous() as c:
        r = c.get("/v1/practitioners")
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "unauthorized"
        assert c.get("/v1/practitioners", headers={"x-api-key": "egw_live_nope"}).status_code == 401


def test_a_key_revoked_elsewhere_stops_working_within_five_seconds(harness: Harness) -> None:
    """Keys are authenticated from a per-process cache (no database read per request); a revocation made by another
    process (the CLI, another replica) is seen within EGW_AUTH_CACHE_SECONDS (5)."""
    key = harness.sites[1].api_key

    async def revoke() -> int:
        store = await Store.open(harness.database_url, harness.keyring)
        try:
            return await store.revoke_key(key[:17])
        finally:
            await store.close()

    with harness.client(1) as c:
        assert c.get("/v1/practitioners").status_code == 200  # now cached in the gateway
        assert run_sync(revoke()) == 1
        revoked_at = time.monotonic()
        while (status := c.get("/v1/practitioners").status_code) == 200:
            assert time.monotonic() - revoked_at < 5.5, "a revoked key still works after 5 s"
            time.sleep(0.2)
        assert status == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (booking(f"{SOON}T10:00:00", practitioner={"email": "nobody@example.com"}), 422, "unknown_practitioner"),
        (booking(f"{SOON}T10:00:00", service={"name": "Massage"}), 422, "unknown_service"),
        (booking(f"{SOON}T10:00:00", practitioner={}), 422, "validation_failed"),
        (booking("not a time"), 422, "validation_failed"),
        (booking(f"{SOON}T10:00:00", surprise=1), 422, "validation_failed"),
        (booking(f"{SOON}T10:00:00", time_zone="Mars/Olympus"), 422, "validation_failed"),
        # 02:30 on the first Sunday of October does not exist in Melbourne (clocks go 02:00 -> 03:00).
        (booking(f"{SPRING_FORWARD}T02:30:00"), 422, "validation_failed"),
        # A number is never a time (it would be read as seconds since 1970); years far out of range are refused.
        (booking(123), 422, "validation_failed"),
        (booking("0001-01-01T00:00:00"), 422, "validation_failed"),
        (booking("9999-12-31T23:59:59"), 422, "validation_failed"),
        (booking("2020-01-01T10:00:00"), 422, "validation_failed"),  # years in the past
        (booking(f"{SOON}T10:00:00", time_zone="localtime"), 422, "validation_failed"),  # the server's own zone
        (booking(f"{SOON}T10:00:00", end=f"{SOON}T10:00:01"), 422, "validation_failed"),  # one second long
        (booking(f"{SOON}T10:00:00", end=f"{int(SOON[:4]) + 10}{SOON[4:]}T10:00:00"), 422, "validation_failed"),
    ],
)
def test_bad_bookings_get_clear_problems(harness: Harness, body: dict[str, Any], status: int, code: str) -> None:
    with harness.client() as c:
        r = c.post("/v1/appointments", json=body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert r.headers["content-type"].startswith("application/problem+json")
    assert active_appointments(harness) == 0


def test_malformed_json_is_bad_request(harness: Harness) -> None:
    with harness.client() as c:
        r = c.post("/v1/appointments", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["code"] == "bad_request"


def test_emr_failures_map_to_stable_codes(harness: Harness) -> None:
    with harness.client() as c:
        harness.emulator.faults.add(
            Fault(kind=FaultKind.RATE_LIMIT, path_prefix="/v1/individual_appointments", retry_after=7, count=1)
        )
        r = c.get("/v1/appointments/1234567890123456789")
        assert r.status_code == 429
        assert r.json()["code"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 8
        harness.emulator.faults.add(Fault(kind=FaultKind.ERROR_5XX, status=503, count=10))
        r = c.get("/v1/appointments/1234567890123456789")
        assert r.status_code == 503
        assert r.json()["code"] == "emr_unavailable"
        harness.emulator.faults.clear()
        r = c.get("/v1/appointments/1234567890123456789")
        assert r.status_code == 404
        assert r.json()["code"] == "not_found"


def test_availability_and_next_slot(harness: Harness) -> None:
    d = day_ahead(2)
    params = {
        "practitioner_email": "alice.nguyen@example.com",
        "service_name": "Standard Consultation",
        "from": d.isoformat(),
        "to": d.isoformat(),
    }
    with harness.client() as c:
        r = c.get("/v1/availability", params=params)
        assert r.status_code == 200, r.text
        slots = r.json()["items"]
        assert slots, "an open day has slots"
        first = datetime.fromisoformat(slots[0]["start"]).astimezone(ZoneInfo(TZ))
        assert (first.hour, first.minute) == (9, 0)
        assert datetime.fromisoformat(slots[0]["end"]) - datetime.fromisoformat(slots[0]["start"]) == timedelta(
            minutes=30
        )
        # Book the first slot: it disappears.
        c.post("/v1/appointments", json=booking(slots[0]["start"]))
        after = c.get("/v1/availability", params=params).json()["items"]
        assert slots[0]["start"] not in [s["start"] for s in after]
        nxt = c.get("/v1/availability/next", params={**params, "to": (d + timedelta(days=3)).isoformat()})
        assert nxt.status_code == 200, nxt.text
        assert nxt.json()["slot"] is not None


def test_patient_lookup_or_create(harness: Harness) -> None:
    with harness.client() as c:
        existing = c.post(
            "/v1/patients", json={"first_name": "Jane", "last_name": "Citizen", "email": "jane.citizen@example.com"}
        )
        assert existing.status_code == 200, existing.text
        assert existing.json()["created"] is False
        new = {"first_name": "Omar", "last_name": "Haddad", "email": "omar@example.com", "phone": "0412 000 111"}
        created = c.post("/v1/patients", json=new)
        assert created.status_code == 201, created.text
        assert created.json()["patient"]["phones"] == ["+61412000111"]
        again = c.post("/v1/patients", json=new)
        assert again.status_code == 200
        assert again.json()["patient"]["id"] == created.json()["patient"]["id"]
        found = c.get("/v1/patients", params={"email": "omar@example.com"}).json()["items"]
        assert [p["id"] for p in found] == [created.json()["patient"]["id"]]
        by_name = c.get("/v1/patients", params={"name": "Omar Haddad"}).json()["items"]
        assert [p["id"] for p in by_name] == [created.json()["patient"]["id"]]


def test_catalog(harness: Harness) -> None:
    with harness.client() as c:
        practitioners = c.get("/v1/practitioners").json()["items"]
        assert {p["email"] for p in practitioners} == {"alice.nguyen@example.com", "ben.carter@example.com"}
        services = c.get("/v1/services").json()["items"]
        assert {s["name"]: s["duration_minutes"] for s in services} == {
            "Standard Consultation": 30,
            "Initial Assessment": 60,
        }
        locations = c.get("/v1/locations").json()["items"]
        assert [loc["time_zone"] for loc in locations] == [TZ]


def test_health_ready_metrics(harness: Harness) -> None:
    with harness.anonymous() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        c.get("/v1/practitioners")
        text = c.get("/metrics").text
        assert 'egw_http_requests_total{method="GET",route="/v1/practitioners",status="401"}' in text


@pytest.mark.gateway_config(rate_limit_per_minute=3)
def test_per_key_rate_limit_answers_429_with_retry_after(harness: Harness) -> None:
    with harness.client(0) as c:
        codes = [c.get("/v1/services").status_code for _ in range(4)]
        assert codes[:3] == [200, 200, 200]
        r = c.get("/v1/services")
        assert r.status_code == 429
        assert r.json()["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1
    with harness.client(1) as other:  # another key has its own budget
        assert other.get("/v1/services").status_code == 200


@pytest.mark.gateway_config(max_body_bytes=2048)
def test_oversized_body_is_refused_before_it_reaches_the_emr(harness: Harness) -> None:
    with harness.client() as c:
        r = c.post("/v1/appointments", json=booking(f"{SOON}T10:00:00", notes="x" * 4000))
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert active_appointments(harness) == 0


def test_location_health_shows_a_refused_emr_credential(harness: Harness) -> None:
    with harness.client() as c:
        ok = c.get("/v1/health")
        assert ok.status_code == 200, ok.text
        assert ok.json()["status"] == "ok"
        assert ok.json()["emr"] == "cliniko"
    # The clinic's Cliniko key is revoked: the operator sees it on the health route, with the reason.
    harness.emulator.api_key = "revoked-" + harness.emulator.api_key
    with harness.client() as c:
        bad = c.get("/v1/health", params={"fresh": "true"}).json()
    assert bad["status"] == "emr_auth_failed"
    assert bad["detail"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/availability", {"practitioner_email": "alice.nguyen@example.com", "service_name": "Standard Consultation",
                              "from": "0001-01-01", "to": "0001-01-02"}),
        ("/v1/availability", {"practitioner_email": "alice.nguyen@example.com", "service_name": "Standard Consultation",
                              "from": "9999-12-30", "to": "9999-12-31"}),
        ("/v1/appointments", {"patient_id": "1", "from": "0001-01-01T00:00:00Z"}),
        ("/v1/appointments", {"patient_id": "1", "to": "9999-12-31T23:59:59"}),
        ("/voice/bestSlot", {"treatment_name": "Standard Consultation", "start_date": "0001-01-01"}),
        ("/voice/bestSlot", {"treatment_name": "Standard Consultation", "start_date": "9999-12-31"}),
    ],
)  # fmt: skip
def test_years_out_of_range_are_422_not_500(harness: Harness, path: str, params: dict[str, str]) -> None:
    with harness.client() as c:
        r = c.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed"


def test_a_refused_booking_creates_no_patient(harness: Harness) -> None:
    """The slot is taken: a booking for a new patient is refused before the patient is created in the EMR."""
    start = f"{day_ahead()}T15:00:00"
    with harness.client() as c:
        assert c.post("/v1/appointments", json=booking(start)).status_code == 201
        patients = len(harness.emulator.patients)  # type: ignore[attr-defined]
        newcomer = {"email": "new.person@example.com", "first_name": "New", "last_name": "Person"}
        r = c.post("/v1/appointments", json=booking(start, patient=newcomer))
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "slot_unavailable"
        assert len(harness.emulator.patients) == patients  # type: ignore[attr-defined]


def test_an_emr_refusal_naming_the_patient_reaches_neither_the_caller_nor_the_log(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    quoting = "Jane Citizen (jane.citizen@example.com, +61 412 345 678) cannot be booked"
    harness.emulator.faults.add(
        Fault(kind=FaultKind.REJECT, method="POST", path_prefix="/v1/individual_appointments", message=quoting)
    )
    caplog.set_level("DEBUG")
    with harness.client() as c:
        r = c.post("/v1/appointments", json=booking(f"{day_ahead()}T16:00:00"))
    assert r.status_code in (422, 502), r.text
    for datum in ("Jane", "Citizen", "jane.citizen", "412 345"):
        assert datum not in r.text
        assert datum not in caplog.text


def test_a_patient_given_by_id_is_not_read_first_and_an_unknown_one_is_refused(harness: Harness) -> None:
    start = f"{day_ahead()}T13:00:00"
    with harness.client() as c:
        r = c.post("/v1/appointments", json=booking(start, patient={"id": "1234567890123456789"}))
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "validation_failed"
    assert active_appointments(harness) == 0
    assert not any(e.path.startswith("/v1/patients/") for e in harness.emulator.exchanges)  # type: ignore[attr-defined]

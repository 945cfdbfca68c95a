"""The FHIR client Halaxy and the generic adapter share: tokens, paging, errors. The server here is an httpx
transport answering as a FHIR server would (the adapters' own suites run it against the emulators over HTTP)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import msgspec
import pytest

from adapters.errors import AuthFailed, NotFound, RateLimited, Unavailable
from adapters.fhir import wire
from adapters.fhir.client import ClientCredentials, Conflict, FhirClient, StaticBearer
from adapters.http import RetryPolicy
from adapters.reconcile import AmbiguousWrite
from adapters.tokens import TokenCache

BASE = "https://fhir.example/r4"
FAST = RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.002, jitter=0.001)
PATIENT_NAME = "Zelda Quokka"

Handler = Callable[[httpx.Request], httpx.Response]


def fhir(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"content-type": "application/fhir+json", **headers}
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def client(handler: Handler, auth: ClientCredentials | StaticBearer, tokens: TokenCache | None = None) -> FhirClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return FhirClient(
        http, emr="Test FHIR", base_url=BASE, auth=auth, user_agent="EMR Gateway (ops@example.com)", retry=FAST,
        tokens=tokens or TokenCache(),
    )  # fmt: skip


def credentials(body: str = "form", cap: int | None = None) -> ClientCredentials:
    return ClientCredentials(
        token_url=f"{BASE}/oauth/token", client_id="cid", client_secret="s3cret", body=body,  # type: ignore[arg-type]
        lifetime_cap=cap,
    )  # fmt: skip


async def test_token_is_reminted_before_the_shorter_lifetime_and_json_body_is_sent() -> None:
    clock = Clock()
    mints: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/token"):
            mints.append(request)
            return httpx.Response(
                200, json={"token_type": "Bearer", "expires_in": 3600, "access_token": f"t{len(mints)}"}
            )
        assert request.headers["authorization"] == f"Bearer t{len(mints)}"
        assert request.headers["user-agent"] == "EMR Gateway (ops@example.com)"
        assert request.headers["accept"] == "application/fhir+json"
        return fhir(200, {"resourceType": "Patient", "id": "1"})

    c = client(handler, credentials(body="json", cap=900), TokenCache(clock=clock))
    await c.read(wire.Patient, "1")
    clock.now = 800.0  # inside 900 - 60
    await c.read(wire.Patient, "1")
    assert len(mints) == 1
    clock.now = 841.0  # past the 15-minute cap less the margin, long before expires_in
    await c.read(wire.Patient, "1")
    assert len(mints) == 2
    assert json.loads(mints[0].content) == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": "s3cret",
    }
    assert mints[0].headers["content-type"] == "application/json"


async def test_form_body_by_default_and_refused_secret_is_auth_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        return httpx.Response(401, json={"error": "invalid_client"})

    with pytest.raises(AuthFailed) as caught:
        await client(handler, credentials()).read(wire.Patient, "1")
    assert "s3cret" not in str(caught.value.emr_message)


async def test_a_401_remints_once_but_a_static_token_is_not_retried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/oauth/token"):
            return httpx.Response(200, json={"access_token": f"t{len(calls)}", "expires_in": 3600})
        if request.headers["authorization"] == "Bearer t1":
            return fhir(401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]})
        return fhir(200, {"resourceType": "Patient", "id": "1"})

    patient = await client(handler, credentials()).read(wire.Patient, "1")
    assert patient.id == "1"
    assert [c.rsplit("/", 1)[-1] for c in calls] == ["token", "1", "token", "1"]

    static = client(lambda r: fhir(401, {"resourceType": "OperationOutcome", "issue": []}), StaticBearer(token="x"))
    with pytest.raises(AuthFailed):
        await static.read(wire.Patient, "1")


async def test_a_token_minted_for_one_scope_is_never_sent_for_another() -> None:
    """Two locations with the same client but different scopes share the token cache: each gets its own token."""
    minted: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/token"):
            scope = dict(httpx.QueryParams(request.content.decode()))["scope"]
            minted[scope] = f"token-for-{scope.split()[0]}"
            return httpx.Response(200, json={"access_token": minted[scope], "expires_in": 3600})
        wanted = "token-for-system/Appointment.rs" if "Appointment" in request.url.path else "token-for-system/*.cruds"
        assert request.headers["authorization"] == f"Bearer {wanted}"
        if "Patient" in request.url.path:
            return fhir(200, {"resourceType": "Patient", "id": "1"})
        return fhir(200, {"resourceType": "Appointment", "id": "1", "status": "booked"})

    shared = TokenCache()
    narrow = msgspec.structs.replace(credentials(), scope="system/Appointment.rs")
    broad = msgspec.structs.replace(credentials(), scope="system/*.cruds")
    await client(handler, narrow, shared).read(wire.Appointment, "1")
    await client(handler, broad, shared).read(wire.Patient, "1")
    assert sorted(minted) == ["system/*.cruds", "system/Appointment.rs"]


def _page(n: int, next_url: str | None) -> dict[str, object]:
    body: dict[str, object] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": str(n)}, "search": {"mode": "match"}},
            {"resource": {"resourceType": "Organization", "id": "org"}, "search": {"mode": "include"}},
        ],
    }
    if next_url:
        body["link"] = [{"relation": "self", "url": "ignored"}, {"relation": "next", "url": next_url}]
    return body


async def test_search_follows_next_links_and_keeps_only_the_asked_type() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        return fhir(200, _page(page, f"{BASE}/Patient?page={page + 1}" if page < 3 else None))

    found = await client(handler, StaticBearer(token="x")).search(wire.Patient, [("_count", "1")])
    assert [p.id for p in found] == ["1", "2", "3"]


async def test_a_next_link_to_another_host_is_not_followed_with_the_token() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return fhir(200, _page(1, "https://attacker.example/r4/Patient?page=2"))

    with pytest.raises(Unavailable, match="another host"):
        await client(handler, StaticBearer(token="x")).search(wire.Patient)
    assert hosts == ["fhir.example"]


@pytest.mark.parametrize(
    ("status", "error"), [(404, NotFound), (410, NotFound), (409, Conflict), (403, AuthFailed), (422, Exception)]
)
async def test_operation_outcomes_become_errors_with_codes_and_never_diagnostics(
    status: int, error: type[Exception]
) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "conflict", "diagnostics": f"{PATIENT_NAME} already booked"}],
    }
    c = client(lambda r: fhir(status, outcome), StaticBearer(token="x"))
    with pytest.raises(error) as caught:
        await c.create(wire.Appointment(status="pending"))
    text = f"{caught.value} {getattr(caught.value, 'emr_message', '')}"
    assert PATIENT_NAME not in text
    assert "conflict" in text


async def test_429_carries_retry_after() -> None:
    c = client(
        lambda r: fhir(429, {"resourceType": "OperationOutcome", "issue": []}, **{"retry-after": "7"}),
        StaticBearer(token="x"),
    )
    with pytest.raises(RateLimited) as caught:
        await c.read(wire.Patient, "1")
    assert caught.value.retry_after == 7


async def test_a_write_answered_by_location_only_is_read_back_and_a_lost_answer_is_ambiguous() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert request.headers["content-type"] == "application/fhir+json"
            assert msgspec.json.decode(request.content)["resourceType"] == "Appointment"
            return httpx.Response(201, headers={"location": f"{BASE}/Appointment/42/_history/1"})
        return fhir(200, {"resourceType": "Appointment", "id": "42", "status": "booked", "participant": []})

    created = await client(handler, StaticBearer(token="x")).create(wire.Appointment(status="pending"))
    assert created.id == "42"

    def drops(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("lost", request=request)

    with pytest.raises(AmbiguousWrite):
        await client(drops, StaticBearer(token="x")).create(wire.Appointment(status="pending"))


async def test_patch_is_a_merge_patch() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "PATCH"
        assert request.headers["content-type"] == "application/merge-patch+json"
        assert json.loads(request.content) == {"status": "cancelled"}
        return fhir(200, {"resourceType": "Appointment", "id": "7", "status": "cancelled", "participant": []})

    patched = await client(handler, StaticBearer(token="x")).patch(wire.Appointment, "7", b'{"status":"cancelled"}')
    assert patched.status == "cancelled"


def test_capability_statement_reads_operations_and_interactions() -> None:
    statement = msgspec.json.decode(
        json.dumps(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "rest": [
                    {
                        "mode": "server",
                        "resource": [
                            {
                                "type": "Appointment",
                                "interaction": [{"code": "read"}, {"code": "search-type"}],
                                "searchParam": [{"name": "_lastUpdated", "type": "date"}],
                                "operation": [
                                    {"name": "find", "definition": "http://x/OperationDefinition/appointment-find"}
                                ],
                            }
                        ],
                        "operation": [{"name": "book", "definition": "http://x/OperationDefinition/Appointment-book"}],
                    }
                ],
            }
        ),
        type=wire.CapabilityStatement,
    )
    assert statement.operation("Appointment", "$find")
    assert statement.operation("Appointment", "book")  # declared system-wide, defined on Appointment
    assert not statement.operation("Appointment", "hold")
    assert statement.can("Appointment", "read")
    assert not statement.can("Patient", "create")
    assert statement.searches("Appointment", "_lastUpdated")

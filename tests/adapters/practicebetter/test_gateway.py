"""The gateway side of Practice Better, on SQLite and PostgreSQL: the storage-backed client index (shared by every
adapter instance of a location) and the webhook route (handshake, PB-Signature, targeted sync)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from sqlalchemy import func, select

from adapters.practicebetter import signature
from adapters.practicebetter.index import IndexEntry, IndexKey, UsesClientIndex, email_digest, name_digest
from gateway.crypto import Keyring
from gateway.emr import build_adapter
from gateway.storage.pb_client_index import StoredClientIndex
from gateway.storage.store import Store
from gateway.storage.tables import events
from schemas.commands import BookCommand
from schemas.patients import PatientQuery
from tests.adapters.practicebetter.conftest import PB
from tests.gateway.conftest import Harness, run_sync, running_harness

UTC = dt.UTC


async def _location(store: Store, pb: PB) -> str:
    settings, credentials = pb.emulator.location_config(pb.base_url)
    loc = await store.create_location(
        emr="practicebetter", name="PB", settings_json=settings, credentials_json=credentials, time_zone="UTC"
    )
    return loc.id


async def test_stored_index_upserts_moves_and_only_advances(store: Store, pb: PB) -> None:
    index = StoredClientIndex(store, await _location(store, pb))
    a, b = email_digest("A@example.com"), email_digest("b@example.com")
    name = name_digest("Ana", "Lopez")
    t1 = dt.datetime(2026, 1, 1, tzinfo=UTC)
    await index.upsert([IndexEntry(record_id="r1", email_sha256=a, name_sha256=name, modified_at=t1)])
    await index.upsert([IndexEntry(record_id="r2", email_sha256=a, modified_at=t1)])
    assert await index.lookup(IndexKey(email_sha256=email_digest(" a@example.com"))) == ["r1", "r2"]
    assert await index.lookup(IndexKey(email_sha256=a, name_sha256=name_digest("ana ", "LOPEZ"))) == ["r1"]
    await index.upsert([IndexEntry(record_id="r1", email_sha256=b, modified_at=t1)])  # the e-mail changed
    assert await index.lookup(IndexKey(email_sha256=a)) == ["r2"]
    await index.remove("r2")
    assert await index.lookup(IndexKey(email_sha256=a)) == []
    assert await index.watermark() is None
    await index.advance(t1 + dt.timedelta(hours=1))
    await index.advance(t1)  # a slower lookup finishing later never moves it back
    assert await index.watermark() == t1 + dt.timedelta(hours=1)


async def test_adapters_of_a_location_share_the_stored_index(store: Store, pb: PB) -> None:
    location_id = await _location(store, pb)
    settings, credentials = pb.emulator.location_config(pb.base_url)

    def adapter() -> UsesClientIndex:
        built = build_adapter(
            "practicebetter", settings, credentials, http=pb.http, location_id=location_id, time_zone="UTC", store=store
        )
        assert isinstance(built, UsesClientIndex)
        assert isinstance(built.client_index, StoredClientIndex)
        return built

    first = adapter()
    assert len(await first.find_patients(PatientQuery(email="jane.citizen@example.com"))) == 1  # type: ignore[attr-defined]
    second = adapter()  # e.g. after the adapter pool's TTL, or in another replica
    assert len(await second.find_patients(PatientQuery(email="jane.citizen@example.com"))) == 1  # type: ignore[attr-defined]
    lists = [e.query for e in pb.emulator.exchanges if e.method == "GET" and e.path == "/consultant/records"]
    assert "modified_gte" not in lists[0]
    assert "modified_gte=" in lists[1]  # the second instance only asked for what changed since


# ---------------------------------------------------------------------------------------------- the webhook route


@pytest.fixture
def live(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    with running_harness("practicebetter", database_url, keyring) as h:
        yield h


def _event_count(h: Harness) -> int:
    async def count() -> int:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.connect() as conn:
                return int(await conn.scalar(select(func.count()).select_from(events)) or 0)
        finally:
            await store.close()

    return run_sync(count())


def _secret(h: Harness) -> str:
    _, credentials = h.emulator.location_config(h.emulator_url)
    return str(msgspec.json.decode(credentials)["webhook_signing_secret"])


def test_subscription_handshake_through_the_emulator(live: Harness) -> None:
    _, credentials = live.emulator.location_config(live.emulator_url)
    creds = msgspec.json.decode(credentials)
    url = f"{live.base_url}/practicebetter/v1/webhooks/{live.sites[0].location_id}"
    with live.anonymous() as client:
        wrong = client.get(url, params={"challenge": "abc", "verification_token": "nope"})
        assert wrong.status_code == 401
    # Practice Better itself calls the handshake while creating the subscription.
    with httpx.Client(base_url=live.emulator_url, timeout=30) as pbc:
        token = pbc.post(
            "/oauth2/token", data={"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
        ).json()["access_token"]
        created = pbc.post(
            "/webhooks/subscription",
            json={
                "endpointUrl": url,
                "eventTypes": ["session.created"],
                "verificationToken": creds["webhook_verification_token"],
            },
            headers={"Authorization": f"Bearer {token}"},
        )
    assert created.status_code == 200, created.text
    assert created.json()["plaintextSigningSecret"] == creds["webhook_signing_secret"]


def test_signed_session_event_runs_a_targeted_sync_and_bad_signatures_change_nothing(live: Harness) -> None:
    # A session booked in Practice Better's own screens (not through the gateway): the gateway has not seen it.
    with live.client() as api:
        practitioner = api.get("/v1/practitioners").json()["items"][0]["id"]
        service = api.get("/v1/services").json()["items"][0]["id"]
        patient = api.get("/v1/patients", params={"email": "jane.citizen@example.com"}).json()["items"][0]["id"]
    settings, credentials = live.emulator.location_config(live.emulator_url)

    async def book_directly() -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            adapter = build_adapter(
                "practicebetter", settings, credentials, http=http, location_id=live.sites[0].location_id,
                time_zone="Australia/Melbourne",
            )  # fmt: skip
            start = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=3)
            booked = await adapter.book(
                BookCommand(patient_id=patient, practitioner_id=practitioner, service_id=service, start=start)
            )
            return booked.id

    session_id = run_sync(book_directly())
    body = msgspec.json.encode({"eventType": "session.created", "resourceId": session_id})
    url = f"/practicebetter/v1/webhooks/{live.sites[0].location_id}"
    before = _event_count(live)
    now = int(time.time())
    with live.anonymous() as client:
        forged = client.post(url, content=body, headers={"PB-Signature": signature.sign("wrong", now, body)})
        stale = client.post(url, content=body, headers={"PB-Signature": signature.sign(_secret(live), now - 301, body)})
        unsigned = client.post(url, content=body)
        assert [r.status_code for r in (forged, stale, unsigned)] == [401, 401, 401]
        assert _event_count(live) == before

        good = client.post(url, content=body, headers={"PB-Signature": signature.sign(_secret(live), now, body)})
        assert good.status_code == 200, good.text
        assert good.json()["accepted"] is True
        assert good.json()["events"] >= 1  # appointment.booked (+ patient.updated)
        assert _event_count(live) == before + good.json()["events"]

        replay = client.post(url, content=body, headers={"PB-Signature": signature.sign(_secret(live), now, body)})
        assert replay.json()["events"] == 0  # nothing changed since: nothing new to announce

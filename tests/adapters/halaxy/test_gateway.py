"""The gateway side of Halaxy, on SQLite and PostgreSQL: the Subscription notification route (its authentication
header, the targeted sync, 401 and 503), and a patient edited in Halaxy reaching a subscriber as one signed
`patient.updated`, through the notification route and through the poll."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import func, select

from adapters.emulation import ServerThread
from adapters.halaxy.emulator import FrontDeskBooking, HalaxyEmulator, PatientEdit, WebhookConfig
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.crypto import Keyring
from gateway.storage.store import Store
from gateway.storage.tables import events
from tests.gateway.conftest import Harness, _provision, run_sync, running_harness, two_business_seed
from tests.webhooks.conftest import FAST, wait_until
from tests.webhooks.receiver import Receiver, verify


@pytest.fixture
def live(database_url: str, keyring: Keyring) -> Iterator[Harness]:
    with running_harness("halaxy", database_url, keyring) as h:
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


def _emulator(h: Harness) -> HalaxyEmulator:
    assert isinstance(h.emulator, HalaxyEmulator)
    return h.emulator


def _notification(h: Harness, kind: str, rid: str) -> bytes:
    """What Halaxy would POST for a change to `kind/rid` (the emulator's rendering of the documented body)."""
    emulator = _emulator(h)
    hook = emulator.add_webhook(WebhookConfig(url="http://127.0.0.1:9/unused", event=f"{kind.lower()}.update"))
    return msgspec.json.encode(emulator.notification(hook, 1, kind, rid))


def _booked_at_the_front_desk(emulator: HalaxyEmulator, clinic: int = 0) -> tuple[str, str]:
    """An appointment made in Halaxy's calendar for the seeded patient at a clinic: (patient id, appointment id).
    A patient is this location's to announce once they have an appointment here."""
    clinic_id = emulator.clinic_ids()[clinic]
    role = next(r.id for r in emulator.roles.values() if r.clinic_id == clinic_id)
    patient = next(iter(emulator.patients))
    booked = emulator.front_desk_book(
        FrontDeskBooking(
            practitioner_role_id=role,
            patient_id=patient,
            healthcare_service_id=next(iter(emulator.services)),
            start=dt.datetime.now(dt.UTC).replace(microsecond=0, second=0, minute=0) + dt.timedelta(days=3),
        )
    )
    return patient, booked.id


def test_a_notification_needs_the_configured_header_and_runs_a_targeted_sync(live: Harness) -> None:
    emulator = _emulator(live)
    patient, _ = _booked_at_the_front_desk(emulator)
    body = _notification(live, "Patient", patient)
    url = f"/halaxy/v1/webhooks/{live.sites[0].location_id}"
    before = _event_count(live)
    with live.anonymous() as client:
        for headers in ({}, {"Authorization": "wrong"}, {"Authorization": f"Bearer x{emulator.webhook_secret}"}):
            refused = client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
            assert refused.status_code == 401, refused.text
        assert _event_count(live) == before
        assert not [e for e in emulator.exchanges if e.path.startswith("/main/Patient/")]  # nothing was read

        plain = {"Content-Type": "application/json", "Authorization": emulator.webhook_secret}
        first = client.post(url, content=body, headers=plain)
        assert first.status_code == 200, first.text
        assert first.json()["accepted"] is True
        assert first.json()["events"] == 2  # the gateway's first look: appointment.booked and patient.updated

        emulator.edit_patient(patient, PatientEdit(email="jane.moved@example.com"))  # in Halaxy's screens
        bearer = {"Content-Type": "application/json", "Authorization": f"Bearer {emulator.webhook_secret}"}
        good = client.post(url, content=body, headers=bearer)
        assert good.status_code == 200, good.text
        assert good.json()["events"] == 1  # patient.updated
        assert _event_count(live) == before + 3

        again = client.post(url, content=body, headers=bearer)
        assert (again.status_code, again.json()["events"]) == (200, 0)  # nothing changed since: nothing to announce

        unknown = client.post(f"/halaxy/v1/webhooks/{live.sites[0].location_id}x", content=body, headers=bearer)
        assert unknown.status_code == 404


def test_another_clinics_appointment_changes_nothing_here(live: Harness) -> None:
    emulator = _emulator(live)
    _, south = _booked_at_the_front_desk(emulator, clinic=1)
    body = _notification(live, "Appointment", south)
    headers = {"Content-Type": "application/json", "Authorization": emulator.webhook_secret}
    with live.anonymous() as client:
        answer = client.post(f"/halaxy/v1/webhooks/{live.sites[0].location_id}", content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.json() == {
        "accepted": False,
        "events": 0,
        "reason": "nothing this location holds changed",
        "deferred": 0,
    }


def test_an_emr_failure_while_re_reading_is_503(live: Harness) -> None:
    emulator = _emulator(live)
    patient = next(iter(emulator.patients))
    body = _notification(live, "Patient", patient)
    with live.anonymous() as client:
        fault = {"kind": "error_5xx", "method": "GET", "status": 503, "count": 1000}
        assert client.post(f"{live.emulator_url}/_emulator/faults", json=fault).status_code == 204
        answer = client.post(
            f"/halaxy/v1/webhooks/{live.sites[0].location_id}",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": emulator.webhook_secret},
        )
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "emr_unavailable"


# ---------------------------------------------------------------------------------------------- end to end


class Running(msgspec.Struct):
    base_url: str
    emulator: HalaxyEmulator
    emulator_url: str
    location_id: str
    api_key: str


@contextlib.contextmanager
def _running(database_url: str, keyring: Keyring, **config: Any) -> Iterator[Running]:
    seed = two_business_seed()
    emulator = HalaxyEmulator(seed)
    emulator_thread = ServerThread(emulator.app())
    emulator_url = emulator_thread.start()
    try:
        sites = run_sync(_provision(database_url, keyring, emulator, emulator_url, 1, seed.time_zone))
        gateway_config = GatewayConfig(
            **{
                "database_url": database_url,
                "rate_limit_per_minute": 100_000,
                **FAST,
                "sync_tick_seconds": 0.2,
                **config,
            }
        )
        gateway_thread = ServerThread(create_app(gateway_config, keyring, worker=True))
        base_url = gateway_thread.start()
        try:
            yield Running(base_url, emulator, emulator_url, sites[0].location_id, sites[0].api_key)
        finally:
            gateway_thread.stop()
    finally:
        emulator_thread.stop()


def _subscribe(run: Running, receiver: Receiver) -> str:
    with httpx.Client(base_url=run.base_url, headers={"x-api-key": run.api_key}, timeout=30) as api:
        hook = api.post("/v1/webhooks", json={"url": receiver.url, "event_types": ["patient.updated"]})
    assert hook.status_code == 201, hook.text
    return str(hook.json()["secret"])


def _patient_updates(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    out = []
    for got in receiver.snapshot():
        payload = verify(secret, got)  # signed by the subscriber's secret, or this raises
        assert isinstance(payload, dict)
        if payload["type"] == "patient.updated":
            out.append(payload)
    return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def test_a_patient_edited_in_halaxy_arrives_once_through_its_notification(
    database_url: str, keyring: Keyring, receiver: Receiver
) -> None:
    with _running(database_url, keyring, poll_seconds=3600.0) as run:
        secret = _subscribe(run, receiver)
        hook_url = f"{run.base_url}/halaxy/v1/webhooks/{run.location_id}"
        with httpx.Client(timeout=30) as control:
            created = control.post(
                f"{run.emulator_url}/_emulator/webhooks",
                json={"url": hook_url, "event": "patient.update", "authentication_header": run.emulator.webhook_secret},
            )
            assert created.status_code == 201
            patient, _ = _booked_at_the_front_desk(run.emulator)  # no webhook for bookings: the gateway has not seen it
            edited = control.post(f"{run.emulator_url}/_emulator/patients/{patient}", json={"phone": "+61400000042"})
            assert edited.status_code == 204
        wait_until(lambda: len(_patient_updates(receiver, secret)) == 1, what="the patient.updated delivery")
        time.sleep(0.5)
        [update] = _patient_updates(receiver, secret)
        assert update["data"]["patient"]["id"] == patient
        assert "+61400000042" in update["data"]["patient"]["phones"]
        assert [d.status for d in run.emulator.deliveries] == [200]


def test_a_patient_edited_in_halaxy_arrives_once_through_the_poll(
    database_url: str, keyring: Keyring, receiver: Receiver
) -> None:
    with _running(database_url, keyring, poll_seconds=0.3, poll_min_seconds=0.3) as run:
        secret = _subscribe(run, receiver)
        # The first poll only sets the cursor (no requests); the second asks Halaxy what changed since.
        wait_until(
            lambda: any("_lastUpdated" in e.query for e in run.emulator.exchanges if e.path == "/main/Patient"),
            what="a poll with a cursor",
        )
        time.sleep(1.1)  # Halaxy stamps to the second
        patient, _ = _booked_at_the_front_desk(run.emulator)
        wait_until(lambda: len(_patient_updates(receiver, secret)) == 1, what="the booking's patient.updated")
        time.sleep(1.1)
        with httpx.Client(timeout=30) as control:
            edited = control.post(
                f"{run.emulator_url}/_emulator/patients/{patient}", json={"email": "jane.new@example.com"}
            )
            assert edited.status_code == 204
        wait_until(lambda: len(_patient_updates(receiver, secret)) == 2, what="the edit's patient.updated")
        time.sleep(1.0)  # more polls pass: the digest holds a second event back
        updates = _patient_updates(receiver, secret)
        assert len(updates) == 2
        assert updates[1]["data"]["patient"]["id"] == patient
        assert updates[1]["data"]["patient"]["email"] == "jane.new@example.com"
        assert run.emulator.deliveries == []  # no webhook was created: the poll alone found it


# ---------------------------------------------------------------------------------------------- review fixes


def _event_types(h: Harness) -> list[str]:
    async def read() -> list[str]:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.connect() as conn:
                rows = await conn.execute(select(events.c.type).order_by(events.c.created_at, events.c.id))
                return [str(row.type) for row in rows]
        finally:
            await store.close()

    return run_sync(read())


def _post(h: Harness, body: bytes, **headers: str) -> httpx.Response:
    secret = _emulator(h).webhook_secret
    with h.anonymous() as client:
        return client.post(
            f"/halaxy/v1/webhooks/{h.sites[0].location_id}",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": secret, **headers},
        )


def test_an_appointment_deleted_in_halaxy_reaches_subscribers_as_cancelled(live: Harness) -> None:
    emulator = _emulator(live)
    _, appointment = _booked_at_the_front_desk(emulator)
    seen = _post(live, _notification(live, "Appointment", appointment))
    assert (seen.status_code, seen.json()["events"]) == (200, 2)  # appointment.booked, patient.updated
    with httpx.Client(timeout=30) as control:
        deleted = control.post(f"{live.emulator_url}/_emulator/appointments/{appointment}/delete")
        assert deleted.status_code == 204
    gone = _post(live, _notification(live, "Appointment", appointment))  # "Appointment deleted": a read is 404
    assert gone.status_code == 200, gone.text
    assert gone.json()["accepted"] is True
    assert _event_types(live)[-2:] == ["appointment.cancelled", "patient.updated"]
    again = _post(live, _notification(live, "Appointment", appointment))
    assert again.json()["events"] == 0  # announced once


def test_a_deletion_whose_notification_was_lost_is_caught_by_the_patients_next_one(live: Harness) -> None:
    emulator = _emulator(live)
    patient, appointment = _booked_at_the_front_desk(emulator)
    assert _post(live, _notification(live, "Appointment", appointment)).json()["events"] == 2
    emulator.front_desk_delete(appointment)  # its notification never arrives
    emulator.edit_patient(patient, PatientEdit(phone="+61400000077"))
    edited = _post(live, _notification(live, "Patient", patient))
    assert edited.status_code == 200, edited.text
    assert _event_types(live)[-2:] == ["appointment.cancelled", "patient.updated"]


def test_the_header_is_checked_before_the_body_is_read(live: Harness) -> None:
    """An unauthenticated sender learns nothing and costs no parsing: a body that is not JSON is 401 too (one nested
    too deep is refused earlier still, by gateway.body_guard)."""
    for body in (b"{not json", b'{"entry": 1}', b"x" * 60_000):
        refused = _post(live, body, Authorization="wrong")
        assert refused.status_code == 401, refused.text
    assert _post(live, b"{not json").status_code == 400  # with the header, a broken body is still refused


def test_a_notification_naming_many_resources_reads_a_bounded_number(live: Harness) -> None:
    emulator = _emulator(live)
    ids = [
        emulator.create_patient({"resourceType": "Patient", "name": [{"family": "Many", "given": [f"M{n}"]}]}).id
        for n in range(25)
    ]
    document = msgspec.json.decode(_notification(live, "Patient", ids[0]))
    [event] = document["entry"][0]["resource"]["notificationEvent"]
    document["entry"][0]["resource"]["notificationEvent"] = [
        {**event, "eventNumber": str(n), "focus": {**event["focus"], "reference": f"{emulator.base_url}/Patient/{rid}"}}
        for n, rid in enumerate(ids, 1)
    ]
    answer = _post(live, msgspec.json.encode(document))
    assert answer.status_code == 200, answer.text
    assert answer.json()["deferred"] == 5
    read = [e for e in emulator.exchanges if e.method == "GET" and e.path.startswith("/main/Patient/")]
    assert len(read) == 20


def test_a_versioned_focus_names_its_resource(live: Harness) -> None:
    emulator = _emulator(live)
    patient, _ = _booked_at_the_front_desk(emulator)
    document = msgspec.json.decode(_notification(live, "Patient", patient))
    focus = document["entry"][0]["resource"]["notificationEvent"][0]["focus"]
    focus["reference"] = f"{focus['reference']}/_history/3"
    del focus["type"]  # only the reference says what changed
    answer = _post(live, msgspec.json.encode(document))
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] is True
    assert answer.json()["events"] == 2  # the gateway's first look at this patient: appointment.booked, patient.updated

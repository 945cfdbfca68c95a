"""Signed delivery, retries, dead letters and disabling, observed from a real receiver on loopback."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import msgspec
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway.storage.webhooks import EndpointRecord
from tests.webhooks.conftest import WebhookHarness, wait_until
from tests.webhooks.receiver import Answer, Receiver, verify


def subscribe(wh: WebhookHarness, url: str, site: int = 0, **extra: object) -> dict[str, object]:
    with wh.client(site) as c:
        r = c.post("/v1/webhooks", json={"url": url, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def deliveries(wh: WebhookHarness, webhook_id: str, site: int = 0) -> list[dict[str, object]]:
    with wh.client(site) as c:
        r = c.get(f"/v1/webhooks/{webhook_id}/deliveries")
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


def test_an_event_arrives_signed_per_standard_webhooks(wh: WebhookHarness, receiver: Receiver) -> None:
    hook = subscribe(wh, receiver.url)
    secret = str(hook["secret"])
    assert secret.startswith("whsec_")
    event = wh.publish()
    wait_until(lambda: len(receiver.snapshot()) == 1, what="the delivery")
    got = receiver.snapshot()[0]
    payload = verify(secret, got)
    assert got.headers["webhook-id"] == event.id
    assert got.headers["content-type"] == "application/json"
    assert isinstance(payload, dict)
    assert payload["type"] == "appointment.booked"
    assert payload["id"] == event.id
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(got.body, got.headers)
    wait_until(lambda: deliveries(wh, str(hook["id"]))[0]["state"] == "succeeded", what="the log to say succeeded")
    logged = deliveries(wh, str(hook["id"]))[0]
    assert logged["attempts"] == 1
    assert logged["last_status_code"] == 200
    assert logged["event_id"] == event.id
    # The secret is shown once: never in listings.
    with wh.client() as c:
        listed = c.get("/v1/webhooks").json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert all(h.get("secret") is None for h in listed)


def test_only_subscribed_types_and_own_location_are_delivered(wh: WebhookHarness, receiver: Receiver) -> None:
    subscribe(wh, receiver.url, event_types=["appointment.cancelled"])
    wh.publish(event_type=wh_types().APPOINTMENT_BOOKED)  # not subscribed
    wh.publish(site=1, event_type=wh_types().APPOINTMENT_CANCELLED)  # another location
    wanted = wh.publish(event_type=wh_types().APPOINTMENT_CANCELLED)
    wait_until(lambda: len(receiver.snapshot()) >= 1, what="the delivery")
    assert [r.headers["webhook-id"] for r in receiver.snapshot()] == [wanted.id]


def wh_types() -> type:
    from schemas.webhooks import EventType

    return EventType


def test_failures_retry_with_a_stable_id_until_success(wh: WebhookHarness, receiver: Receiver) -> None:
    hook = subscribe(wh, receiver.url)
    receiver.script.extend(
        [
            Answer(status=500, body=b"boom"),
            Answer(status=502),
            Answer(status=301, headers={"location": "http://127.0.0.1:1/"}),
        ]
    )
    event = wh.publish()
    wait_until(lambda: any(r.status == 200 for r in receiver.snapshot()), what="the eventual success")
    got = receiver.snapshot()
    assert [r.status for r in got] == [500, 502, 301, 200]  # the redirect was a failure, not followed
    assert {r.headers["webhook-id"] for r in got} == {event.id}
    for r in got:
        verify(str(hook["secret"]), r)
    wait_until(lambda: deliveries(wh, str(hook["id"]))[0]["state"] == "succeeded", what="succeeded")
    assert deliveries(wh, str(hook["id"]))[0]["attempts"] == 4


def test_retry_after_is_honoured(wh: WebhookHarness, receiver: Receiver) -> None:
    subscribe(wh, receiver.url)
    receiver.script.append(Answer(status=429, headers={"retry-after": "1"}))
    wh.publish()
    wait_until(lambda: len(receiver.snapshot()) == 2, what="the retry")
    first, second = receiver.snapshot()
    assert first.status == 429
    assert second.status == 200
    assert second.at - first.at >= 0.9  # the millisecond schedule alone would have retried at once


@pytest.mark.gateway_config(webhook_timeout_seconds=0.3)
def test_a_slow_receiver_times_out_and_is_retried(wh: WebhookHarness, receiver: Receiver) -> None:
    hook = subscribe(wh, receiver.url)
    receiver.script.append(Answer(status=200, delay=1.0))
    wh.publish()
    wait_until(lambda: len(receiver.snapshot()) >= 2, what="the retry after a timeout")
    wait_until(lambda: deliveries(wh, str(hook["id"]))[0]["state"] == "succeeded", what="succeeded")
    assert deliveries(wh, str(hook["id"]))[0]["attempts"] == 2


def test_exhausted_deliveries_are_dead_lettered_then_retried_by_hand(wh: WebhookHarness, receiver: Receiver) -> None:
    hook = subscribe(wh, receiver.url)
    receiver.answer = Answer(status=503, body=b"down for maintenance")
    event = wh.publish()
    wait_until(lambda: deliveries(wh, str(hook["id"]))[0]["state"] == "dead", what="the dead letter")
    dead = deliveries(wh, str(hook["id"]))[0]
    assert dead["attempts"] == 8
    assert dead["last_status_code"] == 503
    assert dead["last_response_body"] == "down for maintenance"
    assert len(receiver.snapshot()) == 8
    receiver.answer = Answer(status=204, body=b"")
    with wh.client() as c:
        r = c.post(f"/v1/webhooks/{hook['id']}/deliveries/{dead['id']}/retry")
    assert r.status_code == 202, r.text
    wait_until(lambda: deliveries(wh, str(hook["id"]))[0]["state"] == "succeeded", what="the manual retry")
    assert receiver.snapshot()[-1].headers["webhook-id"] == event.id


def test_410_disables_the_endpoint_and_records_endpoint_disabled(wh: WebhookHarness, receiver: Receiver) -> None:
    watcher = Receiver().start()
    try:
        hook = subscribe(wh, receiver.url)
        subscribe(wh, watcher.url, event_types=["endpoint.disabled"])
        receiver.answer = Answer(status=410)
        since = datetime.now(UTC).isoformat()
        first = wh.publish()
        wait_until(lambda: len(watcher.snapshot()) == 1, what="the endpoint.disabled event")
        notice = msgspec.json.decode(watcher.snapshot()[0].body)
        assert notice["type"] == "endpoint.disabled"
        assert notice["data"]["endpoint_id"] == hook["id"]
        with wh.client() as c:
            state = c.get(f"/v1/webhooks/{hook['id']}").json()
        assert state["enabled"] is False
        assert "410" in state["disabled_reason"]
        # Disabled: nothing new is queued for it; re-enabled, its failed delivery resumes; a replay brings the rest.
        receiver.answer = Answer(status=200)
        missed = wh.publish()
        with wh.client() as c:
            assert c.post(f"/v1/webhooks/{hook['id']}/enable").json()["enabled"] is True
        wait_until(lambda: receiver.snapshot()[-1].status == 200, what="the resumed delivery")
        assert [r.headers["webhook-id"] for r in receiver.snapshot()] == [first.id, first.id]
        with wh.client() as c:
            r = c.post(f"/v1/webhooks/{hook['id']}/replay", params={"since": since})
        assert r.status_code == 202
        assert r.json() == {"queued": 3}
        wait_until(lambda: missed.id in {r.headers["webhook-id"] for r in receiver.snapshot()}, what="the replay")
    finally:
        watcher.stop()


@pytest.mark.gateway_config(
    webhook_retry_schedule=(0.0,) + (0.05,) * 30, webhook_disable_after_seconds=0.3, webhook_retry_jitter=0.0
)
def test_an_endpoint_failing_for_the_disable_period_is_disabled(wh: WebhookHarness, receiver: Receiver) -> None:
    hook = subscribe(wh, receiver.url)
    receiver.answer = Answer(status=500)
    wh.publish()

    def disabled() -> bool:
        with wh.client() as c:
            return c.get(f"/v1/webhooks/{hook['id']}").json()["enabled"] is False

    wait_until(disabled, what="the endpoint to be disabled")
    with wh.client() as c:
        assert "failing continuously" in c.get(f"/v1/webhooks/{hook['id']}").json()["disabled_reason"]
    from schemas.webhooks import EventType

    events = wh_events(wh, EventType.ENDPOINT_DISABLED)
    assert [e.data.endpoint_id for e in events] == [hook["id"]]  # type: ignore[union-attr]


def wh_events(wh: WebhookHarness, event_type: object) -> list:  # type: ignore[type-arg]
    from gateway.storage.store import Store
    from gateway.storage.webhooks import WebhookStore
    from tests.gateway.conftest import run_sync

    async def go() -> list:  # type: ignore[type-arg]
        store = await Store.open(wh.database_url, wh.keyring)
        try:
            return await WebhookStore(store).list_events(wh.sites[0].location_id, event_type)  # type: ignore[arg-type]
        finally:
            await store.close()

    return run_sync(go())


SCHEDULE = (0.0, 0.3, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6)


@pytest.mark.gateway_config(webhook_retry_schedule=SCHEDULE, webhook_retry_jitter=0.0, webhook_batch_size=4)
def test_a_receiver_that_fails_mid_run_is_retried_on_schedule(wh: WebhookHarness, receiver: Receiver) -> None:
    """200, then 500 for a while, then 200 again: what was sent during the outage is retried at the schedule's
    delays (jitter off) until it gets through; nothing else is sent twice; the endpoint's failing streak ends."""
    hook = subscribe(wh, receiver.url)
    before = [wh.publish() for _ in range(3)]
    wait_until(lambda: len(receiver.snapshot()) == 3, what="the first events")
    receiver.answer = Answer(status=500, body=b"down")
    during = [wh.publish() for _ in range(3)]

    def failures(event_id: str) -> int:
        return sum(1 for r in receiver.snapshot() if r.headers["webhook-id"] == event_id and r.status == 500)

    wait_until(lambda: all(failures(e.id) >= 3 for e in during), what="two retries of each failing event")
    receiver.answer = Answer(status=200)
    after = [wh.publish() for _ in range(3)]
    everything = before + during + after
    wait_until(
        lambda: {r.headers["webhook-id"] for r in receiver.snapshot() if r.status == 200} == {e.id for e in everything},
        what="every event through",
    )
    got = receiver.snapshot()
    for r in got:
        verify(str(hook["secret"]), r)
    assert all(r.status == 200 for r in got if r.headers["webhook-id"] in {e.id for e in before + after})
    assert len(got) == len(before) + len(after) + sum(failures(e.id) + 1 for e in during)
    for event in during:
        hits = [r for r in got if r.headers["webhook-id"] == event.id]
        assert [r.status for r in hits][-1] == 200
        assert {r.status for r in hits[:-1]} == {500}
        for made, (earlier, later) in enumerate(pairwise(hits), start=1):
            gap = later.at - earlier.at
            assert SCHEDULE[made] - 0.05 <= gap < SCHEDULE[made] + 2.0, (made, gap)
    wait_until(lambda: {d["state"] for d in deliveries(wh, str(hook["id"]))} == {"succeeded"}, what="all recorded")
    log = {d["event_id"]: d for d in deliveries(wh, str(hook["id"]))}
    for event in during:
        assert log[event.id]["attempts"] == failures(event.id) + 1
        assert log[event.id]["last_status_code"] == 200
    assert endpoint_record(wh, str(hook["id"])).failing_since is None


def endpoint_record(wh: WebhookHarness, endpoint_id: str) -> EndpointRecord:
    from gateway.storage.store import Store
    from gateway.storage.webhooks import WebhookStore
    from tests.gateway.conftest import run_sync

    async def go() -> EndpointRecord | None:
        store = await Store.open(wh.database_url, wh.keyring)
        try:
            return await WebhookStore(store).get_endpoint(wh.sites[0].location_id, endpoint_id)
        finally:
            await store.close()

    record = run_sync(go())
    assert record is not None
    return record

"""The console's actions call the same code as the API and the CLI, and show what they did: Sync now, Verify,
API keys (a new key shown once), and an endpoint's retry, replay, rotate and enable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from gateway.config import GatewayConfig
from gateway.storage.store import Store
from gateway.storage.tables import audit_log, deliveries, sync_runs
from gateway.storage.webhooks import WebhookStore
from gateway.webhooks.delivery import WebhookClient, deliver_batch
from tests.console.conftest import Console, attr, tagged
from tests.console.test_pages import LOOPBACK, set_credentials, subscribe
from tests.gateway.conftest import Harness, run_sync
from tests.sync.support import ClinicScreens, Sync, day_ahead, local
from tests.webhooks.receiver import Answer, Receiver


def _result(html: str) -> str:
    [tag] = tagged(html, "result")
    return tag


def test_sync_now_runs_one_poll_and_shows_what_changed(console: Console, harness: Harness) -> None:
    location_id = harness.sites[0].location_id
    path = f"/console/locations/{location_id}/sync"
    first = console.post(path)
    assert first.status_code == 200, first.text
    assert attr(_result(first.text), "data-outcome") == "ok"
    clinic = ClinicScreens(harness)
    clinic.book(local(day_ahead(), 10))
    clinic.close()
    r = console.post(path)
    assert attr(_result(r.text), "data-kind") == "sync"
    assert "2 event(s) emitted" in r.text  # appointment.booked and patient.updated
    runs = tagged(r.text, "sync-run")
    assert [(attr(t, "data-trigger"), attr(t, "data-events")) for t in runs] == [("manual", "2"), ("manual", "0")]
    assert [e.type.value for e in Sync(harness).events()] == ["appointment.booked", "patient.updated"]


def test_verify_shows_the_probes_and_turns_the_light(harness: Harness) -> None:
    from tests.console.conftest import signed_in

    location_id = harness.sites[0].location_id
    set_credentials(harness, 0, api_key="revoked-key-au1")
    console = signed_in(harness)
    page = console.get(f"/console/locations/{location_id}")
    assert 'data-testid="health" data-status="red"' in page.text
    failed = console.post(f"/console/locations/{location_id}/verify")
    assert attr(_result(failed.text), "data-outcome") == "failed"
    assert tagged(failed.text, "verify-report")
    assert any(attr(p, "data-status") == "failed" for p in tagged(failed.text, "probe"))
    set_credentials(harness, 0)  # the right key again (`locations set-credentials`)
    fixed = console.post(f"/console/locations/{location_id}/verify")
    assert attr(_result(fixed.text), "data-outcome") == "ok", fixed.text
    assert all(attr(p, "data-status") in ("ok", "skipped") for p in tagged(fixed.text, "probe"))
    # Verifying forgets the cached adapter and re-checks: green now, not in 30 s.
    assert 'data-testid="health" data-status="green"' in fixed.text
    assert 'data-testid="health" data-status="green"' in console.get("/console").text
    console.close()


@pytest.mark.gateway_config(auth_cache_seconds=0)
def test_a_new_key_is_shown_once_and_revoking_it_works(console: Console, harness: Harness) -> None:
    location_id = harness.sites[0].location_id
    r = console.post(f"/console/locations/{location_id}/keys")
    assert attr(_result(r.text), "data-kind") == "key"
    [field] = tagged(r.text, "new-key")
    key = attr(field, "value")
    assert key.startswith("egw_live_")
    with harness.anonymous() as api:
        assert api.get("/v1/practitioners", headers={"x-api-key": key}).status_code == 200
    page = console.get(f"/console/locations/{location_id}").text
    assert key not in page
    assert key[12:] not in page
    prefixes = [attr(t, "data-prefix") for t in tagged(page, "api-key") if attr(t, "data-revoked") == "false"]
    new_prefix = next(p for p in prefixes if key.startswith(p))
    test_key = console.post(f"/console/locations/{location_id}/keys", {"test": "on"})
    assert attr(tagged(test_key.text, "new-key")[0], "value").startswith("egw_test_")

    # Another location's key cannot be revoked from here.
    other = harness.sites[1].location_id
    assert console.post(f"/console/locations/{other}/keys/revoke", {"prefix": new_prefix}).status_code == 404
    revoked = console.post(f"/console/locations/{location_id}/keys/revoke", {"prefix": new_prefix})
    assert revoked.status_code == 200
    assert attr(_result(revoked.text), "data-outcome") == "ok"
    row = next(t for t in tagged(revoked.text, "api-key") if attr(t, "data-prefix") == new_prefix)
    assert attr(row, "data-revoked") == "true"
    with harness.anonymous() as api:
        assert api.get("/v1/practitioners", headers={"x-api-key": key}).status_code == 401
        assert api.get("/v1/practitioners", headers={"x-api-key": harness.sites[0].api_key}).status_code == 200


def _deliver(h: Harness, **config: object) -> int:
    """One delivery pass, as a worker runs it (the harness's gateway runs none)."""
    settings = GatewayConfig(
        **{
            "database_url": h.database_url,
            "webhook_allowed_subnets": ("127.0.0.0/8",),
            "webhook_retry_schedule": (0.0,),  # one attempt: a failure is dead at once
            "webhook_timeout_seconds": 2.0,
            **config,
        }
    )

    async def go() -> int:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with WebhookClient(settings) as client:
                return await deliver_batch(WebhookStore(store), client, settings, "test-worker")
        finally:
            await store.close()

    return run_sync(go())


def _states(h: Harness) -> list[str]:
    async def go() -> list[str]:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.connect() as conn:
                return sorted((await conn.execute(select(deliveries.c.state))).scalars())
        finally:
            await store.close()

    return run_sync(go())


@LOOPBACK
def test_retry_and_replay_change_delivery_states(console: Console, harness: Harness) -> None:
    receiver = Receiver().start()
    receiver.answer = Answer(status=500, body=b"receiver says: database down")
    try:
        endpoint_id = subscribe(harness, receiver.url)
        sync = Sync(harness)
        sync.tick()
        clinic = ClinicScreens(harness)
        clinic.book(local(day_ahead(), 10))
        clinic.close()
        sync.tick()
        assert _states(harness) == ["pending", "pending"]
        assert _deliver(harness) == 2
        assert _states(harness) == ["dead", "dead"]

        location_id = harness.sites[0].location_id
        base = f"/console/locations/{location_id}/webhooks/{endpoint_id}"
        page = console.get(base + "?state=dead")
        dead = tagged(page.text, "delivery")
        assert [attr(t, "data-state") for t in dead] == ["dead", "dead"]
        assert "receiver says: database down" in page.text  # the receiver's answer
        assert ">500<" in page.text
        assert console.get(base + "?state=succeeded").text.count('data-testid="delivery"') == 0

        delivery_id = attr(dead[0], "data-delivery-id")
        r = console.post(f"{base}/deliveries/{delivery_id}/retry")
        assert attr(_result(r.text), "data-kind") == "retry"
        assert _states(harness) == ["dead", "pending"]
        receiver.answer = Answer(status=200, body=b"thanks")
        assert _deliver(harness) == 1
        assert _states(harness) == ["dead", "succeeded"]

        since = (datetime.now(ZoneInfo(harness_zone(harness))) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        r = console.post(f"{base}/replay", {"since": since})
        assert "2 event(s) queued again" in r.text
        assert _states(harness) == ["pending", "pending"]
        assert console.post(f"{base}/replay", {"since": ""}).status_code == 422
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert "0 event(s) queued again" in console.post(f"{base}/replay", {"since": later}).text
        assert _deliver(harness) == 2
        assert _states(harness) == ["succeeded", "succeeded"]
        ids = {r.headers["webhook-id"] for r in receiver.snapshot()}
        assert len(ids) == 2  # replays keep each event's webhook-id
    finally:
        receiver.stop()


def harness_zone(h: Harness) -> str:
    async def go() -> str:
        store = await Store.open(h.database_url, h.keyring)
        try:
            found = await store.get_location(h.sites[0].location_id)
            assert found is not None
            return found.time_zone
        finally:
            await store.close()

    return run_sync(go())


@LOOPBACK
def test_rotate_shows_the_new_secret_once_and_enable_revives_a_disabled_endpoint(
    console: Console, harness: Harness
) -> None:
    from tests.webhooks.receiver import verify

    receiver = Receiver().start()
    receiver.answer = Answer(status=410)
    try:
        endpoint_id = subscribe(harness, receiver.url)
        location_id = harness.sites[0].location_id
        base = f"/console/locations/{location_id}/webhooks/{endpoint_id}"
        sync = Sync(harness)
        sync.tick()
        clinic = ClinicScreens(harness)
        clinic.book(local(day_ahead(), 11))
        clinic.close()
        sync.tick()
        _deliver(harness)  # 410 Gone: the endpoint is disabled
        overview = console.get("/console").text
        row = overview.split(f'data-location-id="{location_id}"')[1]
        assert 'data-testid="webhooks-health" data-status="red"' in row
        page = console.get(base).text
        assert attr(tagged(page, "endpoint-state")[0], "data-enabled") == "false"
        assert "410" in page

        enabled = console.post(f"{base}/enable")
        assert attr(tagged(enabled.text, "endpoint-state")[0], "data-enabled") == "true"
        assert not tagged(enabled.text, "enable-endpoint")

        rotated = console.post(f"{base}/rotate-secret")
        [field] = tagged(rotated.text, "new-secret")
        secret = attr(field, "value")
        assert secret.startswith("whsec_")
        assert secret not in console.get(base).text
        # The new secret signs what is sent from now on.
        receiver.answer = Answer(status=200)
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        console.post(f"{base}/replay", {"since": since})
        _deliver(harness)
        assert verify(secret, receiver.snapshot()[-1]) is not None

        # Every action is in the audit log, whoever took it: the console's operator, or an API key through
        # /v1/webhooks (the same use case), named by its prefix.
        with harness.client() as api:
            assert api.post(f"/v1/webhooks/{endpoint_id}/rotate-secret").status_code == 200
        operator = [(actor, action) for actor, action, target in _audit(harness) if target == endpoint_id]
        assert [a for _, a in operator] == ["webhook.enable", "webhook.rotate", "webhook.replay", "webhook.rotate"]
        assert {actor.split(":")[0] for actor, _ in operator[:3]} == {"console"}
        prefix = operator[3][0].removeprefix("api_key:")
        assert operator[3][0].startswith("api_key:")
        assert harness.sites[0].api_key.startswith(prefix)
        assert len(prefix) < len(harness.sites[0].api_key)  # a display prefix, never the key
    finally:
        receiver.stop()


def _audit(h: Harness) -> list[tuple[str, str, str | None]]:
    async def go() -> list[tuple[str, str, str | None]]:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.connect() as conn:
                query = select(audit_log.c.actor, audit_log.c.action, audit_log.c.target).order_by(audit_log.c.id)
                return [(r.actor, r.action, r.target) for r in (await conn.execute(query)).all()]
        finally:
            await store.close()

    return run_sync(go())


@LOOPBACK
def test_a_replay_time_out_of_range_or_skipped_by_the_clocks_is_refused_not_a_500(
    console: Console, harness: Harness
) -> None:
    assert harness_zone(harness) == "Australia/Melbourne"
    endpoint_id = subscribe(harness, "http://127.0.0.1:9/egw")
    base = f"/console/locations/{harness.sites[0].location_id}/webhooks/{endpoint_id}"
    for since in ("0001-01-01T00:00", "2026-10-04T02:30", "not a time"):  # 02:30 does not exist in Melbourne then
        r = console.post(f"{base}/replay", {"since": since})
        assert r.status_code == 422, (since, r.status_code)
        assert "Nothing replayed" in r.text


def test_actions_on_unknown_things_are_404(console: Console, harness: Harness) -> None:
    location_id = harness.sites[0].location_id
    for path in (
        "/console/locations/loc_nope/sync",
        "/console/locations/loc_nope/keys",
        f"/console/locations/{location_id}/webhooks/wh_nope/enable",
        f"/console/locations/{location_id}/webhooks/wh_nope/rotate-secret",
        f"/console/locations/{location_id}/webhooks/wh_nope/deliveries/dlv_nope/retry",
    ):
        assert console.post(path).status_code == 404, path


def _runs(h: Harness) -> list[tuple[str, str | None]]:
    async def go() -> list[tuple[str, str | None]]:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.connect() as conn:
                rows = (await conn.execute(select(sync_runs.c.trigger, sync_runs.c.error))).all()
                return [(row.trigger, row.error) for row in rows]
        finally:
            await store.close()

    return run_sync(go())


def test_a_failed_sync_now_is_shown_and_recorded_by_class(harness: Harness) -> None:
    from tests.console.conftest import signed_in

    console = signed_in(harness)
    location_id = harness.sites[0].location_id
    assert console.post(f"/console/locations/{location_id}/sync").status_code == 200  # the first sets the cursor
    set_credentials(harness, 0, api_key="revoked-key-au1")
    r = console.post(f"/console/locations/{location_id}/sync")
    assert r.status_code == 502
    assert attr(_result(r.text), "data-outcome") == "failed"
    assert "AuthFailed" in r.text
    assert sorted(_runs(harness), key=str) == [("manual", "AuthFailed"), ("manual", None)]
    page = console.get(f"/console/locations/{location_id}").text
    assert tagged(page, "sync-errors")
    console.close()

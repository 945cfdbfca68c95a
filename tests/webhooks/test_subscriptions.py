"""Subscriptions through the API: secrets shown once, rotation with a grace period, SSRF refusals, location scoping."""

from __future__ import annotations

import pytest

from tests.webhooks.conftest import WebhookHarness, wait_until
from tests.webhooks.receiver import Receiver, verify


def test_rotation_signs_with_both_secrets_during_the_grace_period(wh: WebhookHarness, receiver: Receiver) -> None:
    with wh.client() as c:
        hook = c.post("/v1/webhooks", json={"url": receiver.url}).json()
        rotated = c.post(f"/v1/webhooks/{hook['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != hook["secret"]
    wh.publish()
    wait_until(lambda: len(receiver.snapshot()) == 1, what="the delivery")
    got = receiver.snapshot()[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verify(new_secret, got)
    verify(hook["secret"], got)


@pytest.mark.gateway_config(webhook_secret_grace_seconds=0.0)
def test_after_the_grace_period_only_the_new_secret_signs(wh: WebhookHarness, receiver: Receiver) -> None:
    with wh.client() as c:
        hook = c.post("/v1/webhooks", json={"url": receiver.url}).json()
        new_secret = c.post(f"/v1/webhooks/{hook['id']}/rotate-secret").json()["secret"]
    wh.publish()
    wait_until(lambda: len(receiver.snapshot()) == 1, what="the delivery")
    got = receiver.snapshot()[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    verify(new_secret, got)


REFUSED = [
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[::169.254.169.254]/hook",
    "http://[::ffff:0:169.254.169.254]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",
    "http://[2002:a9fe:a9fe::1]/hook",
    "http://[2001:0:4136:e378:8000:63bf:f5ff:fff5]/hook",
    "http://192.168.1.10/hook",
    "http://100.100.100.200/hook",
    "ftp://example.com/hook",
    "http://user:pass@127.0.0.1/hook",
]


def test_private_and_metadata_targets_are_refused(wh: WebhookHarness) -> None:
    with wh.client() as c:
        for url in REFUSED:
            r = c.post("/v1/webhooks", json={"url": url})
            assert r.status_code == 422, (url, r.text)
            assert r.json()["code"] == "validation_failed"
            assert r.json()["errors"][0]["field"] == "url"
        assert c.get("/v1/webhooks").json() == {"items": []}


@pytest.mark.gateway_config(webhook_allowed_subnets=())
def test_a_hostname_resolving_to_loopback_is_refused_unless_allowed(wh: WebhookHarness, receiver: Receiver) -> None:
    with wh.client() as c:
        for url in (receiver.url.replace("127.0.0.1", "localhost"), receiver.url):
            r = c.post("/v1/webhooks", json={"url": url})
            assert r.status_code == 422, r.text
            assert "loopback" in r.json()["detail"]


def test_other_locations_cannot_see_or_touch_a_webhook(wh: WebhookHarness, receiver: Receiver) -> None:
    with wh.client(0) as mine:
        hook = mine.post("/v1/webhooks", json={"url": receiver.url, "format": "clinicsync"}).json()
    assert hook["format"] == "clinicsync"
    with wh.client(1) as theirs:
        assert theirs.get("/v1/webhooks").json() == {"items": []}
        for method, path in [
            ("GET", ""),
            ("DELETE", ""),
            ("POST", "/rotate-secret"),
            ("POST", "/enable"),
            ("GET", "/deliveries"),
            ("POST", "/deliveries/dlv_x/retry"),
            ("POST", "/replay?since=2020-01-01T00:00:00Z"),
        ]:
            r = theirs.request(method, f"/v1/webhooks/{hook['id']}{path}")
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["code"] == "not_found"
    with wh.anonymous() as anon:
        assert anon.get("/v1/webhooks").status_code == 401
    with wh.client(0) as mine:
        assert mine.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
        assert mine.get(f"/v1/webhooks/{hook['id']}").status_code == 404


def test_bad_replay_time_is_a_validation_error(wh: WebhookHarness, receiver: Receiver) -> None:
    with wh.client() as c:
        hook = c.post("/v1/webhooks", json={"url": receiver.url}).json()
        r = c.post(f"/v1/webhooks/{hook['id']}/replay", params={"since": "yesterday"})
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"

"""Every console page renders for a signed-in operator (semantic, labelled, script-free) and sends anyone else to
the sign-in page; the overview's lights follow the EMR connection."""

from __future__ import annotations

import re

import msgspec
import pytest

from gateway.storage.store import Store
from tests.console.conftest import Console, attr, signed_in, tagged
from tests.gateway.conftest import Harness, run_sync
from tests.webhooks.receiver import Receiver

LOOPBACK = pytest.mark.gateway_config(webhook_allowed_subnets=("127.0.0.0/8",))


def subscribe(h: Harness, url: str, site: int = 0) -> str:
    with h.client(site) as api:
        r = api.post("/v1/webhooks", json={"url": url})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def set_credentials(h: Harness, site: int, **changes: str) -> None:
    """What `emr-gateway locations set-credentials --no-check` stores."""
    _, credentials = h.emulator.location_config(h.emulator_url, site)
    value = {**msgspec.json.decode(credentials), **changes}

    async def go() -> None:
        store = await Store.open(h.database_url, h.keyring)
        try:
            await store.set_credentials(h.sites[site].location_id, msgspec.json.encode(value))
        finally:
            await store.close()

    run_sync(go())


def _well_formed(html: str) -> None:
    assert html.startswith("<!doctype html>")
    assert '<html lang="en">' in html
    assert '<main id="main">' in html
    assert "<h1" in html
    assert "<script" not in html
    assert " style=" not in html
    assert "<style" not in html
    for field in re.findall(r"<(?:input|select)\b[^>]*>", html):
        if 'type="hidden"' in field:
            continue
        assert f'<label for="{attr(field, "id")}"' in html, f"unlabelled control {field}"


@LOOPBACK
def test_every_page_renders_for_a_signed_in_operator(console: Console, harness: Harness) -> None:
    receiver = Receiver().start()
    try:
        endpoint_id = subscribe(harness, receiver.url)
        location_id = harness.sites[0].location_id
        pages = [
            "/console",
            f"/console/locations/{location_id}",
            f"/console/locations/{location_id}/webhooks/{endpoint_id}",
            f"/console/locations/{location_id}/webhooks/{endpoint_id}?state=dead",
            "/console/trace",
        ]
        for path in pages:
            r = console.get(path)
            assert r.status_code == 200, (path, r.text)
            assert r.headers["content-type"].startswith("text/html")
            _well_formed(r.text)
            assert tagged(r.text, "operator-email")
            assert tagged(r.text, "sign-out")
        rows = tagged(console.get("/console").text, "location-row")
        assert [attr(row, "data-location-id") for row in rows] == [s.location_id for s in harness.sites]
        page = console.get(f"/console/locations/{location_id}").text
        assert [attr(e, "data-endpoint-id") for e in tagged(page, "endpoint")] == [endpoint_id]
        assert tagged(page, "sync-now")
        assert tagged(page, "verify")
        assert tagged(page, "issue-key")
        assert "<title id=" in page
        assert "<desc id=" in page
        assert console.get("/console/locations/loc_nope").status_code == 404
        assert console.get(f"/console/locations/{location_id}/webhooks/wh_nope").status_code == 404
        missing = console.get("/console/no/such/page")
        assert missing.status_code == 404
        assert "content-security-policy" in missing.headers
    finally:
        receiver.stop()


def test_without_a_session_every_page_sends_to_sign_in(harness: Harness) -> None:
    location_id = harness.sites[0].location_id
    c = Console(harness)
    for path in ("/console", f"/console/locations/{location_id}", "/console/trace"):
        r = c.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/console/sign-in")
    assert c.get(f"/console/locations/{location_id}").headers["location"] == (
        f"/console/sign-in?next=/console/locations/{location_id}"
    )
    for path in (f"/console/locations/{location_id}/keys", f"/console/locations/{location_id}/sync", "/console/trace"):
        r = c.post(path, csrf="anything")
        assert (r.status_code, r.headers["location"]) == (303, "/console/sign-in"), path
    # A forged cookie opens nothing.
    c.http.cookies.set("egw_console", "forged-token-" + "x" * 30, domain="127.0.0.1", path="/console")
    assert c.get("/console").status_code == 303
    c.close()


def test_sign_in_returns_to_the_page_asked_for_and_never_elsewhere(console: Console, harness: Harness) -> None:
    location_id = harness.sites[0].location_id
    other = Console(harness)
    page = other.get(f"/console/sign-in?next=/console/locations/{location_id}")
    assert f'name="next" value="/console/locations/{location_id}"' in page.text
    r = other.post(
        "/console/sign-in",
        {"email": "ops@clinic.example", "password": "correct horse battery staple", "next": "//evil.example/x"},
    )
    assert (r.status_code, r.headers["location"]) == (303, "/console")
    other.close()


def test_the_overview_shows_a_bad_credential_as_red_with_its_reason(harness: Harness) -> None:
    set_credentials(harness, 1, api_key="revoked-key-au1")
    console = signed_in(harness)
    html = console.get("/console").text
    [_good, bad] = tagged(html, "location-row")
    rows = html.split('data-testid="location-row"')[1:]
    assert 'data-testid="health" data-status="green"' in rows[0]
    assert 'data-testid="health" data-status="red"' in rows[1]
    assert "emr_auth_failed" in rows[1]
    assert 'data-testid="health-reason"' in rows[1]
    assert attr(bad, "data-location-id") == harness.sites[1].location_id
    console.close()

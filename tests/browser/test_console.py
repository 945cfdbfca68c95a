"""The operator console in a real browser (headless Chromium), clicked through as an operator would: sign in, a red
connection turned green by `locations set-credentials`, a dead delivery replayed, a key issued and revoked, a patient
traced. Each page is checked with axe-core on the way (no serious or critical violation)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from playwright.sync_api import Browser, Locator, Page, Request, expect

from tests.browser.conftest import MASTER_KEY
from tests.browser.support import assert_accessible, run_cli, sign_in
from tests.console.conftest import EMAIL, PASSWORD
from tests.console.test_actions import _deliver
from tests.console.test_pages import LOOPBACK, subscribe
from tests.gateway.conftest import Harness
from tests.sync.support import ClinicScreens, Sync, day_ahead, local
from tests.webhooks.receiver import Answer, Receiver


def _row(page: Page, testid: str, **attrs: str) -> Locator:
    selector = f'[data-testid="{testid}"]' + "".join(f'[data-{k.replace("_", "-")}="{v}"]' for k, v in attrs.items())
    return page.locator(selector)


def test_an_operator_signs_in_through_the_form_and_out_again(page: Page, operator: Harness) -> None:
    base = operator.base_url
    page.goto(f"{base}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in(\?next=/console)?$"))
    assert_accessible(page)
    page.get_by_test_id("sign-in-email").fill(EMAIL)
    page.get_by_test_id("sign-in-password").fill("not the password at all")
    page.get_by_test_id("sign-in-submit").click()
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("wrong")
    expect(page.get_by_test_id("sign-in-email")).to_have_value(EMAIL)  # kept; the password is not
    expect(page.get_by_test_id("sign-in-password")).to_have_value("")
    assert_accessible(page)  # with the error shown
    page.get_by_test_id("sign-in-password").fill(PASSWORD)
    page.get_by_test_id("sign-in-submit").click()
    expect(page).to_have_url(f"{base}/console")
    expect(page.get_by_test_id("operator-email")).to_have_text(EMAIL)
    expect(page.get_by_test_id("location-row")).to_have_count(len(operator.sites))
    cookie = next(c for c in page.context.cookies() if c["name"] == "egw_console")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")

    page.get_by_test_id("nav-trace").click()
    expect(page).to_have_url(f"{base}/console/trace")
    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(f"{base}/console/sign-in")
    page.goto(f"{base}/console/trace")  # the session is gone
    expect(page).to_have_url(f"{base}/console/sign-in?next=/console/trace")


def test_the_console_works_with_scripts_turned_off(browser: Browser, operator: Harness) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, operator.base_url)
        expect(page.get_by_test_id("location-row")).to_have_count(len(operator.sites))
        page.get_by_test_id("location-link").first.click()
        page.get_by_test_id("sync-now").click()
        expect(page.get_by_test_id("result")).to_have_attribute("data-outcome", "ok")
    finally:
        context.close()


def test_a_red_connection_turns_green_after_set_credentials(page: Page, operator: Harness) -> None:
    h = operator
    location_id = h.sites[1].location_id
    _, credentials = h.emulator.location_config(h.emulator_url, 1)
    good = msgspec.json.decode(credentials)
    bad = json.dumps({**good, "api_key": "revoked-key-au1"})
    set_credentials = ("locations", "set-credentials", location_id, "--credentials-file", "-")
    broken = run_cli(h, MASTER_KEY, *set_credentials, "--no-check", stdin=bad)
    assert broken.returncode == 0, broken.stderr

    sign_in(page, h.base_url)
    row = _row(page, "location-row", location_id=location_id)
    expect(row.get_by_test_id("health")).to_have_attribute("data-status", "red")
    expect(row.get_by_test_id("health-reason")).to_contain_text("refused the API key")
    expect(row).to_contain_text("emr_auth_failed")
    expect(_row(page, "location-row", location_id=h.sites[0].location_id).get_by_test_id("health")).to_have_attribute(
        "data-status", "green"
    )
    assert_accessible(page)  # the overview, one light red

    # The CLI checks the new credentials against the EMR (no --no-check) before storing them.
    fixed = run_cli(h, MASTER_KEY, *set_credentials, stdin=json.dumps(good))
    assert fixed.returncode == 0, fixed.stderr
    row.get_by_test_id("location-link").click()
    expect(page).to_have_url(f"{h.base_url}/console/locations/{location_id}")
    page.get_by_test_id("verify").click()  # proves the stored credentials and re-checks now, not within 30 s
    result = page.get_by_test_id("result")
    expect(result).to_have_attribute("data-kind", "verify")
    expect(result).to_have_attribute("data-outcome", "ok")
    expect(page.get_by_test_id("health")).to_have_attribute("data-status", "green")
    assert_accessible(page)  # a location page with Verify's report
    page.get_by_test_id("nav-overview").click()
    expect(_row(page, "location-row", location_id=location_id).get_by_test_id("health")).to_have_attribute(
        "data-status", "green"
    )


@LOOPBACK
def test_a_dead_delivery_is_replayed_from_the_console_once_the_receiver_recovers(page: Page, operator: Harness) -> None:
    h = operator
    receiver = Receiver().start()
    receiver.answer = Answer(status=500, body=b"receiver says: database down")
    clinic = ClinicScreens(h)
    try:
        endpoint_id = subscribe(h, receiver.url)
        location_id = h.sites[0].location_id
        sign_in(page, h.base_url)
        _row(page, "location-row", location_id=location_id).get_by_test_id("location-link").click()
        page.get_by_test_id("sync-now").click()  # the first poll sets the change feed's cursor
        expect(page.get_by_test_id("result")).to_have_attribute("data-outcome", "ok")
        clinic.book(local(day_ahead(), 10))
        page.get_by_test_id("sync-now").click()
        expect(page.get_by_test_id("result")).to_contain_text("2 event(s) emitted")
        expect(page.get_by_test_id("sync-run")).to_have_count(2)
        expect(page.get_by_test_id("endpoints")).to_be_visible()
        assert_accessible(page)  # a location page with sync runs, an endpoint and Sync now's result
        assert _deliver(h) == 2  # a worker's pass: one attempt each, then dead

        page.goto(f"{h.base_url}/console/locations/{location_id}")
        expect(page.get_by_test_id("endpoints")).to_be_visible()
        page.get_by_test_id("endpoint-link").click()
        log = f"{h.base_url}/console/locations/{location_id}/webhooks/{endpoint_id}"
        expect(page).to_have_url(log)
        deliveries = page.get_by_test_id("delivery")
        expect(deliveries).to_have_count(2)
        for row in deliveries.all():
            expect(row).to_have_attribute("data-state", "dead")
        first = deliveries.first
        first.get_by_text("Show the answer").click()
        expect(first.get_by_test_id("response-body")).to_have_text("receiver says: database down")
        expect(first.get_by_test_id("status-code")).to_have_text("500")
        assert_accessible(page)  # the delivery log, an answer open

        receiver.answer = Answer(status=200, body=b"thanks")
        delivery_id = first.get_attribute("data-delivery-id")
        first.get_by_test_id("retry-delivery").click()
        expect(page.get_by_test_id("result")).to_have_attribute("data-kind", "retry")
        expect(_row(page, "delivery", delivery_id=str(delivery_id))).to_have_attribute("data-state", "pending")
        assert _deliver(h) == 1
        page.goto(log)  # not reload(): that would post the retry again
        expect(_row(page, "delivery", delivery_id=str(delivery_id))).to_have_attribute("data-state", "succeeded")

        # The other one, and the first again: replay everything since an hour ago (wall time in the location's zone).
        zone = Sync(h).location().time_zone
        since = (datetime.now(ZoneInfo(zone)) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        form = page.get_by_test_id("replay-form")
        form.get_by_test_id("replay-since").fill(since)
        form.get_by_test_id("replay").click()
        expect(page.get_by_test_id("result")).to_contain_text("2 event(s) queued again")
        assert _deliver(h) == 2
        page.get_by_test_id("delivery-filter-state").select_option("succeeded")
        page.get_by_test_id("delivery-filter-apply").click()
        expect(page).to_have_url(re.compile(r"\?state=succeeded$"))
        expect(page.get_by_test_id("delivery")).to_have_count(2)
        for row in page.get_by_test_id("delivery").all():
            expect(row).to_have_attribute("data-state", "succeeded")
        assert [r.status for r in receiver.snapshot()] == [500, 500, 200, 200, 200]
        assert len({r.headers["webhook-id"] for r in receiver.snapshot()}) == 2  # the same two events
    finally:
        clinic.close()
        receiver.stop()


@pytest.mark.gateway_config(auth_cache_seconds=0)
def test_a_key_is_issued_shown_once_and_revoked(page: Page, operator: Harness) -> None:
    h = operator
    location_id = h.sites[0].location_id
    sign_in(page, h.base_url)
    page.goto(f"{h.base_url}/console/locations/{location_id}")
    page.get_by_test_id("issue-key").click()
    expect(page.get_by_test_id("result")).to_have_attribute("data-kind", "key")
    key = page.get_by_test_id("new-key").input_value()
    assert key.startswith("egw_live_")
    assert_accessible(page)  # the location page, a new key shown
    with h.anonymous() as api:
        assert api.get("/v1/practitioners", headers={"x-api-key": key}).status_code == 200

    page.goto(f"{h.base_url}/console/locations/{location_id}")
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert key not in page.content()
    active = [row for row in page.get_by_test_id("api-key").all() if row.get_attribute("data-revoked") == "false"]
    prefix = next(p for row in active if (p := row.get_attribute("data-prefix")) and key.startswith(p))
    row = _row(page, "api-key", prefix=prefix)
    row.get_by_test_id("revoke-key").click()
    expect(page.get_by_test_id("result")).to_have_attribute("data-outcome", "ok")
    revoked = _row(page, "api-key", prefix=prefix)
    expect(revoked).to_have_attribute("data-revoked", "true")
    expect(revoked).to_contain_text("revoked")
    expect(revoked.get_by_test_id("revoke-key")).to_have_count(0)
    with h.anonymous() as api:
        assert api.get("/v1/practitioners", headers={"x-api-key": key}).status_code == 401
        assert api.get("/v1/practitioners", headers={"x-api-key": h.sites[0].api_key}).status_code == 200


@LOOPBACK
def test_a_patient_is_traced_by_emr_id_and_by_email_without_either_in_a_url(page: Page, operator: Harness) -> None:
    h = operator
    receiver = Receiver().start()
    clinic = ClinicScreens(h)
    try:
        patient_id = clinic.patient_id
        email = clinic.get(f"/patients/{patient_id}")["email"]
        subscribe(h, receiver.url)
        sync = Sync(h)
        sync.tick()
        clinic.book(local(day_ahead(), 10))
        sync.tick()
        _deliver(h)
        urls: list[str] = []

        def seen(request: Request) -> None:
            urls.append(request.url)

        page.on("request", seen)
        sign_in(page, h.base_url)
        page.get_by_test_id("nav-trace").click()
        for by, value in (("trace-by-id", patient_id), ("trace-by-email", email)):
            form = page.get_by_test_id("trace-form")
            form.get_by_test_id("trace-location").select_option(h.sites[0].location_id)
            form.get_by_test_id(by).check()
            form.get_by_test_id("trace-value").fill(value)
            form.get_by_test_id("trace-submit").click()
            expect(page).to_have_url(f"{h.base_url}/console/trace")
            expect(page.get_by_test_id("trace")).to_have_attribute("data-patient-id", patient_id)
            events = page.get_by_test_id("trace-event")
            expect(events).to_have_count(2)
            assert sorted(str(e.get_attribute("data-event-type")) for e in events.all()) == [
                "appointment.booked",
                "patient.updated",
            ]
            expect(page.get_by_test_id("trace-delivery")).to_have_count(2)
            for delivery in page.get_by_test_id("trace-delivery").all():
                expect(delivery).to_have_attribute("data-state", "succeeded")
            assert_accessible(page)  # the trace page, a patient found
        expect(page.get_by_test_id("trace-matches")).to_be_visible()  # by e-mail: who the EMR matched
        assert urls
        for url in [*urls, page.url]:
            assert email not in url
            assert email.split("@")[0] not in url
    finally:
        clinic.close()
        receiver.stop()

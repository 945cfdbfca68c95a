"""ClinicSync's header-less GoHighLevel URLs, answered under the location's GHL path token: the URLs the CLI prints
take the documented bodies with no header at all, and a wrong or missing token is 401."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from gateway.cli import main
from gateway.ghl.store import revoke_token
from gateway.storage.store import Store
from tests.compat.conftest import emulator_appointment, future
from tests.compat.test_clinicsync_routes import FLOWS, _appointment_id, _body, _instant
from tests.gateway.conftest import Harness, run_sync
from tests.ghl.conftest import new_token

# Every URL the seed document tells GHL users to paste with no headers (Nookal's require x-api-key there too).
THEIR_GHL_URLS = {
    "jane-ghl": "https://jane-api.clinikoconnect.com",
    "cliniko-ghl": "https://cliniko-api.clinikoconnect.com",
    "simplepractice": "https://sp-api.clinikoconnect.com",
    "practicebetter": "https://pb-api.clinicsyncpro.com",
}


def _issue(h: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    monkeypatch.setenv("EGW_DATABASE_URL", h.database_url)
    monkeypatch.delenv("EGW_MASTER_KEY", raising=False)
    location = h.sites[0].location_id
    assert main(["ghl-tokens", "issue", location, "--base-url", h.base_url + "/", "--json"]) == 0
    issued: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert main(["ghl-tokens", "issue", location, "--base-url", "https://gw.example"]) == 0
    human = capsys.readouterr().out
    assert "https://cliniko-api.clinikoconnect.com/bookAppt" in human
    assert "https://gw.example/ghl/v1/egw_ghl_" in human
    return issued


def test_the_printed_urls_replay_every_documented_ghl_flow_with_no_header(
    emr_harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = emr_harness
    caplog.set_level(logging.INFO)
    issued = _issue(h, monkeypatch, capsys)
    token = issued["token"]
    pasted: dict[str, str] = issued["clinicsync_urls"]
    expected = {host + step.path for flow, host in THEIR_GHL_URLS.items() for step in FLOWS[flow]}
    assert set(pasted) == expected
    assert all(url.startswith(f"{h.base_url}/ghl/v1/{token}/") for url in pasted.values())

    with h.anonymous() as anonymous, h.client() as client:
        for flow, host in THEIR_GHL_URLS.items():
            emr_id: str | None = None
            for step in FLOWS[flow]:
                answer = anonymous.post(pasted[host + step.path], json=_body(step.body, emr_id))
                assert answer.status_code == 200, f"{flow} {step.path}: {answer.text}"
                data = answer.json()
                assert step.keys <= data.keys(), f"{flow} {step.path}: {sorted(data)}"
                assert {k: data[k] for k in step.values} == step.values, f"{flow} {step.path}"
                found = _appointment_id(data)
                emr_id = emr_id or found
                start, cancelled = emulator_appointment(h, client, found)
                assert cancelled == (step.start is None), f"{flow} {step.path}"
                if step.start is not None:
                    assert start == _instant(step.start), f"{flow} {step.path}: {start}"

        missing = anonymous.post(f"/ghl/v1/{token}/cancel_appt", json={"appointmentId": "never-booked"})
        assert missing.status_code == 404
        assert token not in missing.text
        assert missing.json()["instance"] == "/ghl/v1/{token}/cancel_appt"

    assert "/ghl/v1/{token}/bookAppt" in caplog.text  # the access log names the route template
    assert token not in caplog.text
    assert token[len("egw_ghl_") :] not in caplog.text


def test_a_retry_books_once_whichever_way_it_comes_and_bad_tokens_are_401(emr_harness: Harness) -> None:
    h = emr_harness
    token = new_token(h)
    body = _body("cliniko_book.json", None)
    # Practice Better's GHL body: GHL's calendar webhook, with serviceName/consultantEmail in customData.
    pb_body: dict[str, Any] = {
        **body,
        "customData": {"serviceName": "Initial Assessment", "consultantEmail": "ben.carter@example.com"},
        "calendar": {
            **body["calendar"],
            "appointmentId": "ghl-pb-1",
            "startTime": future("2024-08-02T14:00:00Z"),
            "endTime": None,
        },
    }
    with h.anonymous() as anonymous, h.client() as client:
        first = anonymous.post(f"/ghl/v1/{token}/bookAppt", json=body)
        again = anonymous.post(f"/ghl/v1/{token}/bookAppt", json=body)
        header = client.post("/bookAppt", json=body)
        assert first.status_code == again.status_code == header.status_code == 200, first.text
        ids = {r.json()["appointment"]["id"] for r in (first, again, header)}
        assert len(ids) == 1
        patient = first.json()["appointment"]["patient_id"]
        mine = client.get("/v1/appointments", params={"patient_id": patient}).json()["items"]
        assert [a["id"] for a in mine if a["status"] == "booked"] == list(ids)

        session = anonymous.post(f"/ghl/v1/{token}/bookSession", json=pb_body)
        assert session.status_code == 200, session.text
        assert client.post("/bookSession", json=pb_body).json() == session.json()
        moved = anonymous.post(
            f"/ghl/v1/{token}/update_appt",
            json={"calendar": {"appointmentId": "abc123-xyz", "startTime": future("2024-08-02T11:00:00Z")}},
        )
        assert moved.status_code == 200
        assert moved.json()["appointment"]["id"] in ids

        ghl_routes = ["/bookAppt", "/update_appt", "/cancel_appt", "/sp/appointments/book", "/bookSession"]
        unknown = "egw_ghl_" + "a" * 52
        for path in ghl_routes:
            refused = anonymous.post(f"/ghl/v1/{unknown}{path}", json=body)
            assert refused.status_code == 401, path
            assert unknown not in refused.text
        assert anonymous.post("/bookAppt", json=body).status_code == 401  # no token and no key
        assert run_sync(_revoke(h, token[:16])) == 1
        # Revoked elsewhere (the CLI, another replica): refused within the auth cache's 5 s, on this replica too.
        revoked_at = time.monotonic()
        while anonymous.post(f"/ghl/v1/{token}/cancel_appt", json={"appointmentId": "abc123-xyz"}).status_code != 401:
            assert time.monotonic() - revoked_at < 5.5, "a revoked token still works after 5 s"
            time.sleep(0.2)


async def _revoke(h: Harness, prefix: str) -> int:
    store = await Store.open(h.database_url, h.keyring)
    try:
        return await revoke_token(store, prefix)
    finally:
        await store.close()

"""`emr-gateway ghl-tokens issue|list|revoke` and `ghl-link`, against the live harness: what the operator sees."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.cli import main
from tests.gateway.conftest import Harness
from tests.ghl.conftest import workflow_body


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokens_are_issued_listed_revoked_and_locations_linked(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EGW_DATABASE_URL", harness.database_url)
    monkeypatch.delenv("EGW_MASTER_KEY", raising=False)
    location = harness.sites[0].location_id
    code, out, _ = cli(capsys, "ghl-tokens", "issue", location, "--base-url", "https://gw.example/", "--json")
    assert code == 0
    issued = json.loads(out)
    token = issued["token"]
    assert issued["urls"]["book"] == f"https://gw.example/ghl/v1/{token}/appointments/book"

    code, out, _ = cli(capsys, "ghl-tokens", "list", location)
    assert code == 0
    assert issued["prefix"] in out
    assert token not in out
    assert "active" in out

    d = datetime.now(ZoneInfo("America/Chicago")).date() + timedelta(days=3)
    body = workflow_body("cli-1", f"{d}T10:00:00", None)
    with harness.anonymous() as c:
        assert c.post(f"/ghl/v1/{token}/appointments/book", json=body).status_code == 201
        assert cli(capsys, "ghl-tokens", "revoke", issued["prefix"])[0] == 0
        # The CLI is another process: the gateway's auth cache sees the revocation within 5 s.
        revoked_at = time.monotonic()
        while c.post(f"/ghl/v1/{token}/appointments/book", json=body).status_code != 401:
            assert time.monotonic() - revoked_at < 5.5
            time.sleep(0.2)
    assert cli(capsys, "ghl-tokens", "revoke", issued["prefix"])[0] == 1

    assert cli(capsys, "ghl-link", location, "ghl-loc-1")[0] == 0
    code, _, err = cli(capsys, "ghl-link", harness.sites[1].location_id, "ghl-loc-1")
    assert code == 1
    assert location in err
    code, out, _ = cli(capsys, "locations", "list", "--json")
    assert {loc["id"]: loc["ghl_location_id"] for loc in json.loads(out)}[location] == "ghl-loc-1"
    assert cli(capsys, "ghl-link", location, "--clear")[0] == 0

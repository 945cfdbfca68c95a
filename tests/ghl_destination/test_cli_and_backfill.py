"""`emr-gateway ghl connect|calendars|sync|status|replay|disconnect` against the live harness and GHL emulator,
the resumable backfill, and what a field GHL silently drops looks like in the log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.crypto import Keyring, generate_key
from gateway.storage import ghl_destination as db
from tests.gateway.conftest import Harness
from tests.ghl_destination.support import GhlSide
from tests.sync.support import day_ahead, local


@pytest.fixture
def ghl(harness: Harness) -> Iterator[GhlSide]:
    side = GhlSide(harness)
    yield side
    side.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


MASTER_KEY = generate_key("k1")


@pytest.fixture
def keyring() -> Keyring:
    """The harness's master key, known here so the CLI (another "process") opens the same secrets."""
    return Keyring.parse(MASTER_KEY)


@pytest.fixture
def env(ghl: GhlSide, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EGW_DATABASE_URL", ghl.h.database_url)
    monkeypatch.setenv("EGW_MASTER_KEY", MASTER_KEY)


def test_the_cli_connects_maps_backfills_and_disconnects(
    ghl: GhlSide, tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    location = ghl.location_id
    # Patients the clinic already has: booked before the gateway was connected to GHL.
    ghl.poll()
    for hour in (9, 10, 11):
        ghl.clinic.book(local(day_ahead(), hour))
    ghl.poll()

    bad = tmp_path / "bad-token"
    bad.write_text("pit-not-a-token\n")
    code, _, err = cli(
        capsys,
        "ghl",
        "connect",
        location,
        "--ghl-location-id",
        ghl.seed.location_id,
        "--token-file",
        str(bad),
        "--base-url",
        ghl.url,
    )
    assert code == 1
    assert "ghl_auth_failed" in err
    assert "pit-not-a-token" not in err

    token = tmp_path / "token"
    token.write_text(ghl.seed.token + "\n")
    code, out, _ = cli(
        capsys,
        "ghl",
        "connect",
        location,
        "--ghl-location-id",
        ghl.seed.location_id,
        "--token-file",
        str(token),
        "--base-url",
        ghl.url,
        "--lapsed-days",
        "90",
        "--json",
    )
    assert code == 0
    connected = json.loads(out)
    assert len(connected["fields_created"]) == 16
    assert connected["settings"]["lapsed_days"] == 90
    assert ghl.seed.token not in out

    code, out, _ = cli(capsys, "ghl", "calendars", location, "--mode", "appointments", "--auto", "--json")
    assert code == 0
    assert len(json.loads(out)["calendars"]) == 2  # Alice and Ben, matched by name

    code, out, _ = cli(capsys, "ghl", "sync", location, "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["finished"] is True
    assert (lines[-1]["done"], lines[-1]["pushed"], lines[-1]["failed"]) == (1, 1, 0)  # one patient
    assert len(ghl.contacts()) == 1
    assert len(ghl.events()) == 3

    requests = ghl.emulator.traffic.requests
    code, out, _ = cli(capsys, "ghl", "sync", location, "--json", "--restart")
    assert json.loads(out.splitlines()[-1])["skipped"] == 1
    assert ghl.emulator.traffic.requests == requests  # everything unchanged: not one GHL call

    code, out, _ = cli(capsys, "ghl", "status", location, "--json")
    status = json.loads(out)
    assert (status["status"], status["enabled"]) == ("ok", True)
    assert status["queue"].get("pushed", 0) >= 1

    assert cli(capsys, "ghl", "disconnect", location)[0] == 0
    ghl.clinic.book(local(day_ahead(2), 15))
    ghl.poll()
    assert ghl.push() == 0  # disconnected: nothing is queued for GHL
    with ghl.h.client() as c:
        assert c.get("/v1/health").json()["ghl"]["status"] == "disconnected"
    code, out, _ = cli(capsys, "ghl", "replay", location, "--since", "2000-01-01T00:00:00Z", "--json")
    assert code == 0
    assert json.loads(out)["queued"] == 0


def test_a_backfill_resumes_after_the_last_patient_it_finished(ghl: GhlSide) -> None:
    from gateway.ghl.destination.backfill import backfill

    ghl.poll()
    patients = [ghl.clinic.patient_id]
    for n in range(3):
        r = ghl.clinic.http.post(
            "/patients", json={"first_name": f"P{n}", "last_name": "Backfill", "email": f"p{n}@example.com"}
        )
        r.raise_for_status()
        patients.append(str(r.json()["id"]))
    for n, patient_id in enumerate(patients):
        ghl.clinic.patient_id = patient_id
        ghl.clinic.book(local(day_ahead(), 9 + n))
    ghl.poll()
    ghl.connect()
    first = sorted(patients)[0]
    ghl.set_connection(backfill_after=first)  # a crash after the first patient

    progress = ghl.run(lambda rt: backfill(rt, ghl.location_id))
    assert progress.resumed_after == first
    assert (progress.total, progress.done, progress.pushed) == (4, 4, 3)
    assert len(ghl.contacts()) == 3
    progress = ghl.run(lambda rt: backfill(rt, ghl.location_id))
    assert (progress.done, progress.pushed) == (4, 1)  # the one skipped by the crash; the rest unchanged
    assert len(ghl.contacts()) == 4
    assert ghl.run(lambda rt: db.get_connection(rt.store, ghl.location_id)).backfill_after is None  # type: ignore[union-attr]


def test_a_field_ghl_drops_is_reported_by_name_and_never_called_pushed(ghl: GhlSide) -> None:
    """The agency made its own "EMR Next Practitioner" as a number: GHL silently drops the text written to it."""
    r = ghl.api(
        "POST",
        f"/locations/{ghl.seed.location_id}/customFields",
        json={"name": "EMR Next Practitioner", "dataType": "NUMERICAL", "model": "contact"},
    )
    assert r.status_code in (200, 201), r.text
    field_id = r.json()["customField"]["id"]
    ghl.connect()
    ghl.poll()
    ghl.clinic.book(local(day_ahead(), 10))
    ghl.poll()
    ghl.push()
    with ghl.h.client() as c:
        items = c.get("/v1/ghl/sync-log").json()["items"]
    failed = next(i for i in items if i["event_type"] == "patient.updated")
    assert failed["state"] in ("failed", "dead")  # retried on the schedule, then dead-lettered: never "pushed"
    assert failed["error_code"] == "ghl_field_dropped"
    assert field_id in failed["error"]
    assert "Alice" not in failed["error"]

"""`emr-gateway locations verify` and the check `locations add` runs, against every EMR's emulator, as an operator
runs them: the CLI's own entry point, a real database, the emulator over loopback."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from adapters.emulation import Emulator, Fault, FaultKind, ServerThread, default_seed
from adapters.emulators import EMULATORS
from gateway.cli import main
from gateway.crypto import Keyring, generate_key
from gateway.storage import contract_changes
from gateway.storage.store import Store
from gateway.times import now_utc
from tests.contract.test_verified_writes import REQUIRED_PRACTITIONER_FIELD
from tests.gateway.conftest import run_sync


@pytest.fixture(params=sorted(EMULATORS))
def emulator(request: pytest.FixtureRequest) -> Iterator[tuple[Emulator, str]]:
    served = EMULATORS[request.param](default_seed())
    server = ServerThread(served.app())
    try:
        yield served, server.start()
    finally:
        server.stop()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [k for k in os.environ if k.startswith("EGW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EGW_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("EGW_MASTER_KEY", generate_key())
    assert main(["migrate"]) == 0
    return tmp_path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _add(capsys: pytest.CaptureFixture[str], env: Path, emulator: Emulator, base: str) -> str:
    settings, credentials = emulator.location_config(base)
    creds = env / "creds.json"
    creds.write_bytes(credentials)
    # SimplePractice's offices carry no zone: an operator passes --time-zone there (the others read the EMR's).
    zone = ["--time-zone", default_seed().time_zone] if emulator.slug == "simplepractice" else []
    code, out, err = _cli(
        capsys, "locations", "add", "--emr", emulator.slug, "--name", "Verified",
        "--settings", settings.decode(), "--credentials-file", str(creds), "--json", *zone,
    )  # fmt: skip
    assert code == 0, err
    return str(json.loads(out)["id"])


def test_add_runs_verify_and_verify_reports_every_probe(
    env: Path, emulator: tuple[Emulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    served, base = emulator
    location_id = _add(capsys, env, served, base)

    code, out, err = _cli(capsys, "locations", "verify", location_id, "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True
    assert report["location_id"] == location_id
    assert report["emr"] == served.slug
    names = [p["name"] for p in report["probes"]]
    assert names[0] == "authentication"
    assert {"practitioners", "services"} <= set(names)
    assert all(p["status"] in ("ok", "skipped") for p in report["probes"]), report["probes"]

    code, out, _ = _cli(capsys, "locations", "verify", location_id)
    assert code == 0
    assert out.splitlines()[0].endswith(": ok")


def test_verify_names_the_field_an_emr_stopped_sending_and_health_remembers_it(
    env: Path, emulator: tuple[Emulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    served, base = emulator
    location_id = _add(capsys, env, served, base)
    field = REQUIRED_PRACTITIONER_FIELD[served.slug]
    fault = Fault(kind=FaultKind.RESHAPE, drop_field=field, count=1000)
    httpx.post(f"{base}/_emulator/faults", content=msgspec.json.encode(fault)).raise_for_status()

    code, out, err = _cli(capsys, "locations", "verify", location_id, "--json")
    assert code == 1, err
    report = json.loads(out)
    assert report["ok"] is False
    broken = [p for p in report["probes"] if p["field_path"]]
    assert any(p["field_path"].endswith(field) and p["seen"] == "missing required field" for p in broken), broken

    code, out, _ = _cli(capsys, "locations", "verify", location_id)
    assert code == 1
    assert "FAILED" in out.splitlines()[0]
    assert "no longer decodes at " in out
    assert field in out

    async def seen() -> list[str]:
        store = await Store.open(os.environ["EGW_DATABASE_URL"], Keyring.from_env())
        try:
            found = await contract_changes.recent(store, location_id, now_utc() - dt.timedelta(hours=1))
            return [c.path for c in found]
        finally:
            await store.close()

    assert any(path.endswith(field) for path in run_sync(seen()))


def test_add_refuses_an_account_that_fails_verify(
    env: Path, emulator: tuple[Emulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    served, base = emulator
    settings, credentials = served.location_config(base)
    creds = env / "creds.json"
    creds.write_bytes(credentials)
    fault = Fault(kind=FaultKind.RESHAPE, drop_field=REQUIRED_PRACTITIONER_FIELD[served.slug], count=1000)
    httpx.post(f"{base}/_emulator/faults", content=msgspec.json.encode(fault)).raise_for_status()
    code, out, err = _cli(
        capsys, "locations", "add", "--emr", served.slug, "--name", "Broken", "--time-zone", "Australia/Melbourne",
        "--settings", settings.decode(), "--credentials-file", str(creds),
    )  # fmt: skip
    assert code == 1
    assert "did not pass `locations verify` (nothing was stored)" in err
    code, out, _ = _cli(capsys, "locations", "list", "--json")
    assert json.loads(out) == []

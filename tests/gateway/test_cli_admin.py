"""The admin CLI end to end, as an operator runs it: a real subprocess, `--json` output, secrets kept off argv."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import ServerThread, default_seed
from gateway.cli import main
from gateway.crypto import Keyring
from gateway.storage.migrate import head_revision
from gateway.storage.store import Store

CLINIKO_SECRET = "MS0xNzAwMDAwMDAwLXNlY3JldC1jbGluaWtvLWtleQ-au1"
CREDENTIALS = json.dumps({"api_key": CLINIKO_SECRET, "user_agent_email": "ops@example.com"})
SETTINGS = '{"business_id": "1"}'


def _entrypoint() -> list[str]:
    script = Path(sys.executable).with_name("emr-gateway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


class Operator:
    """Runs `emr-gateway` with one environment and remembers every argv and output, to search them for secrets."""

    def __init__(self, database_url: str, master_key: str, workdir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EGW_")}
        self.env.update({"EGW_DATABASE_URL": database_url, "EGW_MASTER_KEY": master_key})
        self.workdir = workdir
        self.transcript: list[str] = []

    def run(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
        argv = [*_entrypoint(), *args, "--json"]
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.workdir,
            timeout=60,
            check=False,
        )
        self.transcript += [" ".join(argv), done.stdout, done.stderr]
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return json.loads(done.stdout)


def _key_entry(kid: str) -> tuple[str, bytes]:
    raw = secrets.token_bytes(32)
    return f"{kid}:{base64.b64encode(raw).decode()}", raw


async def _credentials(database_url: str, keyring: Keyring, location_id: str) -> bytes:
    store = await Store.open(database_url, keyring)
    try:
        return await store.get_credentials(location_id)
    finally:
        await store.close()


async def _authenticate(database_url: str, secret: str) -> str | None:
    store = await Store.open(database_url, Keyring.generate())
    try:
        found = await store.authenticate(secret)
        return found.location_id if found else None
    finally:
        await store.close()


async def test_operator_adds_locations_issues_and_revokes_keys_and_rotates_the_master_key(
    database_url: str, tmp_path: Path
) -> None:
    old_entry, _ = _key_entry("k1")
    op = Operator(database_url, old_entry, tmp_path)
    assert op.run("migrate")["revision"] == head_revision()

    creds_file = tmp_path / "cliniko.json"
    creds_file.write_text(CREDENTIALS)
    north = op.run(
        "locations", "add", "--emr", "cliniko", "--name", "North", "--settings", SETTINGS,
        "--credentials-file", str(creds_file), "--time-zone", "Australia/Sydney", "--no-check",
    )  # fmt: skip
    south = op.run(
        "locations", "add", "--emr", "cliniko", "--name", "South", "--settings", SETTINGS,
        "--credentials-file", "-", "--time-zone", "Australia/Perth", "--no-check",
        stdin=CREDENTIALS,
    )  # fmt: skip
    assert north["id"].startswith("loc_")
    assert north["settings"] == {"business_id": "1"}
    assert (north["time_zone"], south["time_zone"]) == ("Australia/Sydney", "Australia/Perth")
    listed = op.run("locations", "list")
    assert [loc["name"] for loc in listed] == ["North", "South"]

    live = op.run("keys", "issue", north["id"])
    test = op.run("keys", "issue", north["id"], "--test")
    assert live["key"].startswith("egw_live_")
    assert test["key"].startswith("egw_test_")
    assert test["test"] is True
    assert await _authenticate(database_url, live["key"]) == north["id"]

    keys = op.run("keys", "list", north["id"])
    assert {k["prefix"] for k in keys} == {live["prefix"], test["prefix"]}
    assert all("key" not in k for k in keys)
    assert op.run("keys", "revoke", live["prefix"]) == {"prefix": live["prefix"], "revoked": 1}
    assert await _authenticate(database_url, live["key"]) is None
    assert await _authenticate(database_url, test["key"]) == north["id"]

    new_entry, new_raw = _key_entry("k2")
    rotated = op.run("rotate-master-key", env={"EGW_MASTER_KEY": f"{new_entry},{old_entry}"})
    assert rotated == {"key_id": "k2", "reencrypted": 2}
    only_new = Keyring([("k2", new_raw)])
    assert await _credentials(database_url, only_new, north["id"]) == CREDENTIALS.encode()

    # Secrets: the EMR key and master keys never on argv or in any output; each API key only in its own issue.
    text = "\n".join(op.transcript)
    for secret in (CLINIKO_SECRET, old_entry.split(":")[1], new_entry.split(":")[1]):
        assert secret not in text
    assert text.count(live["key"]) == 1
    assert text.count(test["key"]) == 1


@pytest.fixture
def cliniko_url() -> Iterator[tuple[ClinikoEmulator, str]]:
    emulator = ClinikoEmulator(default_seed())
    server = ServerThread(emulator.app())
    try:
        yield emulator, server.start()
    finally:
        server.stop()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [k for k in os.environ if k.startswith("EGW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EGW_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("EGW_MASTER_KEY", _key_entry("k1")[0])
    assert main(["migrate"]) == 0
    return tmp_path


def test_locations_add_checks_the_credentials_and_takes_the_emr_time_zone(
    sqlite_env: Path, cliniko_url: tuple[ClinikoEmulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    emulator, base = cliniko_url
    settings, credentials = emulator.location_config(base)
    creds = sqlite_env / "creds.json"
    creds.write_bytes(credentials)
    capsys.readouterr()
    code, out, err = _cli(
        capsys, "locations", "add", "--emr", "cliniko", "--name", "Checked",
        "--settings", settings.decode(), "--credentials-file", str(creds), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["time_zone"] == default_seed().time_zone

    creds.write_bytes(emulator.bad_credentials(base))
    code, out, err = _cli(
        capsys, "locations", "add", "--emr", "cliniko", "--name", "Wrong",
        "--settings", settings.decode(), "--credentials-file", str(creds),
    )  # fmt: skip
    assert code == 1
    assert "EMR check failed" in err
    assert len(err.strip().splitlines()) == 1
    assert json.loads(emulator.bad_credentials(base))["api_key"] not in err + out


def test_set_credentials_replaces_them_only_when_the_emr_accepts_them(
    sqlite_env: Path, cliniko_url: tuple[ClinikoEmulator, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A renewed session (Jane, SimplePractice) or a rotated key goes in without re-creating the location."""
    emulator, base = cliniko_url
    settings, credentials = emulator.location_config(base)
    creds = sqlite_env / "creds.json"
    creds.write_bytes(credentials)
    capsys.readouterr()
    code, out, err = _cli(
        capsys, "locations", "add", "--emr", "cliniko", "--name", "Site",
        "--settings", settings.decode(), "--credentials-file", str(creds), "--json",
    )  # fmt: skip
    location = json.loads(out)["id"]
    creds.write_bytes(emulator.bad_credentials(base))
    code, out, err = _cli(capsys, "locations", "set-credentials", location, "--credentials-file", str(creds))
    assert code == 1
    assert "EMR check failed" in err
    creds.write_bytes(credentials)
    code, out, err = _cli(capsys, "locations", "set-credentials", location, "--credentials-file", str(creds), "--json")
    assert code == 0, err
    assert json.loads(out)["id"] == location
    assert json.loads(credentials)["api_key"] not in out + err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["locations", "add", "--emr", "cliniko", "--name", "X", "--settings", SETTINGS, "--no-check"], 2, "time-zone"),
        (["locations", "add", "--emr", "cliniko", "--name", "X", "--settings", "{}", "--time-zone", "UTC"],
         2, "invalid"),
        (["locations", "add", "--emr", "nope", "--name", "X", "--settings", SETTINGS, "--no-check"], 2, "unknown EMR"),
        (["locations", "add", "--emr", "cliniko", "--name", "X", "--settings", SETTINGS, "--time-zone", "Mars/Base"],
         2, "unknown time zone"),
        (["keys", "issue", "loc_missing"], 1, "no location"),
        (["keys", "revoke", "egw_live_nothing"], 1, "no active key"),
    ],
)  # fmt: skip
def test_expected_errors_are_one_clear_line(
    sqlite_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    creds = sqlite_env / "creds.json"
    creds.write_text(CREDENTIALS)
    if argv[0] == "locations":
        argv = [*argv, "--credentials-file", str(creds)]
    capsys.readouterr()
    got, out, err = _cli(capsys, *argv)
    assert got == code
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert CLINIKO_SECRET not in err + out


def test_missing_or_malformed_master_key_and_unmigrated_database(
    sqlite_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EGW_MASTER_KEY", "k1:c2VjcmV0LW1hc3Rlci1rZXktdmFsdWU")
    assert main(["rotate-master-key"]) == 2
    err = capsys.readouterr().err
    assert "EGW_MASTER_KEY" in err
    assert "c2VjcmV0LW1hc3Rlci1rZXktdmFsdWU" not in err

    monkeypatch.delenv("EGW_MASTER_KEY")
    assert main(["rotate-master-key"]) == 2
    assert "no master key" in capsys.readouterr().err

    monkeypatch.setenv("EGW_DATABASE_URL", f"sqlite:///{sqlite_env / 'empty.db'}")
    assert main(["keys", "list"]) == 1
    assert "emr-gateway migrate" in capsys.readouterr().err

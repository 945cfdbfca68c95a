"""`emr-gateway operators`: add (the password from stdin, never argv), list, set-password, remove; the operator then
signs in to the live console, and removing them ends their session."""

from __future__ import annotations

import io
import json
import os

import pytest

from gateway.cli import main
from tests.console.conftest import Console
from tests.gateway.conftest import Harness

PASSWORD = "a long enough passphrase"


@pytest.fixture
def cli(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Harness:
    for name in [k for k in os.environ if k.startswith("EGW_") and k != "EGW_TEST_POSTGRES_DSN"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EGW_DATABASE_URL", harness.database_url)
    return harness


def _run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str, *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_operators_add_reads_the_password_from_stdin(
    cli: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(monkeypatch, capsys, PASSWORD + "\n", "operators", "add", "Ops@Clinic.example", "--json")
    assert code == 0, err
    added = json.loads(out)
    assert added["email"] == "ops@clinic.example"
    assert PASSWORD not in out + err
    c = Console(cli)
    assert c.sign_in("ops@clinic.example", PASSWORD).status_code == 303
    assert c.get("/console").status_code == 200

    # Refusals: a second time, a short password, no password at all, a password on the command line.
    assert _run(monkeypatch, capsys, PASSWORD + "\n", "operators", "add", "ops@clinic.example")[0] == 1
    code, _, err = _run(monkeypatch, capsys, "short\n", "operators", "add", "new@clinic.example")
    assert code == 2
    assert "at least 12" in err
    assert _run(monkeypatch, capsys, "", "operators", "add", "new@clinic.example")[0] == 2
    assert _run(monkeypatch, capsys, "", "operators", "add", "not-an-email")[0] == 2
    with pytest.raises(SystemExit) as argv_password:
        _run(monkeypatch, capsys, "", "operators", "add", "new@clinic.example", PASSWORD)
    assert argv_password.value.code == 2

    code, out, _ = _run(monkeypatch, capsys, "", "operators", "list", "--json")
    [listed] = json.loads(out)
    assert listed["email"] == "ops@clinic.example"
    assert listed["last_sign_in_at"] is not None
    assert "hash" not in out

    new = "another passphrase, longer"
    assert _run(monkeypatch, capsys, new + "\n", "operators", "set-password", "ops@clinic.example")[0] == 0
    assert c.get("/console").status_code == 303  # a new password ends the sessions
    assert c.sign_in("ops@clinic.example", new).status_code == 303
    assert c.get("/console").status_code == 200

    assert _run(monkeypatch, capsys, "", "operators", "remove", "ops@clinic.example")[0] == 0
    assert c.get("/console").status_code == 303  # removed: the session is gone at once
    assert c.sign_in("ops@clinic.example", new).status_code == 401
    assert _run(monkeypatch, capsys, "", "operators", "remove", "ops@clinic.example")[0] == 1
    c.close()

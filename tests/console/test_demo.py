"""`emr-gateway demo --json` prints how to sign in to the console, and the printed operator can."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.console.conftest import csrf_of


def test_demo_json_prints_a_working_operator(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGW_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--json", "--port", "0", "--dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["console_url"] == info["base_url"] + "/console"
        assert info["operator_email"] == "operator@demo.example"
        assert len(info["operator_password"]) >= 20
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{info['base_url']}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo never answered"
            time.sleep(0.05)
        with httpx.Client(base_url=info["base_url"], timeout=60) as browser:
            page = browser.get("/console/sign-in")
            signed = browser.post(
                "/console/sign-in",
                data={
                    "_csrf": csrf_of(page.text),
                    "email": info["operator_email"],
                    "password": info["operator_password"],
                },
            )
            assert signed.status_code == 303, signed.text
            overview = browser.get("/console")
            assert overview.status_code == 200
            assert overview.text.count('data-testid="location-row"') == len(info["locations"])
    finally:
        proc.terminate()
        proc.wait(timeout=20)

"""`emr-gateway demo --json` prints how to sign in to the console, and the printed operator can."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.console.conftest import csrf_of
from tests.demo_process import running_demo


def test_demo_json_prints_a_working_operator(tmp_path: Path) -> None:
    with running_demo(tmp_path) as info:
        assert info["console_url"] == info["base_url"] + "/console"
        assert info["operator_email"] == "operator@demo.example"
        assert len(info["operator_password"]) >= 20
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

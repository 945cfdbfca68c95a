"""`emr-gateway demo --json` as a user runs it: its own process, no EGW_ settings, the first stdout line parsed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


@contextlib.contextmanager
def running_demo(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The demo's printed JSON, once the gateway answers `/healthz`; the process is stopped on exit."""
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
        info: dict[str, Any] = json.loads(proc.stdout.readline())
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{info['base_url']}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo never answered"
            time.sleep(0.05)
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=20)

"""Hostile bodies over real HTTP: nesting 1,000 deep and a Content-Length that lies are refused before any
authentication work, without a 500 and without an ERROR log line (issue 15, findings 5 and 10)."""

from __future__ import annotations

import logging
import socket
import time
from urllib.parse import urlsplit

import pytest

from gateway.body_guard import too_deep
from tests.gateway.conftest import Harness

DEEP = b"[" * 1000 + b"]" * 1000
DEEP_OBJECT = b'{"a":' * 1000 + b"1" + b"}" * 1000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
@pytest.mark.parametrize(
    ("path", "keyed"),
    [
        ("/v1/appointments", True),
        ("/v1/appointments", False),
        ("/ghl/v1/egw_ghl_notatoken/appointments/book", False),
        ("/api-book-appointment", False),
    ],
)
def test_deep_json_is_a_400_before_authentication(
    harness: Harness, body: bytes, path: str, keyed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = harness.client() if keyed else harness.anonymous()
    with client as c:
        r = c.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "bad_request"
    assert "nests deeper" in r.json()["detail"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_ordinary_nesting_and_brackets_inside_strings_pass() -> None:
    assert not too_deep(b'{"a": [{"b": [1, 2, {"c": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}]}', 32)
    assert too_deep(b"[" * 33 + b"]" * 33, 32)
    assert not too_deep(b"[" * 32 + b"]" * 32, 32)
    assert not too_deep(b'"' + b"{" * 100 + b'"', 32)


@pytest.mark.gateway_config(body_read_timeout_seconds=0.5)
def test_a_body_shorter_than_its_content_length_does_not_hold_the_connection(harness: Harness) -> None:
    url = urlsplit(harness.base_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/appointments HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"start": '
        )
        started = time.monotonic()
        answer = sock.recv(4096)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert waited < 5

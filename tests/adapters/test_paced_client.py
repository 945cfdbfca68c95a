"""The paced client every adapter sends through: one shared pool, no shared cookies, the EMR's answer unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from adapters.pacing import LocalBudget, RateLimit, paced_client
from adapters.transport import EMRTransport


class _Clinic(BaseHTTPRequestHandler):
    """`/login` sets a session cookie (as Jane and SimplePractice do); `/echo` answers the Cookie header it got;
    `POST /busy/<seconds>` is refused once with 429 and that Retry-After, then applied (counted in `APPLIED`)."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        refused = _REFUSED.setdefault(self.path, False)
        if not refused:
            _REFUSED[self.path] = True
            self.send_response(429)
            self.send_header("Retry-After", self.path.rsplit("/", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        APPLIED.append(body)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = (self.headers.get("cookie") or "-").encode()
        self.send_response(200 if self.path != "/missing" else 404)
        if self.path == "/login":
            self.send_header("Set-Cookie", "_session=clinic-a-secret; Path=/; HttpOnly")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


_REFUSED: dict[str, bool] = {}
APPLIED: list[bytes] = []


@pytest.fixture
def clinic() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Clinic)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_cookie_one_location_receives_never_reaches_another(clinic: str) -> None:
    limits = (RateLimit(per_second=100.0, burst=10),)
    async with httpx.AsyncClient(transport=EMRTransport()) as shared:
        budget = LocalBudget()
        clinic_a = paced_client(shared, budget, "a", limits, max_wait=1.0, emr="Test EMR")
        clinic_b = paced_client(shared, budget, "b", limits, max_wait=1.0, emr="Test EMR")
        login = await clinic_a.get(f"{clinic}/login")
        assert login.status_code == 200
        assert login.cookies.get("_session") == "clinic-a-secret"  # the answer itself is unchanged
        assert (await clinic_a.get(f"{clinic}/echo")).text == "-"
        assert (await clinic_b.get(f"{clinic}/echo")).text == "-"
        assert not shared.cookies
        assert not clinic_a.cookies
        explicit = await clinic_b.get(f"{clinic}/echo", headers={"Cookie": "_session=clinic-b"})
        assert explicit.text == "_session=clinic-b"  # what an adapter sends itself goes out as given
        missing = await clinic_b.get(f"{clinic}/missing")
        assert missing.status_code == 404
        assert missing.elapsed.total_seconds() >= 0  # the paced client built the response


async def test_a_momentary_429_is_waited_out_once_and_a_long_one_is_answered(clinic: str) -> None:
    """A 429 applied nothing: a write refused for a second is sent again after it (once); one refused for longer
    is the caller's answer, and the budget is paused either way."""
    limits = (RateLimit(per_second=100.0, burst=10),)
    async with httpx.AsyncClient(transport=EMRTransport()) as shared:
        budget = LocalBudget()
        client = paced_client(shared, budget, "acct", limits, max_wait=10.0, emr="Test EMR")
        short = await client.post(f"{clinic}/busy/1", content=b'{"book": 1}')
        assert short.status_code == 201
        assert APPLIED == [b'{"book": 1}']
        long = await client.post(f"{clinic}/busy/7", content=b'{"book": 2}')
        assert long.status_code == 429
        assert APPLIED == [b'{"book": 1}']

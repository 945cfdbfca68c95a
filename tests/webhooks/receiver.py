"""A real webhook receiver on loopback whose answer a test can change mid-run; it verifies every delivery."""

from __future__ import annotations

import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
from standardwebhooks import Webhook


class Answer(msgspec.Struct, kw_only=True):
    status: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


class Received(msgspec.Struct, kw_only=True):
    headers: dict[str, str]
    body: bytes
    at: float
    status: int  # what we answered


class _Server(ThreadingHTTPServer):
    # A worker opens up to a batch of connections at once; the default backlog (5) drops the rest's SYNs, and the
    # kernel retries them only after a second, which looks like a slow receiver.
    request_queue_size = 128


class Receiver:
    """`answer` is the standing reply; `script` holds one-off replies used first, in order."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.script: deque[Answer] = deque()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    answer = receiver.script.popleft() if receiver.script else receiver.answer
                    receiver.received.append(
                        Received(
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=time.time(),
                            status=answer.status,
                        )
                    )
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the sender gave up (timeout): nothing to answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)


def verify(secret: str, received: Received) -> object:
    """Raises standardwebhooks.WebhookVerificationError unless `secret` signed this delivery."""
    return Webhook(secret).verify(received.body, received.headers)

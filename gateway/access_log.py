"""One log line and one metric sample per request: method, route template, status, time. Never the query string
(it carries e-mails and phone numbers) and never a header."""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import Metrics

log = logging.getLogger("emr_gateway.access")


def access_log_middleware(metrics: Metrics) -> object:
    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":  # type: ignore[comparison-overlap]
                await app(scope, receive, send)
                return
            http: dict[str, Any] = scope  # type: ignore[assignment]
            started = time.perf_counter()
            status = 500

            async def capture(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                route = str(http.get("path_template") or "unmatched")
                elapsed = time.perf_counter() - started
                metrics.requests.labels(http["method"], route, str(status)).inc()
                metrics.latency.labels(http["method"], route).observe(elapsed)
                log.info(
                    "%s %s %d %.1fms location=%s",
                    http["method"],
                    route,
                    status,
                    elapsed * 1000,
                    http.get("egw_location_id", "-"),
                )

        return middleware

    return factory

"""Logging for `serve` and `demo`: one line per event on stderr; httpx's per-request INFO lines are silenced
(they cost throughput and would print EMR URLs that can carry patient filters)."""

from __future__ import annotations

import logging
import os

QUIET = ("httpx", "httpcore", "uvicorn.access", "hpack")


def quiet_http_clients() -> None:
    """Called by the app factory too, so an embedding application's logging setup cannot turn them back on."""
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("EGW_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    quiet_http_clients()

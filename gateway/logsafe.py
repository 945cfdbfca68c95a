"""Logging an unexpected exception without its message: the stack says where, the message may quote patient data."""

from __future__ import annotations

import logging
import traceback


def log_unexpected(logger: logging.Logger, what: str, exc: BaseException, **extra: object) -> None:
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s: %s (message withheld)\n%s", what, type(exc).__name__, frames, extra=extra or None)

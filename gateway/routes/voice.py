"""Voice-agent GET routes (`/voice/...`, query strings in, short speakable sentences out), from the table."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

from gateway.compat.table import VOICE_ROUTES
from gateway.routes.clinicsync import compat_handler


def voice_handlers() -> list[HTTPRouteHandler]:
    return [compat_handler(route) for route in VOICE_ROUTES]

"""Health responses."""

from __future__ import annotations

from schemas.common import Out


class Health(Out):
    status: str

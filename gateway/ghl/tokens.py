"""GHL path tokens: `egw_ghl_` + 32 random bytes, for the workflow action that cannot send headers. Like API keys,
only the SHA-256 and a display prefix are stored; the token itself lives in the URL GHL calls."""

from __future__ import annotations

from gateway.apikeys import NewKey, mint

PREFIX = "egw_ghl_"
DISPLAY_PREFIX_LEN = 16  # "egw_ghl_" + 8 characters (40 bits)


def generate() -> NewKey:
    return mint(PREFIX, DISPLAY_PREFIX_LEN)


def looks_like_token(value: str) -> bool:
    """Cheap shape check before a database lookup (the lookup is by hash either way)."""
    return value.startswith(PREFIX) and 20 <= len(value) <= 100

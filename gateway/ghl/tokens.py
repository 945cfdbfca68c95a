"""GHL path tokens: `egw_ghl_` + 32 random bytes, for the workflow action that cannot send headers. Like API keys,
only the SHA-256 and a display prefix are stored; the token itself lives in the URL GHL calls."""

from __future__ import annotations

import base64
import secrets

import msgspec

from gateway.apikeys import hash_secret

PREFIX = "egw_ghl_"
RANDOM_BYTES = 32
DISPLAY_PREFIX_LEN = 16  # "egw_ghl_" + 8 characters (40 bits)


class NewToken(msgspec.Struct, frozen=True, kw_only=True):
    secret: str
    prefix: str
    sha256: str

    def __repr__(self) -> str:
        return f"NewToken(prefix={self.prefix!r})"


def generate() -> NewToken:
    body = base64.b32encode(secrets.token_bytes(RANDOM_BYTES)).decode("ascii").rstrip("=").lower()
    secret = PREFIX + body
    return NewToken(secret=secret, prefix=secret[:DISPLAY_PREFIX_LEN], sha256=hash_secret(secret))


def looks_like_token(value: str) -> bool:
    """Cheap shape check before a database lookup (the lookup is by hash either way)."""
    return value.startswith(PREFIX) and 20 <= len(value) <= 100

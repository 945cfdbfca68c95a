"""API key format: `egw_live_`/`egw_test_` + 32 random bytes; only the SHA-256 and a display prefix are ever stored."""

from __future__ import annotations

import base64
import hashlib
import secrets

import msgspec

LIVE = "egw_live_"
TEST = "egw_test_"
RANDOM_BYTES = 32
# 9 chars of kind + 8 of randomness (40 bits): enough to tell keys apart in a list and to stay unique in practice.
DISPLAY_PREFIX_LEN = 17


class NewKey(msgspec.Struct, frozen=True, kw_only=True):
    secret: str
    prefix: str
    sha256: str

    def __repr__(self) -> str:
        return f"NewKey(prefix={self.prefix!r})"


def mint(kind: str, display_len: int) -> NewKey:
    """`kind` + 32 random bytes; also mints GoHighLevel path tokens, which are stored the same way."""
    body = base64.b32encode(secrets.token_bytes(RANDOM_BYTES)).decode("ascii").rstrip("=").lower()
    secret = kind + body
    return NewKey(secret=secret, prefix=secret[:display_len], sha256=hash_secret(secret))


def generate(*, test: bool = False) -> NewKey:
    return mint(TEST if test else LIVE, DISPLAY_PREFIX_LEN)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LEN]


def is_test_prefix(prefix: str) -> bool:
    return prefix.startswith(TEST)

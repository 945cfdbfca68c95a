"""Practice Better's webhook signature: `PB-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
(not Standard Webhooks). Pure functions, so the gateway's receiving route and the tests share one definition."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "PB-Signature"
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str, header: str | None, body: bytes, *, now: float | None = None, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """True when one `v1` matches the body under `secret` and `t` is within `tolerance` seconds of now."""
    if not header or not secret:
        return False
    stamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.strip().isdigit():
            stamp = int(value.strip())
        elif name == "v1" and value.strip():
            candidates.append(value.strip().lower())
    if stamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    expected = sign(secret, stamp, body).rpartition("v1=")[2]
    # compare_digest against every candidate (no early exit on the first mismatch).
    matches = [hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in candidates]
    return any(matches)

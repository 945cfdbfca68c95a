"""Standard Webhooks signatures, made by the reference library so receivers' verifiers agree with us by construction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: datetime, body: bytes) -> str:
    """`v1,<sig-new> v1,<sig-old>`: one signature per live secret, newest first (zero-downtime rotation)."""
    text = body.decode("utf-8")
    return " ".join(Webhook(secret).sign(msg_id, timestamp, text) for secret in secrets)


def webhook_headers(secrets: Sequence[str], msg_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
    }

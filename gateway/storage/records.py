"""What the store hands out: typed rows and idempotency outcomes (never plaintext secrets, except a key at issue)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from gateway.apikeys import is_test_prefix


class LocationRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    emr: str
    name: str
    settings_json: bytes
    time_zone: str
    ghl_location_id: str | None
    created_at: datetime


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    location_id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def test(self) -> bool:
        return is_test_prefix(self.prefix)


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    """The only time the plaintext key exists: shown once, never stored."""

    record: ApiKeyRecord
    secret: str

    def __repr__(self) -> str:
        return f"IssuedKey(record={self.record!r}, secret=<redacted>)"


class IdempotencyScope(msgspec.Struct, frozen=True, kw_only=True):
    api_key_id: str
    method: str
    route: str
    key: str


class IdemStarted(msgspec.Struct, frozen=True, tag="started"):
    """This caller holds the lock: run the request, then idem_complete or idem_release."""


class IdemReplay(msgspec.Struct, frozen=True, kw_only=True, tag="replay"):
    status_code: int
    content_type: str
    body: bytes


class IdemInFlight(msgspec.Struct, frozen=True, tag="in_flight"):
    """Another request with this key holds a live lock."""


class IdemMismatch(msgspec.Struct, frozen=True, tag="mismatch"):
    """The key was used with a different request fingerprint."""


IdemOutcome = IdemStarted | IdemReplay | IdemInFlight | IdemMismatch

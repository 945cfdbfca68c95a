"""What the EMRs' own webhook routes share: loading the location a notification is addressed to, comparing secrets."""

from __future__ import annotations

import hmac
from typing import TypeVar

import msgspec

from gateway.errors import NotFoundError
from gateway.runtime import Runtime
from gateway.storage.records import LocationRecord

C = TypeVar("C")


async def emr_location(
    runtime: Runtime, location_id: str, *, slug: str, name: str, credentials: type[C]
) -> tuple[LocationRecord, C]:
    """The location and its decoded credentials; 404 unless it exists and its EMR is `slug` (`name` in the message)."""
    location = await runtime.store.get_location(location_id)
    if location is None or location.emr != slug:
        raise NotFoundError(f"no {name} location with this id")
    raw = await runtime.store.get_credentials(location.id)
    return location, msgspec.json.decode(raw, type=credentials)


def same_secret(expected: str | None, presented: str | None) -> bool:
    """False without a configured secret or a presented value; otherwise compared in constant time (as bytes:
    compare_digest refuses str with non-ASCII characters, a TypeError rather than a mismatch)."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())

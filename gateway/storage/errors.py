"""Storage errors callers are expected to handle (everything else is a bug or an outage)."""

from __future__ import annotations


class StorageError(Exception):
    """Base for expected storage failures."""


class UnknownLocation(StorageError, LookupError):
    def __init__(self, location_id: str) -> None:
        super().__init__(f"no location {location_id!r}")
        self.location_id = location_id


class MissingCredentials(StorageError, LookupError):
    def __init__(self, location_id: str) -> None:
        super().__init__(f"location {location_id!r} has no stored EMR credentials")
        self.location_id = location_id

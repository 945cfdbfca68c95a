"""The client index: Practice Better has no e-mail filter on `/consultant/records`, so finding a client by e-mail
means paging the records (incrementally, `modified_gte`) into an index kept per location.

The adapter receives an index through the `ClientIndex` protocol; the default keeps it in memory (enough for a
single process and for tests); the gateway hands adapters a storage-backed one (gateway/storage/pb_client_index.py)
so every replica and every restart shares one index. Only SHA-256 digests of the normalized e-mail, full name and
first phone (E.164) are kept, never the values themselves.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import msgspec


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def email_digest(email: str) -> str:
    return _digest(email.strip().lower())


def name_digest(first_name: str, last_name: str) -> str:
    return _digest(" ".join(f"{first_name} {last_name}".lower().split()))


def phone_digest(e164: str) -> str:
    return _digest(e164.strip())


class IndexEntry(msgspec.Struct, frozen=True, kw_only=True):
    record_id: str
    email_sha256: str | None
    name_sha256: str | None = None
    phone_sha256: str | None = None
    modified_at: datetime | None


class IndexKey(msgspec.Struct, frozen=True, kw_only=True):
    """What to look up: every digest given must match."""

    email_sha256: str | None = None
    name_sha256: str | None = None
    phone_sha256: str | None = None

    def matches(self, entry: IndexEntry) -> bool:
        return (
            (self.email_sha256 is None or entry.email_sha256 == self.email_sha256)
            and (self.name_sha256 is None or entry.name_sha256 == self.name_sha256)
            and (self.phone_sha256 is None or entry.phone_sha256 == self.phone_sha256)
        )


class ClientIndex(Protocol):
    async def lookup(self, key: IndexKey) -> list[str]:
        """Record ids whose digests match every digest in `key`."""

    async def upsert(self, entries: Sequence[IndexEntry]) -> None:
        """Add or replace entries by record id (a changed e-mail moves the record)."""

    async def remove(self, record_id: str) -> None: ...

    async def watermark(self) -> datetime | None:
        """The newest `dateModified` indexed (None: never filled)."""

    async def advance(self, watermark: datetime) -> None:
        """Move the watermark forward (never back)."""


@runtime_checkable
class UsesClientIndex(Protocol):
    """An adapter that keeps a client index; the gateway replaces `client_index` with its storage-backed one."""

    client_index: ClientIndex


class InMemoryClientIndex:
    """The default index: per adapter instance, lost on restart (the first lookup after one re-pages every record)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, IndexEntry] = {}
        self._watermark: datetime | None = None

    async def lookup(self, key: IndexKey) -> list[str]:
        with self._lock:
            return sorted(e.record_id for e in self._entries.values() if key.matches(e))

    async def upsert(self, entries: Sequence[IndexEntry]) -> None:
        with self._lock:
            for entry in entries:
                self._entries[entry.record_id] = entry

    async def remove(self, record_id: str) -> None:
        with self._lock:
            self._entries.pop(record_id, None)

    async def watermark(self) -> datetime | None:
        return self._watermark

    async def advance(self, watermark: datetime) -> None:
        with self._lock:
            if self._watermark is None or watermark > self._watermark:
                self._watermark = watermark

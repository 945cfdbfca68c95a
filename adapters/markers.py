"""A marker of the gateway's operation in an appointment's free text, so the gateway can find its own write.

Where an EMR stores notes on an appointment, a booking carries `[egw:<operation id>]`. A create whose answer was
lost is then recognised for certain — not confused with the same patient's other appointment at that time (a
caller who retried another way) — by the reconciler and by a retry after a crash. Read back, the marker is removed
from the notes every caller sees.
"""

from __future__ import annotations

import re

_MARKER = re.compile(r"\s*\[egw:([A-Za-z0-9_-]{1,64})\]")


def marker(operation_id: str) -> str:
    return f"[egw:{operation_id}]"


def with_marker(notes: str | None, operation_id: str | None, max_length: int | None = None) -> str | None:
    """The notes to send: the caller's, then the marker (cut from the caller's text if the EMR limits its length)."""
    if operation_id is None:
        return notes
    tag = marker(operation_id)
    text = (notes or "").rstrip()
    if max_length is not None and len(text) + len(tag) + 1 > max_length:
        text = text[: max(0, max_length - len(tag) - 1)].rstrip()
    return f"{text} {tag}" if text else tag


def operation_of(notes: str | None) -> str | None:
    found = _MARKER.search(notes or "")
    return found.group(1) if found else None


def without_marker(notes: str | None) -> str | None:
    """What callers see: the notes without the gateway's marker (None when only the marker was there)."""
    if notes is None:
        return None
    text = _MARKER.sub("", notes).strip()
    return text or None

"""Shared base types for the contract."""

from __future__ import annotations

import msgspec


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=False):
    """Base for request bodies: unknown fields are an error so typos never pass silently."""


class Out(msgspec.Struct, kw_only=True):
    """Base for response bodies and values passed between layers."""

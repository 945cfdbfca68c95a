"""Builds the adapter for a stored location: the one place gateway code turns stored bytes into typed settings."""

from __future__ import annotations

from typing import Any, TypeAlias

import httpx
import msgspec

from adapters.base import AdapterContext, EMRAdapter
from adapters.registry import get_adapter_class
from gateway.storage import pb_client_index
from gateway.storage.store import Store

AnyAdapter: TypeAlias = EMRAdapter[Any, Any]


class ConfigError(ValueError):
    """Settings or credentials do not fit the EMR's schema."""


def decode_settings(emr: str, settings_json: bytes, credentials_json: bytes) -> tuple[msgspec.Struct, msgspec.Struct]:
    cls = get_adapter_class(emr)
    try:
        settings = msgspec.json.decode(settings_json, type=cls.settings_type)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"settings: {exc}") from None
    try:
        credentials = msgspec.json.decode(credentials_json, type=cls.credentials_type)
    except msgspec.ValidationError as exc:
        # msgspec's message names the field, never the value, so no secret leaks here.
        raise ConfigError(f"credentials: {exc}") from None
    return settings, credentials


def build_adapter(
    emr: str,
    settings_json: bytes,
    credentials_json: bytes,
    *,
    http: httpx.AsyncClient,
    location_id: str,
    time_zone: str,
    store: Store | None = None,
) -> AnyAdapter:
    """With `store`, adapters that keep per-location state (Practice Better's client index) get the shared,
    storage-backed kind instead of their in-memory default."""
    cls = get_adapter_class(emr)
    settings, credentials = decode_settings(emr, settings_json, credentials_json)
    adapter = cls(settings, credentials, http, AdapterContext(location_id=location_id, time_zone=time_zone))
    if store is not None:
        pb_client_index.attach(adapter, store, location_id)
    return adapter

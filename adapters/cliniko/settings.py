"""What a Cliniko location is configured with: settings (plain) and credentials (encrypted at rest)."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from adapters.base import Credentials, Settings

SHARD_RE = re.compile(r"^[a-z]{2}\d{1,2}$")


class ClinikoSettings(Settings):
    """`shard` may be omitted: it is then taken from the API key's suffix (`…-au2`), else `au1`."""

    business_id: Annotated[str, msgspec.Meta(pattern=r"^\d+$")]
    shard: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}\d{1,2}$")] | None = None
    base_url: str | None = None
    app_name: str = "EMR Gateway"


class ClinikoCredentials(Credentials):
    api_key: Annotated[str, msgspec.Meta(min_length=8)]
    user_agent_email: Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


def shard_of(settings: ClinikoSettings, credentials: ClinikoCredentials) -> str:
    if settings.shard:
        return settings.shard
    _, sep, suffix = credentials.api_key.rpartition("-")
    if sep and SHARD_RE.match(suffix.lower()):
        return suffix.lower()
    return "au1"


def base_url_of(settings: ClinikoSettings, credentials: ClinikoCredentials) -> str:
    if settings.base_url:
        return settings.base_url.rstrip("/")
    return f"https://api.{shard_of(settings, credentials)}.cliniko.com/v1"

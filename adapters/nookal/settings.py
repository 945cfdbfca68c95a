"""What a Nookal location is configured with: settings (plain) and credentials (encrypted at rest)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from adapters.base import Credentials, Settings

DEFAULT_BASE_URL = "https://api.nookal.com/production/v2"


class NookalSettings(Settings):
    """`location_id` is the Nookal location (one gateway location = one Nookal location)."""

    location_id: Annotated[str, msgspec.Meta(pattern=r"^\d{1,12}$")]
    base_url: str | None = None


class NookalCredentials(Credentials):
    """A v2 API key (Setup → Connections → API Keys); it must have this location ticked."""

    api_key: Annotated[str, msgspec.Meta(min_length=8)]


def base_url_of(settings: NookalSettings) -> str:
    return (settings.base_url or DEFAULT_BASE_URL).rstrip("/")

"""What a Jane location is configured with: the clinic and its location (plain), the staff session (encrypted)."""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec

from adapters.base import Credentials, Settings


class JaneSettings(Settings):
    """`clinic` is the subdomain of `https://{clinic}.janeapp.com`; `location_id` the Jane location this one books."""

    clinic: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    location_id: Annotated[str, msgspec.Meta(pattern=r"^\d{1,12}$")]
    base_url: str | None = None
    browser_tab_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{4,64}$")] | None = None
    phone_region: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")] = "CA"


class JaneCredentials(Credentials):
    """The `_jane_session` cookie of a staff login (scripted logins are blocked by reCAPTCHA, so it is imported)."""

    session_cookie: Annotated[str, msgspec.Meta(min_length=16)]


def base_url_of(settings: JaneSettings) -> str:
    if settings.base_url:
        return settings.base_url.rstrip("/")
    return f"https://{settings.clinic}.janeapp.com"


def browser_tab_id_of(settings: JaneSettings) -> str:
    """Stable per location: Jane's UI makes one per browser tab; each gateway location is one 'tab'."""
    if settings.browser_tab_id:
        return settings.browser_tab_id
    digest = hashlib.sha256(f"{settings.clinic}/{settings.location_id}".encode()).hexdigest()
    return f"emrgw{digest[:17]}"

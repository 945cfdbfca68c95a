"""What a SimplePractice location is configured with: settings (plain) and the web session (encrypted at rest)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from adapters.base import Credentials, Settings

FRONTEND_URL = "https://secure.simplepractice.com/frontend"
# The newest `Api-Version` seen in integrators' captures (2026); SimplePractice moves it, hence a setting.
DEFAULT_API_VERSION = "2026-05-25"
# What the live client portal sends (evidence-2026-11 §5.1); the old 2020-01-01 came from SimplePractice's hiring-
# assessment apps, and whether the portal still serves it is unknown.
PORTAL_API_VERSION = "2026-05-25"
PORTAL_BUILD_VERSION = "0.0.1"


class SimplePracticeSettings(Settings):
    """One gateway location is one SimplePractice office (`office_id`) of one practice (`practice`).

    `practice` is the client-portal subdomain (`{practice}.clientsecure.me`). The version headers are settings
    because SimplePractice changes them without notice: copy the live values from the browser's developer tools.
    """

    practice: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    office_id: Annotated[str, msgspec.Meta(pattern=r"^\d{1,20}$")]
    api_version: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")] = DEFAULT_API_VERSION
    portal_api_version: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")] = PORTAL_API_VERSION
    portal_build_version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = PORTAL_BUILD_VERSION
    base_url: str | None = None  # the clinician JSON:API; default FRONTEND_URL (overrides: proxies, tests)
    portal_url: str | None = None  # the client-portal API; default https://{practice}.clientsecure.me/client-portal-api


class SimplePracticeCredentials(Credentials):
    """A signed-in clinician web session: the `Cookie` header and the page's `csrf-token` meta value."""

    session_cookie: Annotated[str, msgspec.Meta(min_length=8)]
    csrf_token: Annotated[str, msgspec.Meta(min_length=8)]


def frontend_url_of(settings: SimplePracticeSettings) -> str:
    return (settings.base_url or FRONTEND_URL).rstrip("/")


def portal_url_of(settings: SimplePracticeSettings) -> str:
    if settings.portal_url:
        return settings.portal_url.rstrip("/")
    return f"https://{settings.practice}.clientsecure.me/client-portal-api"

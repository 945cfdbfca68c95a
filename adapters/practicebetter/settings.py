"""What a Practice Better location is configured with: settings (plain) and credentials (encrypted at rest).

The two open questions of the research notes are settings with safe defaults, never guesses buried in code:
`duration_unit` (the unit of a session's `duration`: "minutes" per the vendor's swagger, "seconds" per one
integrator who books in production) and `session_date_mode` (how `sessionDate` is sent: a UTC instant with `Z`, or
— as one integrator observed — a naive wall time that Practice Better reads in `session_date_zone`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from adapters.base import Credentials, Settings

DEFAULT_BASE_URL = "https://api.practicebetter.io"

DurationUnit = Literal["minutes", "seconds"]
SessionDateMode = Literal["utc", "wall_time"]
ServiceType = Literal["face", "phone", "virtual"]


class PracticeBetterSettings(Settings):
    """One gateway location is one Practice Better practice (one client id/secret)."""

    consultant_id: str | None = None  # the member booked when a caller names none; also `asConsultantId`'s default
    service_type: ServiceType = "face"  # `virtual` needs telehealth settings the gateway does not send
    duration_unit: DurationUnit = "minutes"
    session_date_mode: SessionDateMode = "utc"
    session_date_zone: str = "America/New_York"  # the zone Practice Better reads a naive `sessionDate` in
    notify: bool = False  # let Practice Better e-mail the client on book/reschedule/cancel
    base_url: str | None = None  # override for proxies and tests
    scope: str | None = "read write"  # sent with the token request; None sends none


class PracticeBetterCredentials(Credentials):
    client_id: Annotated[str, msgspec.Meta(min_length=1)]
    client_secret: Annotated[str, msgspec.Meta(min_length=1)]
    # For Practice Better's own webhooks (optional): the `verificationToken` chosen when subscribing (answers the
    # subscription handshake) and the `plaintextSigningSecret` Practice Better returned once (verifies PB-Signature).
    webhook_verification_token: str | None = None
    webhook_signing_secret: str | None = None


def base_url_of(settings: PracticeBetterSettings) -> str:
    return (settings.base_url or DEFAULT_BASE_URL).rstrip("/")

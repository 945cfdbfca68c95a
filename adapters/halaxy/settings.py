"""What a Halaxy location is configured with: settings (plain) and credentials (encrypted at rest).

One gateway location is one Halaxy clinic (`organization_id`, a `CL-…` Organization) of a practice that bought the
API add-on; the practice's client id and secret are its credentials. What the evidence leaves open is a setting:
- `cancel_style` / `cancel_code`: how a cancel is written. Halaxy's appointments carry the patient's attendance in
  the participant extension `appointment-participant-status` (reference/appointment); the SDK's live lifecycle test
  cancels by patching that extension with `cancelled (no charge)` and reads back `cancelled`. No Halaxy page shows a
  cancel body, so `status` (a top-level `{"status": "cancelled"}`, plain FHIR) stays selectable.
- `token_lifetime_seconds`: docs/authentication answers `expires_in: 3600` but says "valid for 15 minutes"; tokens
  are re-minted a minute before the shorter of the two.
- `duration_extension_url`: reference/healthcareservice names the duration only by its value (`valueQuantity` in
  minutes); unset, the first extension holding a quantity in minutes is read.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from adapters.base import Credentials, Settings

HOSTS = {
    "au": "https://au-api.halaxy.com/main",  # "All other countries" (docs/request-structure)
    "eu": "https://eu-api.halaxy.com/main",  # "UK & EU countries"
}

Region = Literal["au", "eu"]
CancelStyle = Literal["participant_status", "status"]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class HalaxySettings(Settings):
    organization_id: NonEmpty  # the clinic (`CL-…`) this location is
    contact_email: Annotated[str, msgspec.Meta(pattern=r"^[^@\s()]+@[^@\s()]+$", max_length=200)]
    vendor: Annotated[str, msgspec.Meta(pattern=r"^[^()\r\n]{1,80}$")] = "EMR Gateway"
    region: Region = "au"
    base_url: str | None = None  # override of the region's host (proxies, the emulator)
    cancel_style: CancelStyle = "participant_status"
    cancel_code: NonEmpty = "cancelled (no charge)"
    location_type: NonEmpty = "clinic"  # `$book`'s `location-type` (the SDK sends `clinic`)
    token_lifetime_seconds: Annotated[int, msgspec.Meta(ge=120, le=3600)] = 900
    duration_extension_url: str | None = None
    webhook_header: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,64}$")] = "Authorization"


class HalaxyCredentials(Credentials):
    client_id: Annotated[str, msgspec.Meta(min_length=1)]
    client_secret: Annotated[str, msgspec.Meta(min_length=1)]
    # The "Authentication Header" value set on the location's webhooks in Halaxy (Settings > Integrations >
    # Webhooks); without it the webhook route refuses every notification.
    webhook_secret: str | None = None


def base_url_of(settings: HalaxySettings) -> str:
    return (settings.base_url or HOSTS[settings.region]).rstrip("/")


def user_agent_of(settings: HalaxySettings) -> str:
    """`APP_VENDOR_NAME (APP_VENDOR_EMAIL)`, as docs/authentication asks every request to identify itself."""
    return f"{settings.vendor} ({settings.contact_email})"

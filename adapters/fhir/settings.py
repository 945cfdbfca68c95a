"""What a `fhir` location is configured with: settings (plain) and credentials (encrypted at rest).

FHIR R4 has no duration on HealthcareService (nor on Appointment's service coding), so each service's length is a
setting: `service_minutes` maps HealthcareService ids to minutes, `default_service_minutes` covers the rest.
`locations verify` compares them with the lengths an IHE server proposes from `$find`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from adapters.base import Credentials, Settings
from adapters.fhir.client import Auth, ClientCredentials, StaticBearer

DialectSetting = Literal["auto", "ihe", "rest"]
Minutes = Annotated[int, msgspec.Meta(ge=1, le=24 * 60)]


class FhirSettings(Settings):
    """One gateway location is one FHIR `Location` of one server."""

    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]  # the FHIR base, e.g. https://api.medplum.com/fhir/R4
    location_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
    # "auto" reads it from the CapabilityStatement: IHE when `$find` and `$book` are declared on Appointment.
    dialect: DialectSetting = "auto"
    service_minutes: dict[str, Minutes] = {}
    default_service_minutes: Minutes = 30
    # REST dialect: whether the server keeps `Slot.status` (busy once booked) and refuses an Appointment into a Slot
    # that is not free, so two racing bookings cannot both land. A generic server (HAPI, any plain R4 store) does
    # neither: then (False, the default) the adapter reads the practitioner's appointments before a booking and
    # again after it (the earlier-created of two racers keeps the time, the other is cancelled again), and
    # availability leaves out booked times. True only for a server known to enforce Slots: a booking is then the
    # Slot search and the POST alone.
    slots_enforced: bool = False
    user_agent: str = "EMR Gateway"


class FhirCredentials(Credentials):
    """OAuth2 client credentials (`token_url`, `client_id`, `client_secret`, optional `scope`), or a static
    `bearer_token` the server issued: exactly one of the two."""

    token_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    token_body: Literal["form", "json"] = "form"  # noqa: S105 (how the token request is encoded, not a secret)
    bearer_token: str | None = None

    def __post_init__(self) -> None:
        oauth = (self.token_url, self.client_id, self.client_secret)
        if self.bearer_token is not None:
            if any(v is not None for v in oauth):
                raise ValueError("give either bearer_token or token_url/client_id/client_secret, not both")
            if not self.bearer_token:
                raise ValueError("bearer_token is empty")
        elif not all(oauth):
            raise ValueError("give token_url, client_id and client_secret (or a bearer_token)")


def auth_of(credentials: FhirCredentials) -> Auth:
    if credentials.bearer_token is not None:
        return StaticBearer(token=credentials.bearer_token)
    if not (credentials.token_url and credentials.client_id and credentials.client_secret):
        raise ValueError("client credentials are incomplete")  # __post_init__ already refused this
    return ClientCredentials(
        token_url=credentials.token_url,
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        scope=credentials.scope,
        body=credentials.token_body,
    )

"""What a Practice Better location is configured with: settings (plain) and credentials (encrypted at rest).

The open questions of the research notes are settings, never guesses buried in code (evidence-2026-11 §3.2):
- `session_date_mode` / `session_date_zone`: how `sessionDate` is sent. The only integrator who books in production
  found that Practice Better ignores a trailing `Z` and the request's `timeZone`, reads the clock time as wall time
  in the account's zone, and answers 500 to an offset; so the default is naive wall time. No endpoint is evidenced
  that tells which zone the account reads in, so the zone defaults to the location's time zone.
- `duration_unit`: the unit of a session's `duration` (swagger readers: minutes; the production booker: seconds).
  `auto` reads it off an existing session (its `duration` against its start and end instants) before the first
  write; with no session to read, it sends minutes (see `FALLBACK_UNIT`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from adapters.base import Credentials, Settings

DEFAULT_BASE_URL = "https://api.practicebetter.io"

DurationUnit = Literal["minutes", "seconds"]
DurationSetting = Literal["auto", "minutes", "seconds"]
SessionDateMode = Literal["wall_time", "utc"]
ServiceType = Literal["face", "phone", "virtual"]

# `auto` on an account without any session to read the unit from. Minutes, because a wrong guess then fails loudly:
# sent to an account that counts seconds, 30 becomes a 30-second session that write verification catches and
# cancels (and that session teaches `auto` the unit for the next write). The other way round, 1800 read as minutes
# is a 30-hour session Practice Better refuses as a conflict, which looks like a taken slot and teaches nothing.
FALLBACK_UNIT: DurationUnit = "minutes"


class PracticeBetterSettings(Settings):
    """One gateway location is one Practice Better practice (one client id/secret)."""

    consultant_id: str | None = None  # the member booked when a caller names none; also `asConsultantId`'s default
    service_type: ServiceType = "face"  # `virtual` needs telehealth settings the gateway does not send
    duration_unit: DurationSetting = "auto"
    session_date_mode: SessionDateMode = "wall_time"
    session_date_zone: str | None = None  # the zone Practice Better reads `sessionDate` in; unset: the location's
    notify: bool = False  # let Practice Better e-mail the client on book/reschedule/cancel
    base_url: str | None = None  # override for proxies and tests
    scope: str | None = "read write"  # sent with the token request; None sends none
    # Practice Better's session events (`session.created/updated/cancelled`: names UNCONFIRMED, notes §1.7) are
    # subscribed to this location's webhook route, so the gateway hears of a session change at once: polls then
    # skip the new-session scan and the near window (2 requests instead of 4) and only the walk over every session
    # (one page a poll) catches what a lost delivery missed. Off by default: nothing confirms the events exist.
    session_webhooks: bool = False


class PracticeBetterCredentials(Credentials):
    client_id: Annotated[str, msgspec.Meta(min_length=1)]
    client_secret: Annotated[str, msgspec.Meta(min_length=1)]
    # For Practice Better's own webhooks (optional): the `verificationToken` chosen when subscribing (answers the
    # subscription handshake) and the `plaintextSigningSecret` Practice Better returned once (verifies PB-Signature).
    webhook_verification_token: str | None = None
    webhook_signing_secret: str | None = None


def base_url_of(settings: PracticeBetterSettings) -> str:
    return (settings.base_url or DEFAULT_BASE_URL).rstrip("/")

"""The URLs ClinicSync Pro tells GoHighLevel users to paste with no headers, and where each answers here.

ClinicSync accepts those calls unauthenticated; the gateway answers the same table route under the location's GHL
path token instead (`/ghl/v1/{token}` + the path), since GHL's plain Webhook action cannot send `x-api-key`.
Nookal is absent: its document requires `x-api-key` even for GHL's body (a Custom Webhook, which can send headers).
"""

from __future__ import annotations

import msgspec

GHL_PREFIX = "/ghl/v1/{token}"
ACTIONS = ("book", "reschedule", "cancel")


class GhlUrl(msgspec.Struct, frozen=True, kw_only=True):
    emr: str
    action: str  # one of ACTIONS
    theirs: str  # the URL the seed document gives GHL users
    path: str  # the ClinicSync table route (gateway/compat/table.py) that answers it
    token_path: str  # where that route answers under GHL_PREFIX


def _same(emr: str, host: str, book: str, reschedule: str, cancel: str) -> tuple[GhlUrl, ...]:
    paths = dict(zip(ACTIONS, (book, reschedule, cancel), strict=True))
    return tuple(GhlUrl(emr=emr, action=a, theirs=f"https://{host}{p}", path=p, token_path=p) for a, p in paths.items())


def _prefixed(emr: str, host: str, prefix: str, book: str, reschedule: str, cancel: str) -> tuple[GhlUrl, ...]:
    """SimplePractice's `/appointments/book` and `/cancel` would collide with the native `/ghl/v1/{token}/
    appointments/…` workflow routes, so its routes take the name of ClinicSync's host for it (`sp-api`)."""
    urls = _same(emr, host, book, reschedule, cancel)
    return tuple(msgspec.structs.replace(u, token_path=prefix + u.path) for u in urls)


GHL_URLS: tuple[GhlUrl, ...] = (
    *_same("Jane", "jane-api.clinikoconnect.com", "/bookAppt", "/update_appt", "/cancel_appt"),
    *_same("Cliniko", "cliniko-api.clinikoconnect.com", "/bookAppt", "/update_appt", "/cancel_appt"),
    *_prefixed("SimplePractice", "sp-api.clinikoconnect.com", "/sp", "/appointments/book", "/appointments/update",
               "/appointments/cancel"),
    *_same("Practice Better", "pb-api.clinicsyncpro.com", "/bookSession", "/rescheduleSession", "/cancelSession"),
)  # fmt: skip


def token_routes() -> dict[str, str]:
    """Token path -> table path, once each (Jane and Cliniko share theirs)."""
    return {u.token_path: u.path for u in GHL_URLS}


def pasteable(base_url: str, token: str) -> dict[str, str]:
    """Their URL -> the URL to paste instead, for `ghl-tokens issue --base-url`."""
    base = base_url.rstrip("/") + GHL_PREFIX.replace("{token}", token)
    return {u.theirs: base + u.token_path for u in GHL_URLS}

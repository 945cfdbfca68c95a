"""Halaxy's bodies held to FHIR R4B, except where Halaxy's own evidence says it is not FHIR (and only there).

`tests/fhir_conformance.assert_fhir_exchanges` validates every exchange. Halaxy's documented deviations are put back
to FHIR before validating, one by one, so everything else is still checked against the R4B models:
- an Appointment without `status` (the SDK's live test: "Halaxy appointments carry no top-level status"; the docs'
  schema lists none): an answer's Appointment is validated as if it said `booked` (`proposed` for `$find`'s, which
  have no id); the adapter's own requests get no such allowance;
- the Subscription notification (docs/webhooks, the SDK's fixture): `meta.profile` a string (FHIR: a list),
  `SubscriptionStatus.topic` a Reference (R4B: a canonical), and empty `link`, `contained`, `extension`,
  `modifierExtension`, `security`, `tag` arrays (a Bundle has no `contained`/`extension`; FHIR JSON forbids `[]`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from adapters.emulation import Exchange
from tests.fhir_conformance import assert_fhir_exchanges, validate_resource

TOKEN_PATH = "/main/oauth/token"


def _with_status(value: Any) -> Any:
    """Every Appointment (at any depth: Bundle entries, Parameters) given the `status` Halaxy leaves out."""
    if isinstance(value, dict):
        out = {k: _with_status(v) for k, v in value.items()}
        if out.get("resourceType") == "Appointment" and "status" not in out:
            out["status"] = "proposed" if "id" not in out else "booked"
        return out
    if isinstance(value, list):
        return [_with_status(v) for v in value]
    return value


def _restored(body: bytes) -> bytes:
    if not body:
        return body
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    return msgspec.json.encode(_with_status(value))


def assert_halaxy_exchanges(exchanges: Iterable[Exchange]) -> dict[str, int]:
    """`assert_fhir_exchanges` over Halaxy's exchanges with the missing Appointment status restored in Halaxy's
    answers only: what the adapter sends must be FHIR as it is. The token endpoint (OAuth JSON) is skipped."""
    restored = [msgspec.structs.replace(e, response_body=_restored(e.response_body)) for e in exchanges]
    return assert_fhir_exchanges(restored, skip_prefixes=(TOKEN_PATH,))


# The members the documented notification leaves as `[]`; any other empty array is still refused.
DOCUMENTED_EMPTY = frozenset({"link", "contained", "extension", "modifierExtension", "security", "tag"})


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if not (k in DOCUMENTED_EMPTY and v == [])}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def assert_notification(body: bytes) -> None:
    """A notification as Halaxy documents it, with its three published deviations put back to R4B."""
    value = msgspec.json.decode(body)
    for name in ("contained", "extension", "modifierExtension"):
        assert value.pop(name, None) == [], name  # present and empty, as documented
    value = _drop_empty(value)
    if isinstance(value.get("meta", {}).get("profile"), str):
        value["meta"]["profile"] = [value["meta"]["profile"]]
    for entry in value["entry"]:
        status = entry["resource"]
        if isinstance(status.get("meta", {}).get("profile"), str):
            status["meta"]["profile"] = [status["meta"]["profile"]]
        topic = status.get("topic")
        if isinstance(topic, dict):
            status["topic"] = topic["reference"]
    validate_resource(msgspec.json.encode(value), "notification")

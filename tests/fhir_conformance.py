"""Hold both sides of a FHIR exchange to FHIR: every body an emulator received or answered, validated with the
`fhir.resources` R4B models (test-only: Pydantic stays out of the product), plus what those models leave unchecked.

The models check required elements, types, instants with offsets and unknown elements; they do not check code
values or JSON rules, so this also refuses a status outside R4's value set, `null`s and empty arrays or objects
(FHIR JSON forbids all three: absent elements are left out).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from fhir.resources.R4B import get_fhir_model_class

from adapters.emulation import Exchange

FHIR_JSON = "application/fhir+json"
MERGE_PATCH = "application/merge-patch+json"

# R4 required bindings the models do not enforce.
STATUSES: dict[str, frozenset[str]] = {
    "Appointment": frozenset(
        [
            *("proposed", "pending", "booked", "arrived", "fulfilled"),
            *("cancelled", "noshow", "entered-in-error", "checked-in", "waitlist"),
        ]
    ),
    "Slot": frozenset(["busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"]),
    "Bundle.type": frozenset(
        [
            *("document", "message", "transaction", "transaction-response", "batch"),
            *("batch-response", "history", "searchset", "collection"),
        ]
    ),
    "participant": frozenset(["accepted", "declined", "tentative", "needs-action"]),
}


class NotFhir(AssertionError):
    """A body an exchange carried is not valid FHIR R4B JSON."""


def _json_rules(value: Any, path: str) -> None:
    if value is None:
        raise NotFhir(f"null at {path} (FHIR JSON leaves absent elements out)")
    if isinstance(value, dict):
        if not value:
            raise NotFhir(f"empty object at {path}")
        for key, item in value.items():
            _json_rules(item, f"{path}.{key}")
    elif isinstance(value, list):
        if not value:
            raise NotFhir(f"empty array at {path}")
        for i, item in enumerate(value):
            _json_rules(item, f"{path}[{i}]")


def _codes(resource: dict[str, Any], path: str) -> None:
    kind = resource.get("resourceType")
    if kind in ("Appointment", "Slot") and resource.get("status") not in STATUSES[kind]:
        raise NotFhir(f"{path}: {kind}.status outside R4's value set")
    if kind == "Appointment":
        for participant in resource.get("participant", []):
            if participant.get("status") not in STATUSES["participant"]:
                raise NotFhir(f"{path}: Appointment.participant.status outside R4's value set")
    if kind == "Bundle":
        if resource.get("type") not in STATUSES["Bundle.type"]:
            raise NotFhir(f"{path}: Bundle.type outside R4's value set")
        for i, entry in enumerate(resource.get("entry", [])):
            if "resource" in entry:
                _codes(entry["resource"], f"{path}.entry[{i}]")
    if kind == "Parameters":
        for parameter in resource.get("parameter", []):
            if "resource" in parameter:
                _codes(parameter["resource"], f"{path}.parameter[{parameter.get('name')}]")
    for contained in resource.get("contained", []):
        _codes(contained, f"{path}.contained")


def validate_resource(body: bytes, where: str) -> str:
    """Validate one JSON resource; returns its resourceType."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise NotFhir(f"{where}: not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise NotFhir(f"{where}: not a resource (no resourceType)")
    kind = value["resourceType"]
    _json_rules(value, where)
    _codes(value, where)
    try:
        get_fhir_model_class(kind).model_validate(value)
    except KeyError:
        raise NotFhir(f"{where}: {kind} is not an R4B resource type") from None
    except ValueError as exc:  # pydantic's ValidationError
        raise NotFhir(f"{where}: {kind} is not valid R4B:\n{exc}") from None
    return str(kind)


def assert_fhir_exchanges(
    exchanges: Iterable[Exchange],
    *,
    skip_prefixes: tuple[str, ...] = (),
    request_types: tuple[str, ...] = (FHIR_JSON, "application/json"),
) -> dict[str, int]:
    """Validate every FHIR body of `exchanges`; returns how many of each resourceType were checked (so a test can
    assert its flows were seen). Paths under `skip_prefixes` (a token endpoint) are not FHIR and are skipped.

    Requests: every POST/PUT body must be a resource; a merge patch is a partial resource, so only its JSON rules are
    checked (the resource it produced is validated in the answer). Answers: every non-empty JSON body, success or
    error, must be a resource served as `application/fhir+json`.
    """
    seen: dict[str, int] = {}
    for exchange in exchanges:
        if any(exchange.path.startswith(prefix) for prefix in skip_prefixes):
            continue
        where = f"{exchange.method} {exchange.path}"
        request_type = (exchange.request_header("content-type") or "").split(";")[0].strip()
        if exchange.request_body and exchange.method in ("POST", "PUT", "PATCH"):
            if request_type == MERGE_PATCH:
                _json_rules(msgspec.json.decode(exchange.request_body), f"{where} (request)")
            else:
                if request_type not in request_types:
                    raise NotFhir(f"{where}: request sent as {request_type!r}")
                kind = validate_resource(exchange.request_body, f"{where} (request)")
                seen[f"request:{kind}"] = seen.get(f"request:{kind}", 0) + 1
        if exchange.response_body and exchange.status != 204:
            content_type = (exchange.response_content_type or "").split(";")[0].strip()
            if "json" not in content_type:
                continue  # a proxy's or fault's plain-text answer (the emulation layers' 503/504)
            if content_type != FHIR_JSON:
                raise NotFhir(f"{where}: answered {exchange.status} as {content_type!r}, not {FHIR_JSON}")
            kind = validate_resource(exchange.response_body, f"{where} (answer {exchange.status})")
            seen[kind] = seen.get(kind, 0) + 1
    return seen

"""Schemathesis hooks for the fuzz run in test_openapi.py (the CLI loads them from SCHEMATHESIS_HOOKS).

- `rules_declared`: a check. A schema-valid request may still be refused for a rule no schema can state (a time
  relative to now, a name that must exist in the EMR's catalog); the document lists those rules per operation in
  `x-rules`. Such a `422` passes only when every field it names is a declared rule's field. (schemathesis's own
  positive_data_acceptance, which runs too, is told that 422 can happen; this check decides which 422s are allowed.)
- `map_case`, `before_add_examples`: test data, not what counts as a failure. The schema-valid parts of a request are
  pointed at what the test seeded (a practitioner and service of the emulator's catalog, open slots, booked
  appointments, a webhook with a delivery, a GHL token and GHL-booked appointments, a Practice Better location), so
  they reach the gateway's logic instead of stopping at "no such practitioner" or 404. In the stateful phase ids come
  from the document's links instead; what was drawn invalid stays as drawn.
- `before_call`: Practice Better's webhook deliveries are signed, as Practice Better signs them.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
import time
from typing import Any

import schemathesis
from cryptography.hazmat.primitives.asymmetric import ed25519
from schemathesis.generation.case import Case

from adapters.practicebetter import signature

SEED: dict[str, Any] = json.loads(os.environ.get("EGW_FUZZ_SEED", "{}"))
RULES = "x-rules"
DECIDED_HERE = (422,)
# The GoHighLevel routes take GHL's bodies as GHL sends them and check what they need in gateway/ghl/ without
# declaring it in the document yet: their 422s are not held to `rules_declared` until they do.
NOT_YET_DECLARED: tuple[str, ...] = ()


class UndeclaredRule(AssertionError):
    pass


def _fields(response: Any) -> list[str]:
    try:
        problem = response.json()
    except ValueError:
        return []
    errors = problem.get("errors") if isinstance(problem, dict) else None
    return [str(e.get("field")) for e in errors or [] if isinstance(e, dict)]


@schemathesis.check
def rules_declared(ctx: Any, response: Any, case: Case) -> bool | None:
    if not _positive(case) or response.status_code not in DECIDED_HERE or case.path.startswith(NOT_YET_DECLARED):
        return None
    declared = [rule["field"] for rule in case.operation.definition.raw.get(RULES, [])]
    fields = _fields(response)
    undeclared = [f for f in fields if not any(f == d or f.startswith(d + ".") for d in declared)]
    if fields and not undeclared:
        return None
    raise UndeclaredRule(
        f"{case.method} {case.path} refused schema-valid data with {response.status_code} for "
        f"{undeclared or 'no named field'}, which the document's x-rules do not declare ({declared}): "
        f"{response.text[:300]}"
    )


def _positive(case: Case) -> bool:
    """Schema-valid in every part (a case can be marked positive while one part was drawn as negative)."""
    meta = case.meta
    return (
        meta is not None
        and meta.generation.mode.is_positive
        and all(c.mode.is_positive for c in meta.components.values())
    )


_next_start = itertools.count()


def _pick(values: list[Any]) -> Any:
    """The next seeded value (an open slot each time, until they run out): one worker draws cases in one order,
    so a run with the same seed is the same run."""
    return values[next(_next_start) % len(values)]


def _ref(generated: Any, seeded: dict[str, Any]) -> Any:
    """A generated reference with each key the seed knows replaced by the seeded value of that key."""
    if not isinstance(generated, dict):
        return generated
    return {k: (seeded[k] if k in seeded and v is not None else v) for k, v in generated.items()}


def _booking(body: dict[str, Any]) -> None:
    body["practitioner"] = _ref(body.get("practitioner"), SEED["practitioner"])
    body["service"] = _ref(body.get("service"), SEED["service"])
    if "start" in body:
        body["start"] = _pick(SEED["starts"])
        body.pop("end", None)
        body.pop("time_zone", None)
    if isinstance(body.get("patient"), dict) and body["patient"].get("id") is not None:
        body["patient"]["id"] = SEED["patient_id"]


def _move(body: dict[str, Any]) -> None:
    if body.get("practitioner") is not None:
        body["practitioner"] = _ref(body["practitioner"], SEED["practitioner"])
    if body.get("start") is not None:
        body["start"] = _pick(SEED["starts"])
        body.pop("end", None)


def _query_refs(query: dict[str, Any]) -> None:
    for prefix in ("practitioner", "service"):
        seeded = {f"{prefix}_{k}": v for k, v in SEED[prefix].items()}
        group = query.get(prefix)
        if isinstance(group, dict):
            query[prefix] = _ref(group, seeded)
        else:
            query.update(_ref({k: v for k, v in query.items() if k in seeded}, seeded))


_next_ghl_id = itertools.count()


def _ghl(body: dict[str, Any], action: str) -> None:
    """A GoHighLevel workflow body that names the seeded catalog, a contact and (to book) a fresh GHL id; to
    reschedule or cancel, the GHL id the seed booked for that."""
    calendar = dict(body.get("calendar") or {})
    calendar.pop("selectedTimezone", None)
    calendar.pop("endTime", None)
    if action == "book":
        calendar["appointmentId"] = f"fuzz-ghl-{next(_next_ghl_id)}"
        body.update(SEED["ghl"]["contact"])
        body["customData"] = {
            "practitioner_id": SEED["practitioner"]["id"],
            "service_id": SEED["service"]["id"],
        }
    else:
        calendar["appointmentId"] = SEED["ghl"][action]
    if action != "cancel":
        calendar["startTime"] = _pick(SEED["starts"])
    body["calendar"] = calendar


def _name(location: Any) -> str:
    return str(getattr(location, "value", location))


def valid(case: Case, location: str) -> bool:
    """Whether `case`'s part at `location` (path, query, header, body) was drawn schema-valid, or not drawn."""
    if case.meta is None:
        return True
    components = case.meta.components
    info = next((c for loc, c in components.items() if _name(loc) == location), None)
    return info is None or info.mode.is_positive


def _parts(case: Case) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """The path parameters, body and query of `case` that were drawn schema-valid (the others stay as drawn, so a
    negative case stays negative); empty stand-ins for the rest."""
    # Copies: a phase may build several cases around one drawn value.
    path: dict[str, Any] = {}
    if case.path_parameters is not None and valid(case, "path"):
        path = case.path_parameters = copy.deepcopy(case.path_parameters)
    body: dict[str, Any] | None = None
    if isinstance(case.body, dict) and valid(case, "body"):
        body = case.body = copy.deepcopy(case.body)
    query: dict[str, Any] = {}
    if case.query is not None and valid(case, "query"):
        query = case.query = copy.deepcopy(case.query)
    return path, body, query


def _targeted(case: Case) -> tuple[str, str | None] | None:
    """What a negative coverage scenario is about: (location, parameter or body field; None for the whole body).
    That value is invalid in a part that may still be marked valid, so it is kept as drawn."""
    if case.meta is None or not case.meta.generation.mode.is_negative:
        return None
    data = case.meta.phase.data
    location = _name(getattr(data, "parameter_location", None))
    if location in ("path", "query", "header"):
        return location, getattr(data, "parameter", None)
    if location == "body":
        pointer = str(getattr(data, "location", None) or "").split("/")
        return "body", pointer[2] if len(pointer) > 2 and pointer[1] == "properties" else None
    return None


def _seeded(case: Case, *, ids: bool = True) -> Case:
    """`ids=False` (stateful phase): path ids come from the links, only catalog references and times are seeded
    (a link's request body is merged over them afterwards)."""
    target = _targeted(case)
    if target == ("body", None):
        return case
    kept = {
        "path": dict(case.path_parameters or {}),
        "query": dict(case.query or {}),
        "body": dict(case.body) if isinstance(case.body, dict) else {},
    }
    _map(case, ids=ids)
    if target is not None and target[1] is not None:
        location, name = target
        container = {"path": case.path_parameters, "query": case.query, "body": case.body}.get(location)
        if isinstance(container, dict) and name in kept.get(location, {}):
            container[name] = copy.deepcopy(kept[location][name])
    return case


def _map(case: Case, *, ids: bool) -> None:
    label = f"{case.method.upper()} {case.path}"
    path, body, query = _parts(case)
    if not ids:
        path = {}
    if label == "POST /v1/appointments" and body is not None:
        _booking(body)
    elif label == "PATCH /v1/appointments/{appointment_id}":
        path["appointment_id"] = SEED["appointments"]["reschedule"]
        if body is not None:
            _move(body)
    elif label == "GET /v1/appointments/{appointment_id}":
        path["appointment_id"] = SEED["appointments"]["get"]
    elif label == "POST /v1/appointments/{appointment_id}/cancel":
        path["appointment_id"] = SEED["appointments"]["cancel"]
    elif label == "GET /v1/appointments":
        query["patient_id"] = SEED["patient_id"]
    elif label in ("GET /v1/availability", "GET /v1/availability/next"):
        _query_refs(query)
        for bound in ("from", "to"):
            if bound in query:
                query[bound] = SEED["range"][bound]
    elif label.startswith(("POST /ghl/v1/appointments/", "POST /ghl/v1/{token}/appointments/")):
        path.update({"token": SEED["ghl"]["token"]} if "token" in path else {})
        if body is not None:
            _ghl(body, label.rsplit("/", 1)[1])
    elif label.startswith(("GET /practicebetter/", "POST /practicebetter/")):
        pb = SEED["practice_better"]
        path.update({"location_id": pb["location_id"]} if "location_id" in path else {})
        if "verification_token" in query:
            query["verification_token"] = pb["verification_token"]
        if body is not None:
            body.update({"eventType": "client.updated", "resourceId": pb["client_id"]})
    elif label.startswith("POST /halaxy/"):
        hx = SEED["halaxy"]
        path.update({"location_id": hx["location_id"]} if "location_id" in path else {})
        if body is not None:
            body["entry"] = [
                {
                    "resource": {
                        "resourceType": "SubscriptionStatus",
                        "type": "event-notification",
                        "notificationEvent": [{"focus": {"reference": f"Patient/{hx['patient_id']}"}}],
                    }
                }
            ]
    elif label == "POST /v1/webhooks" and body is not None:
        body["url"] = SEED["webhook_url"]
    elif label == "DELETE /v1/webhooks/{webhook_id}":
        path["webhook_id"] = SEED["webhooks"]["delete"]
    elif label.startswith(("GET /v1/webhooks/{", "POST /v1/webhooks/{")):
        path["webhook_id"] = SEED["webhooks"]["keep"]
        if "delivery_id" in path:
            path["delivery_id"] = SEED["delivery_id"]


@schemathesis.hook
def map_case(ctx: Any, case: Case) -> Case:
    """The drawn-valid parts of every case; in the stateful phase, ids come from the document's links."""
    if not SEED or case.meta is None:
        return case
    return _seeded(case, ids=case.meta.phase.name.value != "stateful")


@schemathesis.hook
def before_add_examples(ctx: Any, examples: list[Case]) -> None:
    """The document's examples are schema-valid but name the demo's catalog and a time that passes."""
    if SEED:
        for case in examples:
            _seeded(case)


@schemathesis.hook
def before_call(ctx: Any, case: Case, kwargs: dict[str, Any]) -> None:
    """Practice Better signs what it sends: the body's bytes, signed with the seeded secret (schema-valid cases only:
    an invalid one is refused whether or not it is signed)."""
    if SEED and case.method.upper() == "POST" and case.path == "/ghl/v1/marketplace/webhooks":
        _sign_ghl(case)
        return
    if SEED and case.method.upper() == "POST" and case.path.startswith("/halaxy/"):
        # Halaxy sends the Authentication Header configured on its webhook (no signature): schema-valid cases only.
        if _positive(case):
            case.headers = {**(case.headers or {}), "Authorization": SEED["halaxy"]["secret"]}
        return
    if not SEED or case.method.upper() != "POST" or not case.path.startswith("/practicebetter/"):
        return
    if isinstance(case.body, (dict, list, str, int, float, bool)) and _positive(case) and valid(case, "header"):
        raw = json.dumps(case.body).encode()  # what the transport sends for a JSON body (`requests`' json=)
        headers = case.headers if case.headers is not None else {}
        headers[signature.HEADER] = signature.sign(SEED["practice_better"]["signing_secret"], int(time.time()), raw)
        case.headers = headers


def _sign_ghl(case: Case) -> None:
    """GoHighLevel signs the raw body with Ed25519 (`X-GHL-Signature`); schema-valid bodies get a real signature."""
    if not isinstance(case.body, (dict, list)) or not _positive(case):
        return
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED["ghl_marketplace"]["private_key"]))
    raw = json.dumps(case.body).encode()
    headers = case.headers if case.headers is not None else {}
    headers["X-GHL-Signature"] = base64.b64encode(key.sign(raw)).decode()
    case.headers = headers

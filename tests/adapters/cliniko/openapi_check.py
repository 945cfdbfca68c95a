"""Validate recorded Cliniko exchanges against Cliniko's official OpenAPI document with openapi-core.

The document's regexes are Ruby's; they are rewritten to mean in Python what they mean in Ruby (never dropped).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

from adapters.emulation import Exchange

SPEC_NAME = "cliniko-openapi.yaml"
SPEC_HOST = "https://api.au1.cliniko.com"  # the document's server is https://api.au1.cliniko.com/v1


def spec_path() -> Path | None:
    candidates = []
    if os.environ.get("EGW_SHARED_DIR"):
        candidates.append(Path(os.environ["EGW_SHARED_DIR"]) / "reference" / SPEC_NAME)
    candidates.append(Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / SPEC_NAME)
    return next((p for p in candidates if p.is_file()), None)


def ruby_pattern(pattern: str) -> str:
    """A Ruby regex as Python must write it to match the same strings.

    Ruby: `^`/`$` are line anchors (Python MULTILINE), `\\A` start, `\\z` end, `\\Z` end before a final newline,
    `\\h` a hex digit. Rails validates e-mail with `/…/i`, so the uppercase-only e-mail class is case-insensitive.
    """
    escapes = {"h": "[0-9a-fA-F]", "z": "\\Z", "Z": "(?=\\n?\\Z)", "A": "\\A"}
    out = re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), pattern)
    flags = "m"
    if "@" in out and "[A-Z" in out and "a-z" not in out:
        flags += "i"
    return f"(?{flags}){out}"


def _fix_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (ruby_pattern(v) if k == "pattern" and isinstance(v, str) else _fix_patterns(v)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_fix_patterns(v) for v in node]
    return node


def load_openapi(path: Path) -> OpenAPI:
    with path.open(encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)
    spec = _nullable_enums(_dedupe_enums(_fix_patterns(spec)))
    _allow_null_ends_at(spec)
    for pattern in _patterns(spec):
        re.compile(pattern)  # every rewritten pattern must be a valid Python regex
    # The spec validator checks patterns as ECMA-262, which has no inline flags; the rewritten patterns need them.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def _allow_null_ends_at(spec: dict[str, Any]) -> None:
    """The body's own description says `ends_at` "set to null on update" recomputes the end; its schema forgot
    `nullable`. The document is taken at its word (the description), not at its omission."""
    body = spec["components"]["requestBodies"]["IndividualAppointment"]["content"]["application/json"]["schema"]
    body["properties"]["ends_at"]["nullable"] = True


def _nullable_enums(node: Any) -> Any:
    """OpenAPI 3.0.3: `nullable: true` admits null, but JSON Schema's `enum` rejects a null it does not list
    (e.g. `cancellation_reason_description` of an appointment that is not cancelled). List it."""
    if isinstance(node, dict):
        out = {k: _nullable_enums(v) for k, v in node.items()}
        if out.get("nullable") is True and isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
    if isinstance(node, list):
        return [_nullable_enums(v) for v in node]
    return node


def _dedupe_enums(node: Any) -> Any:
    """The document lists some time zones twice (`America/Pangnirtung`); JSON Schema wants unique enum items."""
    if isinstance(node, dict):
        return {
            k: (list(dict.fromkeys(v)) if k == "enum" and isinstance(v, list) else _dedupe_enums(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_dedupe_enums(v) for v in node]
    return node


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "pattern" and isinstance(v, str)]
        return found + [p for v in node.values() for p in _patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in _patterns(v)]
    return []


@dataclass
class RawRequest:
    """openapi-core's Request protocol over a recorded exchange, placed on the document's server."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None


@dataclass
class RawResponse:
    status_code: int
    content_type: str
    data: bytes | None
    headers: Headers = field(default_factory=Headers)


def to_request(exchange: Exchange) -> RawRequest:
    from urllib.parse import parse_qsl

    headers = Headers(exchange.request_headers)
    return RawRequest(
        host_url=SPEC_HOST,
        path=exchange.path,
        method=exchange.method.lower(),
        parameters=RequestParameters(
            query=ImmutableMultiDict(parse_qsl(exchange.query, keep_blank_values=True)), header=headers, cookie={}
        ),
        content_type=(exchange.request_header("content-type") or "").lower(),
        body=exchange.request_body or None,
    )


def to_response(exchange: Exchange) -> RawResponse:
    return RawResponse(
        status_code=exchange.status,
        content_type=(exchange.response_content_type or "").lower(),
        data=exchange.response_body or None,
        headers=Headers(exchange.response_headers),
    )


def problems(openapi: OpenAPI, exchange: Exchange) -> list[str]:
    """What the document says is wrong with this request and (for documented statuses) its response."""
    where = f"{exchange.method} {exchange.path}?{exchange.query} -> {exchange.status}"
    found: list[str] = []
    request = to_request(exchange)
    try:
        openapi.validate_request(request)
    except Exception as exc:  # openapi-core raises a family of errors; all of them are findings
        found.append(f"request {where}: {_describe(exc)}")
        return found
    try:
        openapi.validate_response(request, to_response(exchange))
    except ResponseNotFound:
        pass  # the document only describes 2xx and 422
    except Exception as exc:
        found.append(f"response {where}: {_describe(exc)}")
    return found


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    for detail in getattr(exc, "schema_errors", None) or []:
        parts.append(f"  - {getattr(detail, 'message', detail)} at {list(getattr(detail, 'absolute_path', []))}")
    cause = exc.__cause__
    if cause is not None:
        parts.append(f"  caused by {type(cause).__name__}: {cause}")
        for detail in getattr(cause, "schema_errors", None) or []:
            parts.append(f"  - {getattr(detail, 'message', detail)} at {list(getattr(detail, 'absolute_path', []))}")
    return "\n".join(parts)

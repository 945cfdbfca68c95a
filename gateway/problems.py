"""Every failure leaves as RFC 9457 problem+json with a stable `code`; this is the one place that decides how."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from adapters import errors as ae
from gateway import emr_contract
from gateway.errors import GatewayError
from gateway.logsafe import log_unexpected
from schemas.problems import EMRDetail, ErrorCode, FieldError, Problem

log = logging.getLogger("emr_gateway.errors")

PROBLEM_TYPE = "https://emr-gateway.dev/problems/"
MEDIA_TYPE = "application/problem+json"

# (status, code, title) for each adapter error; the most specific class wins because we walk the MRO.
_ADAPTER_MAP: dict[type[ae.AdapterError], tuple[int, ErrorCode, str]] = {
    ae.NotFound: (404, ErrorCode.NOT_FOUND, "Not found"),
    ae.SlotUnavailable: (409, ErrorCode.SLOT_UNAVAILABLE, "Slot unavailable"),
    ae.InvalidReference: (422, ErrorCode.VALIDATION_FAILED, "The EMR rejected a reference"),
    ae.AlreadyCancelled: (409, ErrorCode.APPOINTMENT_CANCELLED, "The appointment is cancelled"),
    ae.Rejected: (502, ErrorCode.EMR_ERROR, "The EMR rejected the request"),
    ae.AuthFailed: (502, ErrorCode.EMR_AUTH_FAILED, "The EMR refused the location's credentials"),
    ae.RateLimited: (429, ErrorCode.RATE_LIMITED, "The EMR's rate limit was reached"),
    ae.Unavailable: (503, ErrorCode.EMR_UNAVAILABLE, "The EMR is unavailable"),
    ae.Timeout: (504, ErrorCode.EMR_TIMEOUT, "The EMR did not answer in time"),
    ae.OutcomeUnknown: (504, ErrorCode.EMR_OUTCOME_UNKNOWN, "The EMR's outcome is unknown"),
    ae.Unsupported: (501, ErrorCode.NOT_SUPPORTED, "Not supported by this EMR"),
    ae.ContractChanged: (502, ErrorCode.EMR_CONTRACT_CHANGED, "The EMR's answer no longer matches the adapter"),
    ae.WriteMismatch: (502, ErrorCode.EMR_WRITE_MISMATCH, "The EMR stored something other than what was asked"),
}


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    headers = dict(headers or {})
    if problem.retry_after is not None:
        headers["Retry-After"] = str(problem.retry_after)
    return Response(
        content=msgspec.json.encode(problem),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _problem(
    status: int,
    code: ErrorCode,
    title: str,
    request: Request[Any, Any, Any],
    *,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
    emr: EMRDetail | None = None,
    retry_after: int | None = None,
    operation_id: str | None = None,
) -> Problem:
    return Problem(
        type=PROBLEM_TYPE + code.value,
        title=title,
        status=status,
        code=code,
        instance=request.url.path,
        detail=detail,
        errors=errors,
        emr=emr,
        retry_after=retry_after,
        operation_id=operation_id,
    )


def from_adapter_error(exc: ae.AdapterError, request: Request[Any, Any, Any]) -> Problem:
    status, code, title = next(v for k, v in _ADAPTER_MAP.items() if isinstance(exc, k))
    emr = EMRDetail(status=exc.emr_status, message=exc.emr_message) if exc.emr_status or exc.emr_message else None
    errors = None
    if isinstance(exc, ae.InvalidReference) and exc.field:
        errors = [FieldError(field=exc.field, message=exc.message)]
    elif isinstance(exc, ae.ContractChanged):
        errors = [FieldError(field=exc.path, message=exc.problem)]
    elif isinstance(exc, ae.WriteMismatch):
        errors = [_mismatch_field(name, minutes, exc.settings.get(name)) for name, minutes in exc.differences]
    retry_after = exc.retry_after if isinstance(exc, ae.RateLimited) else None
    operation_id = exc.operation_id if isinstance(exc, ae.OutcomeUnknown) else None
    return _problem(
        status,
        code,
        title,
        request,
        detail=exc.message,
        emr=emr,
        errors=errors,
        retry_after=retry_after,
        operation_id=operation_id,
    )


def _mismatch_field(name: str, minutes: int | None, setting: str | None) -> FieldError:
    what = f"stored {minutes:+d} min from what was asked" if minutes is not None else f"stored another {name}"
    return FieldError(field=name, message=f"{what}; governed by {setting}" if setting else what)


def handle_adapter_error(request: Request[Any, Any, Any], exc: ae.AdapterError) -> Response[bytes]:
    log.warning("emr error %s on %s", type(exc).__name__, request.scope.get("path_template", request.url.path))
    return problem_response(from_adapter_error(exc, request))


async def after_exception(exc: Exception, scope: Any) -> None:
    """Before the problem is sent (Litestar awaits this hook first): count EMR errors, and remember a contract change
    for the location's health, so the next health check on any replica already shows it."""
    if not isinstance(exc, ae.AdapterError):
        return
    app = scope.get("litestar_app")
    runtime = getattr(app.state, "runtime", None) if app is not None else None
    if runtime is None:
        return
    emr = str(scope.get("egw_emr", "unknown"))
    runtime.metrics.emr_errors.labels(emr, type(exc).__name__).inc()
    location_id = scope.get("egw_location_id")
    if isinstance(exc, ae.ContractChanged) and isinstance(location_id, str):
        await emr_contract.note(runtime.store, location_id, exc, runtime.metrics, emr)


def handle_gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    return problem_response(
        _problem(
            exc.status, exc.code, exc.title, request, detail=exc.detail, errors=exc.errors, retry_after=exc.retry_after
        )
    )


# msgspec quotes the whole regular expression a string missed; the field's `pattern` in the OpenAPI document says it.
_REGEX = re.compile(r"matching regex '.*'", re.DOTALL)


def _field_errors(extra: object) -> list[FieldError]:
    out: list[FieldError] = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                key = str(item.get("key") or "body")
                message = _REGEX.sub("matching the field's pattern in the OpenAPI document", str(item.get("message")))
                out.append(FieldError(field=key, message=message if item.get("message") else "invalid"))
    return out


def handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    errors = _field_errors(exc.extra)
    messages = " ".join(e.message for e in errors)
    if "malformed" in messages.lower() or "JSON is malformed" in str(exc.detail):
        return problem_response(
            _problem(400, ErrorCode.BAD_REQUEST, "Bad request", request, detail="the body is not valid JSON")
        )
    detail = errors[0].message if len(errors) == 1 else "the request does not match the schema"
    return problem_response(
        _problem(422, ErrorCode.VALIDATION_FAILED, "Validation failed", request, detail=detail, errors=errors or None)
    )


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc, NotAuthorizedException):
        return problem_response(_problem(401, ErrorCode.UNAUTHORIZED, "Unauthorized", request, detail=exc.detail))
    if isinstance(exc, NotFoundException):
        return problem_response(_problem(404, ErrorCode.NOT_FOUND, "Not found", request, detail="no such route"))
    if isinstance(exc, RequestEntityTooLarge):
        return problem_response(
            _problem(413, ErrorCode.PAYLOAD_TOO_LARGE, "Payload too large", request, detail="the body is too large")
        )
    if isinstance(exc, MethodNotAllowedException):
        # RFC 9110: a 405 lists the methods the resource has (Litestar's router computed them).
        allow = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
        return problem_response(
            _problem(405, ErrorCode.BAD_REQUEST, "Method not allowed", request, detail="method not allowed"), allow
        )
    status = exc.status_code
    if status >= 500:
        return handle_internal(request, exc)
    retry_after = None
    if status == 429:
        ra = (exc.headers or {}).get("Retry-After")
        retry_after = math.ceil(float(ra)) if ra else 1
        return problem_response(
            _problem(429, ErrorCode.RATE_LIMITED, "Rate limited", request, detail=exc.detail, retry_after=retry_after)
        )
    return problem_response(_problem(status, ErrorCode.BAD_REQUEST, "Bad request", request, detail=exc.detail))


def handle_internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The stack but not the message: an exception's text can carry patient data from a request body.
    log_unexpected(log, f"unhandled error on {request.scope.get('path_template', 'unmatched')}", exc)
    return problem_response(
        _problem(500, ErrorCode.INTERNAL_ERROR, "Internal error", request, detail="an unexpected error occurred")
    )


EXCEPTION_HANDLERS = {
    ae.AdapterError: handle_adapter_error,
    GatewayError: handle_gateway_error,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    Exception: handle_internal,
}

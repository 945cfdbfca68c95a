"""Errors the gateway itself raises (the adapters' own hierarchy lives in adapters.errors)."""

from __future__ import annotations

from schemas.problems import ErrorCode, FieldError


class GatewayError(Exception):
    status: int = 400
    code: ErrorCode = ErrorCode.BAD_REQUEST
    title: str = "Bad request"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after


class BadRequest(GatewayError):
    pass


class Unauthorized(GatewayError):
    status, code, title = 401, ErrorCode.UNAUTHORIZED, "Unauthorized"


class NotFoundError(GatewayError):
    status, code, title = 404, ErrorCode.NOT_FOUND, "Not found"


class ValidationFailed(GatewayError):
    status, code, title = 422, ErrorCode.VALIDATION_FAILED, "Validation failed"


class UnknownPractitioner(GatewayError):
    status, code, title = 422, ErrorCode.UNKNOWN_PRACTITIONER, "Unknown practitioner"


class UnknownService(GatewayError):
    status, code, title = 422, ErrorCode.UNKNOWN_SERVICE, "Unknown service"


class IdempotencyInFlight(GatewayError):
    status, code, title = 409, ErrorCode.IDEMPOTENCY_IN_FLIGHT, "Request with this Idempotency-Key is in flight"


class IdempotencyMismatch(GatewayError):
    status, code, title = 422, ErrorCode.IDEMPOTENCY_MISMATCH, "Idempotency-Key reused with another body"


class TooManyRequests(GatewayError):
    status, code, title = 429, ErrorCode.RATE_LIMITED, "Rate limited"


class PayloadTooLarge(GatewayError):
    status, code, title = 413, ErrorCode.PAYLOAD_TOO_LARGE, "Payload too large"

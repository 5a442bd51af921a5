"""Domain errors. Services raise these; the API renders them as

    {"error": {"code": "snake_case_code", "message": "human text", "details": {...}}}

with the status they carry. The codes are part of API.md's contract.
"""

from __future__ import annotations

from typing import Any

VALIDATION_ERROR = "validation_error"
NON_FIELD = "non_field_errors"  # DRF's name, for a problem that is not one field's


class BillingError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}
        if self.code == VALIDATION_ERROR and "fields" not in self.details:
            # one shape everywhere (README, Errors): details.fields maps each wrong field to its message
            self.details = {**self.details, "fields": {NON_FIELD: message}}


class InvalidRequest(BillingError):
    """400: the request names something unknown or breaks a rule of the contract."""


def invalid_field(field: str, message: str) -> InvalidRequest:
    """The validation_error for one wrong field, in the one shape."""
    return InvalidRequest(message, code=VALIDATION_ERROR, details={"fields": {field: message}})


class NotFound(BillingError):
    status_code = 404
    code = "not_found"


class Conflict(BillingError):
    status_code = 409
    code = "conflict"


class Forbidden(BillingError):
    status_code = 403
    code = "permission_denied"


class PayloadTooLarge(BillingError):
    status_code = 413
    code = "request_too_large"


class ProviderDown(BillingError):
    """503: the payment provider could not be reached; retrying later may succeed."""

    status_code = 503
    code = "payment_provider_unavailable"


class ProviderRefused(BillingError):
    """502: the payment provider refused the request."""

    status_code = 502
    code = "payment_provider_error"

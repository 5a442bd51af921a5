"""One error shape for the whole API (API.md, Conventions):

    {"error": {"code": "snake_case_code", "message": "human text", "details": {...}}}

`exception_handler` is DRF's; `json_404` / `json_500` are Django's handlers for
/api/ paths, so unknown routes and crashes answer in the same shape.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import DisallowedHost, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from .errors import NON_FIELD, BillingError
from .observability import API_ERRORS

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    API_ERRORS.labels(code=code).inc()
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status_code: int, code: str, message: str, details: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status_code)


# DRF's default codes, renamed where API.md names the case differently.
_RENAMED = {
    "parse_error": "malformed_json",
    "authentication_failed": "invalid_api_key",
    "throttled": "rate_limited",
}


def _code_of(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "validation_error"
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else str(exc.default_code)
    return _RENAMED.get(code, code)


def field_messages(detail: Any, path: str = "") -> dict[str, str]:
    """DRF's validation detail in the one shape: {"<field>": "<message>"}, nested fields by
    dotted path ("usage.api_calls"), a field's several messages joined, a problem that is
    not one field's under `non_field_errors`."""
    if isinstance(detail, dict):
        out: dict[str, str] = {}
        for name, inner in detail.items():
            out.update(field_messages(inner, f"{path}.{name}" if path else str(name)))
        return out
    if isinstance(detail, list) and any(isinstance(item, (dict, list)) for item in detail):
        out = {}
        for index, inner in enumerate(detail):  # a list field's items: the valid ones are empty
            out.update(field_messages(inner, f"{path}.{index}" if path else str(index)))
        return out
    messages = [str(item) for item in detail] if isinstance(detail, list) else [str(detail)]
    return {path or NON_FIELD: " ".join(messages)} if messages else {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, BillingError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD: exc.messages})
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django's 500 handler answers and logs it
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)
    if wait is not None:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    code = _code_of(exc)
    details: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        message = "The request is not valid; see details."
        details = {"fields": field_messages(exc.detail)}
    else:
        message = str(exc.detail)
    missing = getattr(exc, "missing", None)
    if missing:
        details["missing_scopes"] = missing
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        details["retry_after_seconds"] = int(headers["Retry-After"])
        if type(exc) is exceptions.Throttled:  # the key's own rate (others say what they limit)
            message = "Request rate exceeded for this API key; retry later."
    set_rollback()
    return Response(error_body(code, message, details), status=exc.status_code, headers=headers)


def json_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's own 400s (a Host outside ALLOWED_HOSTS, another suspicious request): the API
    answers them in its error shape, like every other error."""
    if request.path.startswith(API_PREFIX):
        if isinstance(exception, DisallowedHost):
            return error_response(400, "invalid_host", "The Host header names no host this service answers for.")
        return error_response(400, "bad_request", "The request was refused as malformed or suspicious.")
    return defaults.bad_request(request, exception or SuspiciousOperation())


def json_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return error_response(404, "not_found", "No such resource.")
    return defaults.page_not_found(request, exception or Http404())


def json_500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return error_response(500, "internal_error", "An internal error occurred; it has been logged.")
    return defaults.server_error(request)

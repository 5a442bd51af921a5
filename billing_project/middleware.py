"""Request-scoped plumbing: request id, access log, metrics, and the API body bound."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from auditlog.middleware import AuditlogMiddleware
from axes.middleware import AxesMiddleware
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django_otp.middleware import OTPMiddleware

from .api_errors import API_PREFIX, error_response
from .net import client_address
from .observability import REQUEST_SECONDS, REQUESTS, principal_var, request_id_var

access_log = logging.getLogger("billing.access")
logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 2

# A caller's X-Request-ID is honoured only if it is a plausible id, so logs
# cannot be stuffed with arbitrary text.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        rid_token = request_id_var.set(request_id)
        principal_token = principal_var.set(None)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            elapsed = time.perf_counter() - started
            match = getattr(request, "resolver_match", None)
            route = match.route if match is not None else "unmatched"
            REQUESTS.labels(method=request.method, route=route, status=response.status_code).inc()
            REQUEST_SECONDS.labels(route=route).observe(elapsed)
            if principal_var.get() is None and getattr(request, "user", None) is not None:
                user = request.user
                if user.is_authenticated:
                    principal_var.set(f"staff:{user.get_username()}")
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            return response
        finally:
            principal_var.reset(principal_token)
            request_id_var.reset(rid_token)


class ApiBodyLimitMiddleware:
    """413 before anything reads an oversized API body that declares its length; and a NUL
    in the path or the query string refused before it reaches a lookup (PostgreSQL's text
    cannot hold one: it was a DataError, answered 500). A path naming no object is 404;
    a query parameter is the request's: 400. The body's text is the parser's."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            if "\x00" in request.path:
                return error_response(404, "not_found", "No such resource.")
            bad = sorted({name for name, values in request.GET.lists() for v in [name, *values] if "\x00" in v})
            if bad:
                names = [name.replace("\x00", "\\x00")[:60] for name in bad]
                return error_response(
                    400,
                    "validation_error",
                    "The request is not valid; see details.",
                    {"fields": dict.fromkeys(names, "NUL characters are not accepted.")},
                )
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.API_MAX_BODY_BYTES
            if length > limit:
                return error_response(
                    413,
                    "request_too_large",
                    f"The request body exceeds {limit} bytes.",
                    {"limit_bytes": limit},
                )
        return self.get_response(request)


class ApiUnavailableMiddleware:
    """A database that dropped the connection, timed out or rolled the transaction back
    under contention is not a bug: the API answers 503 `service_unavailable` with
    Retry-After, which a client retries. That holds when the outcome of a COMMIT is unknown
    (the connection died during it) too: every write is idempotent by its key, so the retry
    is safe whether the first attempt was stored or not (README, Errors)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX) or not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("api.database_unavailable", exc_info=exception, extra={"path": request.path})
        response = error_response(
            503,
            "service_unavailable",
            "The database is unavailable or the request's outcome is unknown; retry it (with the same "
            "idempotency key, for a write).",
            {"retry_after_seconds": RETRY_AFTER_SECONDS},
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy on the staff admin and on invoice documents (HTML): a script
    injected through data (a tenant's name, an invoice line) has nowhere to run from, and
    neither page can be framed. The API's JSON needs none; Swagger UI keeps its inline script."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" in response:
            return response
        if request.path.startswith("/admin/"):
            response["Content-Security-Policy"] = settings.CSP_ADMIN
        elif request.path.startswith("/api/v1/") and response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = settings.CSP_DOCUMENT
        return response


class StaffPagesOnly:
    """Mixin for a middleware that serves staff pages only: key-authenticated API requests
    pass straight through it."""

    get_response: Callable[[HttpRequest], HttpResponse]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc, no-any-return]


class StaffAuditlogMiddleware(StaffPagesOnly, AuditlogMiddleware):  # type: ignore[misc]
    """django-auditlog's actor for staff pages: API requests carry a key, not a user, and
    their writes record their own audit rows (connecting signals per request costs a fifth
    of an entitlement check). The address recorded is the client's as the trusted proxy
    reports it: auditlog's own took the left-most X-Forwarded-For, which anyone can send."""

    @staticmethod
    def _get_remote_addr(request: HttpRequest) -> str:
        return client_address(request)


class StaffAxesMiddleware(StaffPagesOnly, AxesMiddleware):  # type: ignore[misc]
    """Login lockout where logins happen (the admin), not on every API request."""


# API requests authenticate with a key and never use a session, a staff user or flash
# messages; skipping these on /api/ is a tenth of an entitlement check.
class StaffSessionMiddleware(StaffPagesOnly, SessionMiddleware):  # type: ignore[misc]
    """Sessions for staff pages."""


class StaffAuthenticationMiddleware(StaffPagesOnly, AuthenticationMiddleware):  # type: ignore[misc]
    """`request.user` for staff pages."""


class StaffOTPMiddleware(StaffPagesOnly, OTPMiddleware):  # type: ignore[misc]
    """`request.user.is_verified()` for staff pages: whether this session showed a second factor."""


class StaffMessageMiddleware(StaffPagesOnly, MessageMiddleware):  # type: ignore[misc]
    """Flash messages for staff pages."""

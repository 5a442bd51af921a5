"""OpenAPI: how drf-spectacular describes our API key authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "billing_project.api_auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key of a service (bsk_…) or an agent (bak_…), created with "
            "`manage.py create_api_key` or in the admin.",
        }


# Every error an API route can answer, in the one shape (api_errors.error_body), documented
# on every operation it applies to: a client (and schemathesis in CI) must find each status
# a route really answers in /api/schema/. Statuses by what the route is:
ALWAYS = {
    400: "Bad input: `malformed_json`, `validation_error` (`details.fields`), or an endpoint code "
    "(`unknown_tenant`, `invalid_quantity`, …).",
    401: "`not_authenticated`, `invalid_api_key` or `api_key_revoked`.",
    403: "`missing_scope`, `agent_write_forbidden`, `metric_not_allowed`.",
    404: "`not_found`: an unknown object in the path, or another tenant for a tenant-bound key.",
    429: "`rate_limited`: past the key's rate; see `Retry-After`.",
    503: "`service_unavailable`: the database is unavailable or the outcome unknown; retry after "
    "`Retry-After` (with the same idempotency key, for a write).",
}
WITH_BODY = {
    413: "`request_too_large` (or `batch_too_large`).",
    415: "`unsupported_media_type`: send `Content-Type: application/json`.",
}
WRITES = {409: "A conflict with the state: `idempotency_conflict`, `subscription_exists`, …"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "example": "validation_error"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the error responses to every API operation
    (those it already names keep their description). A view may add its own statuses with
    `error_statuses = {502: "…"}`."""
    views = {(path, method.lower()): callback for path, _, method, callback in generator.endpoints}
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            view = getattr(views.get((path, method)), "cls", None)
            statuses = dict(ALWAYS)
            if method != "get":
                statuses |= WITH_BODY
                if method.upper() not in getattr(view, "query_methods", ()):
                    statuses |= WRITES
            statuses |= getattr(view, "error_statuses", {})
            responses = operation.setdefault("responses", {})
            for status, description in sorted(statuses.items()):
                documented = responses.setdefault(str(status), {"description": description})
                documented.setdefault("content", error)
    return result

"""The base class of every API view."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from django.http import HttpRequest
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from .api_keys import Prefetch


class BillingAPIView(APIView):
    """Base for every API view: declare scopes and read-like POSTs here, nothing else."""

    #: Scopes needed per HTTP method ("*" for every method). Empty: any valid key.
    required_scopes: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: Per method, scopes any one of which stands in for all of required_scopes (`portal`
    #: for checkout and plan changes made on a tenant user's behalf).
    alternative_scopes: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: Unsafe methods that only read (a query with a body, e.g. entitlements/check).
    query_methods: ClassVar[frozenset[str]] = frozenset()
    #: Unsafe methods an agent key may call (only creating a proposal).
    agent_methods: ClassVar[frozenset[str]] = frozenset()

    def tenant_of_path(self, kwargs: Mapping[str, Any]) -> str | None:
        """The tenant that a path naming a record (an invoice number) belongs to, for the
        tenant-binding rule; None when the path names no tenant's record or none exists."""
        return None

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # An error is always the API's JSON shape, even where a view also renders HTML
        # (an invoice's printable document): it answered "401 Unauthorized" as text/html.
        renderer = getattr(request, "accepted_renderer", None)
        if getattr(response, "status_code", 200) >= 400 and renderer is not None and renderer.format != "json":
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def redis_prefetch(self, request: HttpRequest) -> Prefetch | None:
        """Redis reads to make in the authentication round trip (a hot path's whole
        answer); the results arrive as `request.auth.prefetched`. Runs before the
        central rules, so it must only read, and its results must not be used unless
        the request is admitted."""
        return None


class JsonOnly(DefaultContentNegotiation):
    """The API answers only JSON: skip weighing the Accept header on hot paths."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number"}], "example": "1500"})
class RawField(serializers.Field):  # type: ignore[type-arg]
    """Passes a JSON value through untouched, for values whose checks have their own
    error codes in API.md (quantities → `invalid_quantity`), checked by the view."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class Text(serializers.CharField):
    """A string field that takes only JSON strings: DRF's CharField turns a number or a
    boolean into text, so `{"reason": 0}` was accepted where the schema says string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class Flag(serializers.BooleanField):
    """A boolean field that takes only JSON true and false: DRF's BooleanField also reads
    0, 1, "yes", "off"…, so `{"at_period_end": 0}` canceled a subscription at once."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data

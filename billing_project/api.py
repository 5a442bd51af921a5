"""The base class of every API view."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.views import APIView


class BillingAPIView(APIView):
    """Base for every API view: declare scopes and read-like POSTs here, nothing else."""

    #: Scopes needed per HTTP method ("*" for every method). Empty: any valid key.
    required_scopes: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: Unsafe methods that only read (a query with a body, e.g. entitlements/check).
    query_methods: ClassVar[frozenset[str]] = frozenset()
    #: Unsafe methods an agent key may call (only creating a proposal).
    agent_methods: ClassVar[frozenset[str]] = frozenset()


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number"}], "example": "1500"})
class RawField(serializers.Field):  # type: ignore[type-arg]
    """Passes a JSON value through untouched, for values whose checks have their own
    error codes in API.md (quantities → `invalid_quantity`), checked by the view."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value

"""Entitlements API (API.md, "Entitlements")."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView, JsonOnly, RawField, Text
from billing_project.api_keys import ApiPrincipal, Prefetch
from billing_project.errors import InvalidRequest
from billing_project.money import parse_decimal
from billing_project.parsers import loads
from billing_project.scopes import ENTITLEMENTS_READ, USAGE_WRITE
from subscriptions.services import tenant_get

from .services import entitlement_check, entitlement_check_prefetch, entitlement_consume, entitlements_list

MAX_QUANTITY = Decimal("1e24")

Answer = inline_serializer(
    "Entitlement",
    {
        "tenant": serializers.CharField(),
        "feature": serializers.CharField(),
        "allowed": serializers.BooleanField(),
        "reason": serializers.ChoiceField(
            choices=[
                "ok",
                "overage_billed",
                "not_in_plan",
                "limit_exceeded",
                "no_subscription",
                "subscription_suspended",
                "subscription_canceled",
            ]
        ),
        "limit": serializers.CharField(allow_null=True),
        "used": serializers.CharField(allow_null=True),
        "remaining": serializers.CharField(allow_null=True),
        "period_start": serializers.DateTimeField(allow_null=True),
        "period_end": serializers.DateTimeField(allow_null=True),
        "on_unavailable": serializers.ChoiceField(choices=["allow", "deny"]),
    },
)


class CheckIn(serializers.Serializer):  # type: ignore[type-arg]
    tenant = Text()
    feature = Text()
    quantity = RawField(required=False, default="1")


def quantity_of(raw: Any) -> Decimal:
    try:
        quantity = parse_decimal(raw)
    except ValueError:
        quantity = Decimal(-1)
    if quantity < 0 or quantity >= MAX_QUANTITY:
        raise InvalidRequest(
            "`quantity` must be a number ≥ 0.", code="invalid_quantity", details={"quantity": str(raw)}
        )
    return quantity


class EntitlementCheckApi(BillingAPIView):
    """May this tenant do `quantity` more now? A query: agents may ask."""

    required_scopes = {"POST": (ENTITLEMENTS_READ,)}
    query_methods = frozenset({"POST"})
    content_negotiation_class = JsonOnly

    def redis_prefetch(self, request: HttpRequest) -> Prefetch | None:
        # The whole answer in the key lookup's round trip: a peek at the raw body, which
        # the parser reads properly (with its errors) once the request is admitted.
        try:
            data = loads(request.body)  # a NUL or a surrogate would fail in a Redis key: the parser refuses it
        except (ValueError, RecursionError, SuspiciousOperation):
            return None
        if not isinstance(data, dict):
            return None
        tenant, feature = data.get("tenant"), data.get("feature")
        if not isinstance(tenant, str) or not isinstance(feature, str):
            return None
        self.prefetched_for = (tenant, feature)
        return entitlement_check_prefetch(tenant=tenant, feature=feature)

    @extend_schema(operation_id="entitlements_check", request=CheckIn, responses={200: Answer}, tags=["entitlements"])
    def post(self, request: Request) -> Response:
        # Checked by hand rather than by a serializer: this is the hot path (CheckIn documents it).
        data = request.data
        tenant, feature = (data.get("tenant"), data.get("feature")) if isinstance(data, dict) else (None, None)
        if not isinstance(tenant, str) or not isinstance(feature, str) or not tenant or not feature:
            wrong = {
                name: f"`{name}` is a required non-empty string."
                for name, value in (("tenant", tenant), ("feature", feature))
                if not isinstance(value, str) or not value
            }
            raise InvalidRequest(
                "`tenant` and `feature` are required strings.", code="validation_error", details={"fields": wrong}
            )
        principal = cast(ApiPrincipal, request.auth)
        usable = principal.prefetched and getattr(self, "prefetched_for", None) == (tenant, feature)
        prefetched = {"prefetched": principal.prefetched[0]} if usable else {}  # type: ignore[index]
        answer = entitlement_check(
            tenant=tenant, feature=feature, quantity=quantity_of(dict(data).get("quantity", "1")), **prefetched
        )
        return Response(answer)


class TenantEntitlementsApi(BillingAPIView):
    required_scopes = {"GET": (ENTITLEMENTS_READ,)}

    @extend_schema(
        operation_id="tenant_entitlements",
        tags=["entitlements"],
        responses={
            200: inline_serializer(
                "Entitlements", {"tenant": serializers.CharField(), "entitlements": Answer.__class__(many=True)}
            )
        },
    )
    def get(self, request: Request, tenant: str) -> Response:
        tenant_get(tenant)  # an unknown tenant in the path is 404
        return Response(entitlements_list(tenant=tenant))


class ConsumeIn(CheckIn):
    # the key as sent, to the byte: " job-7" and "job-7" are two consumes (DRF trims by default,
    # and four keys differing in white space admitted four times what one record held)
    idempotency_key = Text(max_length=255, trim_whitespace=False)


class EntitlementConsumeApi(BillingAPIView):
    """Check and record in one atomic step (a write: never for agents)."""

    required_scopes = {"POST": (ENTITLEMENTS_READ, USAGE_WRITE)}

    @extend_schema(
        operation_id="entitlements_consume",
        request=ConsumeIn,
        responses={200: Answer, 201: Answer},
        tags=["entitlements"],
    )
    def post(self, request: Request) -> Response:
        data = ConsumeIn(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        result = entitlement_consume(
            principal=cast(ApiPrincipal, request.auth),
            tenant=d["tenant"],
            feature=d["feature"],
            quantity=quantity_of(d["quantity"]),
            idempotency_key=d["idempotency_key"],
        )
        return Response(result.answer, status=201 if result.recorded else 200)

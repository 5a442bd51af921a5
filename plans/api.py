"""Catalog API (API.md, "Catalog and pricing"): readable by any valid service or agent key."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView, RawField, Text
from billing_project.errors import InvalidRequest, NotFound
from billing_project.money import exponent, format_decimal, parse_decimal

from . import pricing
from .models import PlanVersion
from .selectors import live_version, live_versions, metric_specs, plan_spec_from_version


def _money(value: Decimal | None, currency: str) -> str | None:
    return None if value is None else format_decimal(value, exponent(currency))


def _qty(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def plan_document(version: PlanVersion) -> dict[str, Any]:
    cur = version.currency
    return {
        "code": version.plan.code,
        "name": version.plan.name,
        "description": version.plan.description,
        "version": version.version,
        "published_at": version.published_at,
        "interval": version.interval,
        "currency": cur,
        "base_fee": _money(version.base_fee, cur),
        "trial_days": version.trial_days,
        "charges": [
            {
                "metric": c.metric.code,
                "model": c.model,
                "unit_price": _money(c.unit_price, cur),
                "package_size": _qty(c.package_size),
                "package_price": _money(c.package_price, cur),
                "free_units": _qty(c.free_units) if c.model == "package" else None,
                "tiers": [
                    {
                        "up_to": _qty(t.up_to),
                        "unit_price": _money(t.unit_price, cur),
                        "flat_fee": _money(t.flat_fee, cur),
                    }
                    for t in c.tiers.all()
                ],
            }
            for c in version.charges.all()
        ],
        "entitlements": [
            {
                "feature": e.feature.code,
                "name": e.feature.name,
                "kind": "metered" if e.feature.metric_id else "boolean",
                "metric": e.feature.metric.code if e.feature.metric else None,
                "enabled": e.enabled,
                "limit": _qty(e.limit),
                "overage": e.overage if e.feature.metric_id else None,
                "on_unavailable": e.feature.on_unavailable,
            }
            for e in version.entitlements.all()
        ],
    }


class TierOut(serializers.Serializer):  # type: ignore[type-arg]
    up_to = serializers.CharField(allow_null=True)
    unit_price = serializers.CharField()
    flat_fee = serializers.CharField()


class ChargeOut(serializers.Serializer):  # type: ignore[type-arg]
    metric = serializers.CharField()
    model = serializers.ChoiceField(choices=pricing.MODELS)
    unit_price = serializers.CharField(allow_null=True)
    package_size = serializers.CharField(allow_null=True)
    package_price = serializers.CharField(allow_null=True)
    free_units = serializers.CharField(allow_null=True)
    tiers = TierOut(many=True)


class PlanEntitlementOut(serializers.Serializer):  # type: ignore[type-arg]
    feature = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["boolean", "metered"])
    metric = serializers.CharField(allow_null=True)
    enabled = serializers.BooleanField()
    limit = serializers.CharField(allow_null=True, help_text="Per period; null = unlimited.")
    overage = serializers.ChoiceField(choices=["block", "bill"], allow_null=True)
    on_unavailable = serializers.ChoiceField(choices=["allow", "deny"])


class PlanOut(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    version = serializers.IntegerField()
    published_at = serializers.DateTimeField()
    interval = serializers.ChoiceField(choices=["month", "year"])
    currency = serializers.CharField()
    base_fee = serializers.CharField()
    trial_days = serializers.IntegerField()
    charges = ChargeOut(many=True)
    entitlements = PlanEntitlementOut(many=True)


class PlanListOut(serializers.Serializer):  # type: ignore[type-arg]
    plans = PlanOut(many=True)


class PlanListApi(BillingAPIView):
    @extend_schema(operation_id="plans_list", responses=PlanListOut, tags=["catalog"])
    def get(self, request: Request) -> Response:
        return Response({"plans": [plan_document(v) for v in live_versions()]})


class PlanDetailApi(BillingAPIView):
    @extend_schema(
        operation_id="plans_retrieve",
        responses={200: PlanOut, 404: OpenApiResponse(description="unknown plan")},
        tags=["catalog"],
    )
    def get(self, request: Request, code: str) -> Response:
        version = live_version(code)
        if version is None:
            raise NotFound(f"No published plan {code!r}.")
        return Response(plan_document(version))


class EstimateIn(serializers.Serializer):  # type: ignore[type-arg]
    plan = Text()
    usage = serializers.DictField(
        child=RawField(),
        required=False,
        default=dict,
        help_text='Period quantity per metric code, e.g. {"api_calls": "15000"}; a string or a number.',
    )


class EstimateTierOut(serializers.Serializer):  # type: ignore[type-arg]
    from_ = serializers.CharField()
    to = serializers.CharField(allow_null=True)
    quantity = serializers.CharField()
    unit_price = serializers.CharField()
    flat_fee = serializers.CharField()
    amount = serializers.CharField()

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class EstimateLineOut(serializers.Serializer):  # type: ignore[type-arg]
    description = serializers.CharField()
    metric = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    quantity = serializers.CharField()
    unit_price = serializers.CharField(allow_null=True)
    packages = serializers.CharField(allow_null=True)
    amount = serializers.CharField()
    tiers = EstimateTierOut(many=True)


class EstimateOut(serializers.Serializer):  # type: ignore[type-arg]
    plan = serializers.CharField()
    version = serializers.IntegerField()
    currency = serializers.CharField()
    lines = EstimateLineOut(many=True)
    total = serializers.CharField()
    unpriced_metrics = serializers.ListField(
        child=serializers.CharField(), help_text="Metrics in `usage` this plan does not charge."
    )


class PricingEstimateApi(BillingAPIView):
    """What one period of a plan would cost for the given usage. A query: agents may call it."""

    query_methods = frozenset({"POST"})

    @extend_schema(operation_id="pricing_estimate", request=EstimateIn, responses=EstimateOut, tags=["catalog"])
    def post(self, request: Request) -> Response:
        data = EstimateIn(data=request.data)
        data.is_valid(raise_exception=True)
        code = data.validated_data["plan"]
        version = live_version(code)
        if version is None:
            raise InvalidRequest(f"No published plan {code!r}.", code="unknown_plan", details={"plan": code})
        usage = _usage(data.validated_data["usage"])
        result = pricing.estimate(plan_spec_from_version(version).terms(), usage)
        cur = result.currency
        return Response(
            {
                "plan": result.plan,
                "version": version.version,
                "currency": cur,
                "lines": [
                    {
                        "description": line.description,
                        "metric": line.metric,
                        "model": line.model,
                        "quantity": _qty(line.quantity),
                        "unit_price": _money(line.unit_price, cur),
                        "packages": _qty(line.packages),
                        "amount": _money(line.amount, cur),
                        "tiers": [
                            {
                                "from": _qty(t.from_),
                                "to": _qty(t.to),
                                "quantity": _qty(t.quantity),
                                "unit_price": _money(t.unit_price, cur),
                                "flat_fee": _money(t.flat_fee, cur),
                                "amount": format_decimal(t.amount),
                            }
                            for t in line.tiers
                        ],
                    }
                    for line in result.lines
                ],
                "total": _money(result.total, cur),
                "unpriced_metrics": list(result.unpriced_metrics),
            }
        )


# Period quantities as usage storage holds them: at most 24 digits before the point.
MAX_QUANTITY_DIGITS = 24


def _usage(raw: dict[str, Any]) -> dict[str, Decimal]:
    known = metric_specs()
    usage: dict[str, Decimal] = {}
    for metric, value in raw.items():
        if metric not in known:
            raise InvalidRequest(f"Unknown metric {metric!r}.", code="unknown_metric", details={"metric": metric})
        try:
            quantity = parse_decimal(value)
        except ValueError:
            quantity = Decimal(-1)
        if quantity < 0 or quantity.adjusted() >= MAX_QUANTITY_DIGITS:
            raise InvalidRequest(
                f"Quantity of {metric!r} must be a number ≥ 0 with at most {MAX_QUANTITY_DIGITS} digits "
                "before the point.",
                code="invalid_quantity",
                details={"metric": metric, "quantity": str(value)},
            )
        usage[metric] = quantity
    return usage

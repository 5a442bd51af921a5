"""Tenants and subscriptions API (API.md, "Tenants and subscriptions")."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView, Flag, Text
from billing_project.api_keys import ApiPrincipal
from billing_project.audit import api_actor
from billing_project.dry_run import dry_run
from billing_project.errors import InvalidRequest
from billing_project.money import exponent, format_decimal
from billing_project.scopes import PORTAL, SUBSCRIPTIONS_WRITE, TENANTS_WRITE

from .selectors import subscription_document
from .services import (
    subscription_cancel,
    subscription_change_plan,
    subscription_create,
    tenant_get,
    tenant_upsert,
)
from .tenant_ids import TENANT_ID_RULE, tenant_id_problem


def actor(request: Request) -> str:
    return request.auth.label() if isinstance(request.auth, ApiPrincipal) else "unknown"


class TenantIn(serializers.Serializer):  # type: ignore[type-arg]
    name = Text(max_length=200)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    currency = Text(
        max_length=3,
        required=False,
        help_text="Default USD for a new tenant; omitted on an update, the stored one stays.",
    )
    country = Text(max_length=2, required=False, allow_blank=True)
    address = Text(
        max_length=600, required=False, allow_blank=True, help_text="Billing address lines, newline-separated."
    )
    tax_id = Text(max_length=40, required=False, allow_blank=True, help_text="VAT or tax ID in the country's format.")


class TenantOut(serializers.Serializer):  # type: ignore[type-arg]
    tenant = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    currency = serializers.CharField()
    country = serializers.CharField()
    address = serializers.CharField()
    tax_id = serializers.CharField()
    created_at = serializers.DateTimeField()


class TenantApi(BillingAPIView):
    required_scopes = {"PUT": (TENANTS_WRITE,)}

    @extend_schema(
        operation_id="tenants_put", request=TenantIn, responses={200: TenantOut, 201: TenantOut}, tags=["tenants"]
    )
    def put(self, request: Request, tenant: str) -> Response:
        if (problem := tenant_id_problem(tenant)) is not None:
            raise InvalidRequest(
                f"{tenant!r} is not a valid tenant id ({TENANT_ID_RULE}).",
                code="validation_error",
                details={"fields": {"tenant": problem}},
            )
        data = TenantIn(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        principal = request.auth
        # Personal data: the change is audited with the key that made it.
        audited = (
            api_actor(principal, request.META.get("REMOTE_ADDR"))
            if isinstance(principal, ApiPrincipal)
            else nullcontext()
        )
        with audited:
            obj, created = tenant_upsert(
                external_id=tenant,
                name=d["name"],
                billing_email=d.get("email"),
                country=d.get("country"),
                currency=d.get("currency"),
                address=d.get("address"),
                tax_id=d.get("tax_id"),
            )
        body = {
            "tenant": obj.external_id,
            "name": obj.name,
            "email": obj.billing_email,
            "currency": obj.currency,
            "country": obj.country,
            "address": obj.address,
            "tax_id": obj.tax_id,
            "created_at": obj.created_at,
        }
        return Response(body, status=201 if created else 200)


SubscriptionOut = inline_serializer(
    "Subscription",
    {
        "id": serializers.IntegerField(),
        "plan": serializers.CharField(),
        "plan_name": serializers.CharField(),
        "plan_version": serializers.IntegerField(),
        "status": serializers.CharField(),
        "currency": serializers.CharField(),
        "base_fee": serializers.CharField(),
        "interval": serializers.CharField(),
        "started_at": serializers.DateTimeField(),
        "current_period": serializers.DictField(),
        "trial_end": serializers.DateTimeField(allow_null=True),
        "cancel_at_period_end": serializers.BooleanField(),
        "pending_change": serializers.DictField(allow_null=True),
        "ended_at": serializers.DateTimeField(allow_null=True),
    },
)


class SubscriptionCreateIn(serializers.Serializer):  # type: ignore[type-arg]
    plan = Text()


class SubscriptionCreateApi(BillingAPIView):
    required_scopes = {"POST": (SUBSCRIPTIONS_WRITE,)}

    @extend_schema(
        operation_id="subscription_create",
        request=SubscriptionCreateIn,
        responses={201: SubscriptionOut},
        tags=["subscriptions"],
    )
    def post(self, request: Request, tenant: str) -> Response:
        data = SubscriptionCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        sub = subscription_create(
            tenant=tenant_get(tenant), plan_code=data.validated_data["plan"], actor=actor(request)
        )
        return Response(subscription_document(sub), status=201)


class SubscriptionChangeIn(serializers.Serializer):  # type: ignore[type-arg]
    plan = Text()
    when = serializers.ChoiceField(
        choices=["now", "period_end"],
        required=False,
        allow_null=True,
        default=None,
        help_text="Default: now for an upgrade, period_end for a downgrade.",
    )
    preview = Flag(
        required=False,
        default=False,
        help_text="true: the change and its proration as they would be, nothing applied or written.",
    )


class SubscriptionChangeApi(BillingAPIView):
    required_scopes = {"POST": (SUBSCRIPTIONS_WRITE,)}
    alternative_scopes = {"POST": (PORTAL,)}  # a tenant user changing their own plan

    @extend_schema(
        operation_id="subscription_change",
        request=SubscriptionChangeIn,
        tags=["subscriptions"],
        responses={
            200: inline_serializer(
                "PlanChange",
                {
                    "subscription": SubscriptionOut,
                    "applied": serializers.BooleanField(),
                    "effective_at": serializers.DateTimeField(),
                    "proration": serializers.ListField(child=serializers.DictField()),
                },
            )
        },
    )
    def post(self, request: Request, tenant: str) -> Response:
        data = SubscriptionChangeIn(data=request.data)
        data.is_valid(raise_exception=True)
        preview = data.validated_data["preview"]

        def change() -> dict[str, Any]:
            done = subscription_change_plan(
                tenant=tenant_get(tenant),
                plan_code=data.validated_data["plan"],
                when=data.validated_data["when"],
                actor=actor(request),
            )
            return self._answer(done, preview=preview)

        # a preview is the very change, by the same service, then undone
        return Response(dry_run(change) if preview else change())

    @staticmethod
    def _answer(change: Any, *, preview: bool) -> dict[str, Any]:
        return {
            "subscription": subscription_document(change.subscription),
            "preview": preview,  # true: nothing was applied or written
            "applied": change.applied and not preview,
            "when": "now" if change.applied else "period_end",
            "effective_at": change.effective_at,
            "proration": [
                {
                    "kind": x.kind,
                    "description": x.description,
                    "amount": format_decimal(x.amount, exponent(change.subscription.plan_version.currency)),
                    "period_start": x.period_start,
                    "period_end": x.period_end,
                }
                for x in change.proration
            ],
        }


class SubscriptionCancelIn(serializers.Serializer):  # type: ignore[type-arg]
    at_period_end = Flag(default=True)
    reason = Text(required=False, allow_blank=True, default="")


class SubscriptionCancelApi(BillingAPIView):
    required_scopes = {"POST": (SUBSCRIPTIONS_WRITE,)}

    @extend_schema(
        operation_id="subscription_cancel",
        request=SubscriptionCancelIn,
        responses={200: SubscriptionOut},
        tags=["subscriptions"],
    )
    def post(self, request: Request, tenant: str) -> Response:
        data = SubscriptionCancelIn(data=request.data)
        data.is_valid(raise_exception=True)
        sub = subscription_cancel(
            tenant=tenant_get(tenant),
            at_period_end=data.validated_data["at_period_end"],
            actor=actor(request),
            reason=data.validated_data["reason"],
        )
        return Response(subscription_document(sub))

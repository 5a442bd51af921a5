"""Billing API: the tenant's billing view (more as invoicing lands)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView
from billing_project.scopes import BILLING_READ
from subscriptions.services import tenant_get

from .selectors import billing_view


class BillingStateApi(BillingAPIView):
    required_scopes = {"GET": (BILLING_READ,)}

    @extend_schema(
        operation_id="tenant_billing",
        tags=["tenants"],
        responses={
            200: inline_serializer(
                "BillingState",
                {
                    "tenant": serializers.CharField(),
                    "currency": serializers.CharField(),
                    "subscription": serializers.DictField(allow_null=True),
                    "usage": serializers.ListField(child=serializers.DictField()),
                    "cost_to_date": serializers.DictField(allow_null=True),
                    "credit_balance": serializers.CharField(allow_null=True),
                    "invoices": serializers.ListField(child=serializers.DictField()),
                },
            )
        },
    )
    def get(self, request: Request, tenant: str) -> Response:
        return Response(billing_view(tenant_get(tenant), now=timezone.now()))

"""Privacy API (API.md, scope `privacy:admin`, service keys only): a tenant's data export
and its erasure."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView, Text
from billing_project.scopes import PRIVACY_ADMIN
from subscriptions.api import actor
from subscriptions.services import tenant_get

from .export import export_download
from .models import Erasure
from .services import tenant_erase


class PrivacyExportApi(BillingAPIView):
    """GET /api/v1/tenants/{tenant}/privacy/export — everything we hold about the tenant, as
    one JSON document (schema `billing.privacy-export/1`, README), streamed."""

    required_scopes = {"GET": (PRIVACY_ADMIN,)}

    @extend_schema(operation_id="tenant_privacy_export", tags=["privacy"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, tenant: str) -> StreamingHttpResponse:
        return export_download(tenant_get(tenant), channel=f"api {actor(request)}", now=timezone.now())


class ErasureIn(serializers.Serializer):  # type: ignore[type-arg]
    reason = Text(max_length=2000)


def erasure_document(erasure: Erasure) -> dict[str, Any]:
    """The erasure as the API and the console show it: what was done, in counts."""
    return {
        "id": erasure.pk,
        "tenant": erasure.tenant.external_id,
        "status": erasure.status,
        "reason": erasure.reason,
        "requested_by": erasure.requested_by,
        "approved_by": erasure.approved_by or None,
        "erased_at": erasure.erased_at,
        "done": erasure.done,
        "stripe": {
            "customers": len(erasure.stripe_customers),
            "done_at": erasure.stripe_done_at,
            "last_error": erasure.stripe_last_error or None,
        },
        "invoices_keep_buyer_until": erasure.retention_until if erasure.buyers_erased_at is None else None,
    }


ERASURE = inline_serializer(
    "Erasure",
    {
        "id": serializers.IntegerField(),
        "tenant": serializers.CharField(),
        "status": serializers.ChoiceField(choices=["stripe_pending", "retained", "completed"]),
        "reason": serializers.CharField(),
        "requested_by": serializers.CharField(),
        "approved_by": serializers.CharField(allow_null=True),
        "erased_at": serializers.DateTimeField(),
        "done": serializers.DictField(child=serializers.IntegerField()),
        "stripe": serializers.DictField(),
        "invoices_keep_buyer_until": serializers.DateTimeField(allow_null=True),
    },
)


class PrivacyEraseApi(BillingAPIView):
    """POST /api/v1/tenants/{tenant}/privacy/erase {"reason"} — erase the tenant's personal
    data (privacy/services.py): 202 with the erasure, its Stripe part still running; the
    same answer when asked again. 409 `tenant_has_open_balance` while money is owed."""

    required_scopes = {"POST": (PRIVACY_ADMIN,)}

    @extend_schema(operation_id="tenant_privacy_erase", request=ErasureIn, tags=["privacy"], responses={202: ERASURE})
    def post(self, request: Request, tenant: str) -> Response:
        data = ErasureIn(data=request.data)
        data.is_valid(raise_exception=True)
        erasure, _ = tenant_erase(
            tenant=tenant_get(tenant), reason=data.validated_data["reason"], requested_by=actor(request)
        )
        return Response(erasure_document(erasure), status=202)
